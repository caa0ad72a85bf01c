"""Offline checks of cluster/: every config parses, the cluster definitions agree with each other
and with the Dockerfile, every job command they carry loads into nf-dist's typed configs (nothing
runs), Prometheus scrapes what the jobs serve, and the Grafana dashboard asks only for metrics that
nf_dist/telemetry/metrics.py declares. No network, no Ray cluster.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
JOBS = ROOT / "jobs"
LAUNCHER = CLUSTER / "ray-cluster.yaml"
KUBERAY = CLUSTER / "kuberay"
DOCKERFILE = CLUSTER / "Dockerfile"
README = CLUSTER / "README.md"
PROMETHEUS = CLUSTER / "prometheus" / "prometheus.yml"
DASHBOARD = CLUSTER / "grafana" / "nf-dist-dashboard.json"

RAY_SERVICE_DISCOVERY = "/tmp/ray/prom_metrics_service_discovery.json"
# The job scripts the cluster must be able to run, one RayJob each.
ENTRYPOINTS = {"build_bench", "fingerprint", "evaluate", "experiment", "tune"}
# Declared by the Tune work that lands with jobs/tune.py; until then the dashboard may name them.
TUNE_METRICS = {"nf_tune_trials_total", "nf_tune_best_objective"}
# Labels Prometheus adds to every scraped series (prometheus.yml adds nf_job).
SCRAPE_LABELS = {"job", "instance", "nf_job"}
AWS_SECRET = re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}|aws_secret_access_key", re.IGNORECASE)
RAY_IMAGE = re.compile(r"rayproject/ray:(\d+\.\d+\.\d+)-py311-gpu")
RAY_PIN = re.compile(r"ray\[[a-z,]+\]==(\d+\.\d+\.\d+)")


# --- helpers -----------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[Any]:
    """Every non-empty document of a (possibly multi-document) YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def cluster_yaml_files() -> list[Path]:
    return sorted([*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")])


def kuberay_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(KUBERAY.glob("*.yaml")) for doc in yaml_documents(path)]


def ray_resources() -> list[tuple[str, dict[str, Any]]]:
    """(file:name, document) of every RayCluster and RayJob."""
    return [
        (f"{path.name}:{doc.get('metadata', {}).get('name')}", doc)
        for path, doc in kuberay_documents()
        if str(doc.get("apiVersion", "")).startswith("ray.io/")
    ]


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec of a RayCluster, or the one a RayJob creates."""
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def pod_templates(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield spec["headGroupSpec"]["template"]["spec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["template"]["spec"]


def dockerfile_image() -> str:
    """The image name the Dockerfile says it builds (its `image:` comment)."""
    match = re.search(r"^#\s*image:\s*(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "cluster/Dockerfile must name its image in a comment: '# image: NAME:TAG'"
    return match.group(1)


def dockerfile_base() -> str:
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert len(bases) == 1, f"expected one FROM in cluster/Dockerfile, got {bases}"
    return bases[0]


def readme_submissions() -> list[list[str]]:
    """Every `ray job submit ...` command of the README's bash blocks, split like a shell."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("ray job submit"):
                commands.append(shlex.split(line))
    return commands


def job_commands() -> list[tuple[str, list[str]]]:
    """(where, entrypoint argv) of every RayJob and every README submission."""
    commands = [
        (where, shlex.split(doc["spec"]["entrypoint"]))
        for where, doc in ray_resources()
        if doc["kind"] == "RayJob"
    ]
    for number, argv in enumerate(readme_submissions(), 1):
        assert "--" in argv, f"README submission {number} has no '--' before its entrypoint"
        commands.append((f"README:{number}", argv[argv.index("--") + 1 :]))
    return commands


def script_name(argv: list[str]) -> str | None:
    """`fingerprint` for `python jobs/fingerprint.py ...`; None for other commands."""
    if argv[0] not in ("python", "python3"):
        return None
    match = re.fullmatch(r"jobs/(\w+)\.py", argv[1])
    assert match, f"{argv[1]!r}: a job script is run as jobs/<name>.py from the repository root"
    return match.group(1)


def cli_argv(argv: list[str]) -> list[str]:
    """The `nf-dist` arguments a job command amounts to: a job script prepends its subcommand."""
    if argv[0] == "nf-dist":
        return argv[1:]
    script = JOBS / argv[1].removeprefix("jobs/")
    for node in ast.walk(ast.parse(script.read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "main"
            and node.args
            and isinstance(node.args[0], ast.List)
        ):
            prefix = [
                e.value
                for e in node.args[0].elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
            return [*prefix, *argv[2:]]
    pytest.fail(f"{script} does not call main([<subcommand>, *sys.argv[1:]]) like the other jobs")


class _LoadedSignal(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised in place of running a job, carrying the configuration it loaded."""

    def __init__(self, config: Any) -> None:
        super().__init__("configuration loaded")
        self.config = config


def load_job(where: str, argv: list[str]) -> Any:
    """The typed configuration a job command would run with; the job itself never starts."""
    import ray

    import nf_dist.cli as cli
    import nf_dist.cli.commands as commands
    import nf_dist.config as config_module
    from nf_dist.pipelines import bench as bench_job

    real_load_config = config_module.load_config

    def load_then_stop(*args: Any, **kwargs: Any) -> Any:
        raise _LoadedSignal(real_load_config(*args, **kwargs))

    def build_then_stop(config: Any) -> Any:
        raise _LoadedSignal(config)

    def no_ray(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{where}: started Ray instead of stopping at its configuration")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "load_config", load_then_stop)
        patch.setattr(config_module, "load_config", load_then_stop)
        patch.setattr(bench_job, "build_bench", build_then_stop)
        patch.setattr(ray, "init", no_ray)
        patch.setattr(cli.logging, "basicConfig", lambda **kwargs: None)  # leave logging alone
        try:
            code = cli.main(cli_argv(argv))
        except _LoadedSignal as loaded:
            return loaded.config
        except SystemExit as exc:  # argparse: an unknown flag or a bad value
            pytest.fail(f"{where}: the nf-dist command line rejects {argv} (exit {exc.code})")
    pytest.fail(f"{where}: nf-dist exited with {code} before loading its configuration: see stderr")


def uri_values(value: Any, name: str = "") -> Iterator[tuple[str, str]]:
    """(field path, value) of every URI in a config: fields named *uri and URI maps."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from uri_values(getattr(value, f.name), f"{name}.{f.name}".lstrip("."))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and name.rsplit(".", 1)[-1] in ("fingerprints", "gans"):
                yield f"{name}.{key}", item
            else:
                yield from uri_values(item, f"{name}.{key}")
    elif isinstance(value, str) and name.endswith("uri") and value:
        yield name, value


def loaded_jobs() -> list[tuple[str, list[str], Any]]:
    """(where, argv, config) of every job command whose script exists."""
    jobs = []
    for where, argv in job_commands():
        name = script_name(argv)
        if name is None or (JOBS / f"{name}.py").exists():
            jobs.append((where, argv, load_job(where, argv)))
    return jobs


def metrics_ports(argv: list[str]) -> set[int]:
    """Ports a job command asks nf-dist to serve /metrics on."""
    text = " ".join(argv)
    return {int(p) for p in re.findall(r"(?:--metrics-port[ =]|metrics_port=)(\d+)", text)}


def declared_metrics() -> dict[str, tuple[str, set[str]]]:
    """Every sample name nf-dist exposes -> (metric family, its label names)."""
    from prometheus_client.metrics import MetricWrapperBase

    import nf_dist.telemetry.metrics as metrics

    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: dict[str, tuple[str, set[str]]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            labels = set(getattr(metric, "_labelnames", ()))
            for family in metric.describe():
                assert family.name.startswith("nf_"), f"{family.name}: nf-dist metrics start nf_"
                for suffix in suffixes[family.type]:
                    names[family.name + suffix] = (family.name, labels)
    assert names, "nf_dist/telemetry/metrics.py declares no metrics"
    return names


def dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return [p for p in panels if p.get("type") != "row"]


# --- every file --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", cluster_yaml_files(), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = yaml_documents(path)
    assert documents, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in documents), f"{path}: a document is not a mapping"


def test_the_cluster_files_are_there() -> None:
    for path in (LAUNCHER, DOCKERFILE, README, PROMETHEUS, DASHBOARD, KUBERAY / "raycluster.yaml"):
        assert path.is_file(), f"{path} is missing"


def test_no_file_under_cluster_holds_aws_credentials() -> None:
    assert AWS_SECRET.search("AKIA" + "ABCDEFGHIJKLMNOP"), "the detector itself must work"
    for path in sorted(p for p in CLUSTER.rglob("*") if p.is_file()):
        match = AWS_SECRET.search(path.read_text(errors="replace"))
        assert match is None, (
            f"{path} holds {match.group(0)!r}: credentials come from the AWS chain"
        )


# --- Ray cluster launcher ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    (config,) = yaml_documents(LAUNCHER)
    return config


def test_launcher_passes_rays_own_validation(launcher: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))  # what `ray up` does first


def test_launcher_has_a_cpu_head_and_autoscaling_gpu_workers(launcher: dict[str, Any]) -> None:
    assert launcher["cluster_name"]
    assert launcher["provider"]["type"] == "aws"
    assert launcher["provider"]["region"] == "us-east-1"
    types = launcher["available_node_types"]
    head = launcher["head_node_type"]
    assert head in types, f"head_node_type {head!r} is not one of {sorted(types)}"
    assert types[head]["resources"].get("GPU", 0) == 0, "the head is a CPU node"
    workers = {name: spec for name, spec in types.items() if name != head}
    gpu = [spec for spec in workers.values() if spec.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu, "no worker type advertises a GPU in its resources"
    assert any(spec["min_workers"] == 0 < spec["max_workers"] for spec in gpu), (
        "GPUs must autoscale"
    )
    assert launcher["max_workers"] >= sum(spec["max_workers"] for spec in workers.values())


def test_launcher_keeps_the_dashboard_on_loopback_behind_a_token(launcher: dict[str, Any]) -> None:
    head = " ".join(launcher["head_start_ray_commands"])
    worker = " ".join(launcher["worker_start_ray_commands"])
    assert re.findall(r"--dashboard-host[= ](\S+)", head) == ["127.0.0.1"]
    for commands in (head, worker):
        assert "--metrics-export-port=8080" in commands
        assert "RAY_AUTH_MODE=token" in commands
    assert launcher["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"


def test_launcher_installs_the_repository_it_copies(launcher: dict[str, Any]) -> None:
    assert launcher["file_mounts"].get("~/nf-dist") == "."
    assert any(re.search(r"pip install .*-e ~/nf-dist", c) for c in launcher["setup_commands"])


def test_ray_version_agrees_everywhere(launcher: dict[str, Any]) -> None:
    image = launcher["docker"]["image"]
    assert image == dockerfile_base(), "the launcher and the Dockerfile use the same base image"
    match = RAY_IMAGE.fullmatch(image)
    assert match, f"{image}: expected rayproject/ray:<version>-py311-gpu"
    version = match.group(1)
    pins = RAY_PIN.findall(DOCKERFILE.read_text()) + RAY_PIN.findall(
        " ".join(launcher["setup_commands"])
    )
    assert pins and set(pins) == {version}, f"Ray pins {pins} differ from the image's {version}"
    for where, doc in ray_resources():
        assert cluster_spec(doc)["rayVersion"] == version, where


# --- KubeRay -----------------------------------------------------------------------------------


def test_kuberay_has_a_raycluster_and_a_rayjob_per_entrypoint() -> None:
    kinds = [doc["kind"] for _, doc in ray_resources()]
    assert "RayCluster" in kinds
    scripts = {
        script_name(shlex.split(doc["spec"]["entrypoint"]))
        for _, doc in ray_resources()
        if doc["kind"] == "RayJob"
    }
    assert scripts == ENTRYPOINTS


@pytest.mark.parametrize(("where", "doc"), ray_resources(), ids=[w for w, _ in ray_resources()])
def test_kuberay_resources_have_the_required_fields(where: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] in ("RayCluster", "RayJob")
    assert doc["metadata"]["name"]
    spec = cluster_spec(doc)
    assert spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert isinstance(spec["headGroupSpec"]["rayStartParams"], dict)
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["maxReplicas"]
        assert group["template"]["spec"]["containers"]
    if doc["kind"] == "RayJob":
        assert isinstance(doc["spec"]["entrypoint"], str)
        assert doc["spec"]["shutdownAfterJobFinishes"] is True
        assert isinstance(doc["spec"]["ttlSecondsAfterFinished"], int)
        assert doc["spec"]["ttlSecondsAfterFinished"] >= 0


@pytest.mark.parametrize(("where", "doc"), ray_resources(), ids=[w for w, _ in ray_resources()])
def test_kuberay_clusters_autoscale_gpus_privately(where: str, doc: dict[str, Any]) -> None:
    spec = cluster_spec(doc)
    assert spec["enableInTreeAutoscaling"] is True
    gpu_groups = [
        group
        for group in spec["workerGroupSpecs"]
        for container in group["template"]["spec"]["containers"]
        if int(container["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
    ]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu in its limits"
    assert any(g["minReplicas"] < g["maxReplicas"] for g in gpu_groups)
    assert spec["authOptions"]["mode"] == "token", "token authentication must be on"
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def test_pods_take_s3_access_from_an_irsa_service_account() -> None:
    accounts = {
        doc["metadata"]["name"]: doc["metadata"].get("annotations", {})
        for _, doc in kuberay_documents()
        if doc.get("kind") == "ServiceAccount"
    }
    for where, doc in ray_resources():
        for pod in pod_templates(cluster_spec(doc)):
            name = pod.get("serviceAccountName")
            assert name in accounts, f"{where}: pods run as {name!r}, not a ServiceAccount here"
            arn = accounts[name].get("eks.amazonaws.com/role-arn", "")
            assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn), arn
            for container in pod["containers"]:
                env = {e["name"] for e in container.get("env", [])}
                assert not env & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, where


def test_every_image_is_the_one_the_dockerfile_builds() -> None:
    import nf_dist

    image = dockerfile_image()
    assert image.endswith(f":{nf_dist.__version__}"), f"{image}: tag it with the package version"
    for where, doc in ray_resources():
        for pod in pod_templates(cluster_spec(doc)):
            for container in pod["containers"]:
                assert container["image"] == image, where
    mentioned = set(re.findall(r"ghcr\.io/[\w./-]+:[\w.-]+", README.read_text()))
    assert mentioned == {image}, f"the README names {mentioned}, the Dockerfile builds {image}"


def test_the_image_holds_the_job_scripts_where_entrypoints_run() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^WORKDIR\s+/\S+", text, re.MULTILINE), "entrypoints run jobs/ from WORKDIR"
    assert re.search(r"^COPY\s.*\bjobs\b", text, re.MULTILINE), "the image must contain jobs/"
    assert re.search(r"^RUN pip install .*\s\.(\s|$)", text, re.MULTILINE), "pip install ."


# --- job commands (RayJob entrypoints and the README's ray job submit) ---------------------------


@pytest.mark.parametrize("command", job_commands(), ids=[w for w, _ in job_commands()])
def test_job_command_names_a_job_script_and_existing_configs(
    command: tuple[str, list[str]],
) -> None:
    where, argv = command
    assert argv[0] in ("python", "python3", "nf-dist"), f"{where}: unexpected entrypoint {argv[0]}"
    name = script_name(argv)
    if name is not None and not (JOBS / f"{name}.py").exists():
        if name == "tune":
            pytest.skip("jobs/tune.py has not landed yet")
        pytest.fail(f"{where}: jobs/{name}.py does not exist")
    for flag, value in zip(argv, argv[1:]):
        if flag == "--config":
            assert (ROOT / value).is_file(), f"{where}: --config {value} does not exist"


def test_readme_submissions_ship_the_working_directory() -> None:
    submissions = readme_submissions()
    assert len(submissions) >= len(ENTRYPOINTS)
    for argv in submissions:
        flags = argv[: argv.index("--")]
        assert "--working-dir" in flags and flags[flags.index("--working-dir") + 1] == "."
        if "--runtime-env" in flags:
            runtime_env = ROOT / flags[flags.index("--runtime-env") + 1]
            assert runtime_env.is_file(), runtime_env
            assert "working_dir" in yaml.safe_load(runtime_env.read_text())


@pytest.fixture(scope="module")
def jobs() -> list[tuple[str, list[str], Any]]:
    return loaded_jobs()


def test_every_job_command_loads_its_configuration(jobs: list[tuple[str, list[str], Any]]) -> None:
    scripts = {script_name(argv) for _, argv, _ in jobs}
    landed = {name for name in ENTRYPOINTS if (JOBS / f"{name}.py").exists()}
    assert landed <= scripts, f"no job command runs {sorted(landed - scripts)}"
    for where, _, config in jobs:
        assert config is not None, where


def test_cloud_jobs_read_and_write_s3_only(jobs: list[tuple[str, list[str], Any]]) -> None:
    from nf_dist.bench.build import BuildConfig
    from nf_dist.bench.catalog import load_profile

    for where, _, config in jobs:
        values = list(uri_values(config))
        if isinstance(config, BuildConfig):
            data = load_profile(config.profile, config.profile_overrides).data
            values += list(uri_values(data, "data"))
        assert values, f"{where}: no URIs found"
        for field, uri in values:
            assert uri.startswith("s3://"), f"{where}: {field}={uri!r} is not on S3"


def test_jobs_use_benchmarks_that_a_build_job_builds(
    jobs: list[tuple[str, list[str], Any]],
) -> None:
    from nf_dist.bench.build import BuildConfig
    from nf_dist.bench.catalog import load_profile
    from nf_dist.pipelines.experiment import ExperimentConfig, validate

    built = {
        config.output_uri: config.profile
        for _, _, config in jobs
        if isinstance(config, BuildConfig)
    }
    assert built, "no job builds a benchmark"
    for where, _, config in jobs:
        bench_uri = getattr(config, "bench_uri", None)
        if not bench_uri:
            continue
        assert bench_uri in built, f"{where}: {bench_uri} is not what a build job writes"
        known = {row.id for row in load_profile(built[bench_uri]).models}
        for field in ("positives", "negatives", "generation_models", "validation_models"):
            unknown = set(getattr(config, field, ())) - known
            assert not unknown, f"{where}: {field} {sorted(unknown)} are not in {built[bench_uri]}"
        if isinstance(config, ExperimentConfig):
            validate(config)


# --- Prometheus --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scrape_configs() -> list[dict[str, Any]]:
    (config,) = yaml_documents(PROMETHEUS)
    return config["scrape_configs"]


def test_prometheus_reads_rays_service_discovery_file(scrape_configs: list[dict[str, Any]]) -> None:
    files = [
        path
        for job in scrape_configs
        for sd in job.get("file_sd_configs", [])
        for path in sd["files"]
    ]
    assert RAY_SERVICE_DISCOVERY in files


def test_prometheus_scrapes_every_port_a_job_serves(scrape_configs: list[dict[str, Any]]) -> None:
    import inspect

    from nf_dist.telemetry.metrics import serve_metrics

    bind = inspect.signature(serve_metrics).parameters["address"].default
    targets = [
        target
        for job in scrape_configs
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    hosts = {target.rsplit(":", 1)[0] for target in targets}
    assert hosts == {bind}, f"nf-dist serves /metrics on {bind}; targets are {targets}"
    scraped = {int(target.rsplit(":", 1)[1]) for target in targets}
    asked = {port for _, argv in job_commands() for port in metrics_ports(argv)}
    assert asked, "no job command turns its metrics on"
    assert asked <= scraped, f"ports {sorted(asked - scraped)} are served but not scraped"


# --- Grafana -----------------------------------------------------------------------------------


def test_dashboard_loads_with_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels()
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def dashboard_expressions() -> Iterator[tuple[str, str, str]]:
    """(panel title, PromQL, legend format) of every query on the dashboard."""
    for panel in dashboard_panels():
        for target in panel["targets"]:
            yield panel["title"], target["expr"], target.get("legendFormat", "")


def pending_tune_metrics(declared: dict[str, tuple[str, set[str]]]) -> set[str]:
    """Tune metrics the dashboard may name before they are declared: none once jobs/tune.py is
    there (its metrics must then be declared like every other)."""
    return set() if (JOBS / "tune.py").exists() else TUNE_METRICS - set(declared)


def test_dashboard_queries_only_declared_metrics_and_their_labels() -> None:
    declared = declared_metrics()
    pending = pending_tune_metrics(declared)
    for title, expr, legend in dashboard_expressions():
        names = set(re.findall(r"\bnf_[a-z0-9_]+\b", expr))
        assert names, f"{title}: {expr!r} names no nf-dist metric"
        unknown = names - set(declared) - pending
        assert not unknown, f"{title}: {sorted(unknown)} are not declared in telemetry/metrics.py"
        if not names <= set(declared):
            continue  # a pending Tune metric: its labels are not known yet
        labels = set(SCRAPE_LABELS).union(*(declared[name][1] for name in names))
        if any(name.endswith("_bucket") for name in names):
            labels.add("le")
        grouped = {
            label.strip()
            for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
            for label in clause.split(",")
            if label.strip()
        }
        shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert grouped | shown <= labels, f"{title}: {sorted((grouped | shown) - labels)} unknown"


def test_dashboard_shows_every_declared_metric_and_the_tune_sweep() -> None:
    declared = declared_metrics()
    used = {
        name
        for _, expr, _ in dashboard_expressions()
        for name in re.findall(r"\bnf_[a-z0-9_]+\b", expr)
    }
    shown = {declared[name][0] for name in used if name in declared}
    missing = {family for family, _ in declared.values()} - shown
    assert not missing, f"declared metrics {sorted(missing)} have no panel on the dashboard"
    assert used >= TUNE_METRICS, (
        "the Tune row shows nf_tune_trials_total and nf_tune_best_objective"
    )
