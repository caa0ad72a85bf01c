"""The benchmark catalogs: the paper's structure, validation of bad rows, the plan command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from nf_dist.bench.build import task_graph
from nf_dist.bench.catalog import CATALOG_DIR, load_profile, profile_names
from nf_dist.cli import main
from nf_dist.errors import ConfigError
from nf_dist.models import list_classifiers


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_full_profiles_have_the_papers_structure(name: str) -> None:
    profile = load_profile(name)
    models = profile.models
    assert profile.counts() == {"positive": 63, "negative": 91}
    assert {m.arch for m in models} == set(list_classifiers())
    assert len(list_classifiers()) == 15
    attacks = Counter(m.attack for m in models if m.role == "positive")
    assert attacks == {
        "scratch": 1,
        "finetune": 4,
        "prune": 9,
        "noise": 9,
        "adversarial": 10,
        "distill": 15,
        "knockoff": 15,
    }
    by_id = profile.by_id()
    mirrors = [m for m in models if m.mirror_of is not None]
    assert len(mirrors) == 63
    assert len({m.mirror_of for m in mirrors}) == 63  # one to one
    for mirror in mirrors:
        positive = by_id[mirror.mirror_of]  # type: ignore[index]
        assert positive.role == "positive" and mirror.role == "negative"
        assert (mirror.attack, mirror.params, mirror.arch) == (
            positive.attack,
            positive.params,
            positive.arch,
        )
        assert mirror.data_half == "b" and positive.data_half == "a"
    independent = [m for m in models if m.role == "negative" and m.mirror_of is None]
    assert len(independent) == 28
    assert sorted(m.arch for m in independent if m.attack == "scratch") == sorted(
        a for a in list_classifiers() if a != "resnet18"
    )


def test_build_order_puts_parents_first() -> None:
    for name in profile_names():
        seen: set[str] = set()
        for model in load_profile(name).models:
            assert model.parent is None or model.parent in seen
            seen.add(model.id)


def test_paper_profile_asks_for_gpus_and_the_cpu_profile_does_not() -> None:
    paper = task_graph(load_profile("paper"))
    # the 154 benchmark models and the 16 + 16 generation ensembles
    assert len(paper) == 154 + 32 and all(t["num_gpus"] > 0 for t in paper)
    assert all(t["num_gpus"] == 0 for t in task_graph(load_profile("cpu")))


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_the_ensembles_are_16_surrogates_and_16_references_outside_the_benchmark(
    name: str,
) -> None:
    profile = load_profile(name)
    assert len(profile.models) == 154
    surrogates = [m for m in profile.ensembles if m.role == "positive"]
    references = [m for m in profile.ensembles if m.role == "negative"]
    assert len(surrogates) == len(references) == 16
    assert {m.attack for m in surrogates} == {"distill", "knockoff"}
    assert all(m.parent == "source" and m.data_half == "a" for m in surrogates)
    reference_ids = {m.id for m in references}
    assert all(m.data_half == "b" and m.parent in (None, *reference_ids) for m in references)
    assert len({m.arch for m in profile.ensembles}) >= 6, "varied architectures"
    assert not {m.id for m in profile.ensembles} & {m.id for m in profile.models}
    # the benchmark's own recipes (half schedules carried no lineage), and one reference is the
    # owner's twin: the source's architecture and recipe on half b
    benchmark_recipes = {m.recipe for m in profile.models}
    assert {m.recipe for m in profile.ensembles} <= benchmark_recipes
    source = profile.by_id()["source"]
    twins = [m for m in references if (m.arch, m.recipe) == (source.arch, source.recipe)]
    assert len(twins) == 1 and twins[0].parent is None


def test_the_reduced_bench_keeps_every_attack_and_role_with_the_cpu_rows() -> None:
    from nf_dist.bench.attacks import ATTACKS

    reduced, full = load_profile("cpu40"), load_profile("cpu")
    assert len(reduced.models) == 40 and reduced.counts() == {"positive": 20, "negative": 20}
    assert {m.attack for m in reduced.models} == set(ATTACKS.names())
    rows = full.by_id()
    assert all(m == rows[m.id] for m in reduced.models), "the cpu profile's rows, unchanged"
    mirrored = {rows[m.mirror_of].attack for m in reduced.models if m.mirror_of}
    assert mirrored == {m.attack for m in reduced.models if m.role == "positive"}
    assert len(reduced.ensembles) == 16
    higher = load_profile("cpu40_hq")
    assert [m.id for m in higher.all_models] == [m.id for m in reduced.all_models]
    assert {m.stem_stride for m in higher.models} == {1}
    student = higher.by_id()["distill-resnet34"]
    assert student.train.epochs == pytest.approx(2.4 * rows["distill-resnet34"].train.epochs)
    assert higher.by_id()["source"].train.epochs == 20  # width 0.5 reached 0.848 in 12 (probe)
    assert higher.by_id()["ftll"].train == reduced.by_id()["ftll"].train  # derived rows unchanged
    # the lower level: the same rows and layout, every schedule from scratch or by distillation
    # halved (the source's included), derived rows unchanged
    lower, cpu40 = load_profile("cpu40_lq").by_id(), {m.id: m for m in reduced.all_models}
    assert list(lower) == list(cpu40)
    for model_id, row in lower.items():
        base = cpu40[model_id]
        assert (row.arch, row.width, row.stem_stride) == (base.arch, base.width, base.stem_stride)
        halved = row.recipe in ("source", "scratch", "student", "knockoff")
        assert row.train.epochs == pytest.approx(base.train.epochs / (2 if halved else 1))


def test_ensemble_rows_are_checked_like_benchmark_rows(tmp_path: Path) -> None:
    source = {
        "id": "source",
        "role": "positive",
        "arch": "resnet18",
        "attack": "scratch",
        "recipe": "source",
        "data_half": "a",
        "seed": 0,
    }
    surrogate = {
        "id": "ens",
        "role": "positive",
        "arch": "vgg13_bn",
        "attack": "distill",
        "recipe": "student",
        "parent": "source",
        "seed": 1,
    }
    child = {
        "id": "child",
        "role": "positive",
        "attack": "finetune",
        "recipe": "finetune",
        "parent": "ens",
        "seed": 2,
    }
    with pytest.raises(ConfigError, match="parent 'ens' is an ensemble model"):
        load_profile(_write_catalog(tmp_path, [source, child], ensembles=[surrogate]))
    with pytest.raises(ConfigError, match="model id 'source' appears twice"):
        load_profile(_write_catalog(tmp_path, [source], ensembles=[{**surrogate, "id": "source"}]))
    mirror = {**surrogate, "role": "negative", "mirror_of": "source"}
    with pytest.raises(ConfigError, match="mirror_of and floor_exempt belong to benchmark rows"):
        load_profile(_write_catalog(tmp_path, [source], ensembles=[mirror]))
    profile = load_profile(_write_catalog(tmp_path, [source], ensembles=[surrogate]))
    assert [m.id for m in profile.ensembles] == ["ens"] and [m.id for m in profile.models] == [
        "source"
    ]


def test_smoke_profile_exercises_every_attack() -> None:
    from nf_dist.bench.attacks import ATTACKS

    profile = load_profile("smoke")
    assert {m.attack for m in profile.models} == set(ATTACKS.names())
    assert len(profile.models) == 12


def _write_catalog(tmp_path: Path, rows: list[dict], **extra: object) -> str:
    spec = yaml.safe_load((CATALOG_DIR / "smoke.yaml").read_text())
    spec["models"] = rows
    spec.update(extra)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


SOURCE = {
    "id": "s",
    "role": "positive",
    "arch": "resnet18",
    "attack": "scratch",
    "recipe": "source",
}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([SOURCE, {**SOURCE, "id": "t", "arch": "resnet99"}], "model 't': unknown architecture"),
        ([SOURCE, {**SOURCE, "id": "t", "attack": "steal"}], "model 't': unknown attack"),
        (
            [
                SOURCE,
                {
                    "id": "t",
                    "role": "positive",
                    "attack": "finetune",
                    "recipe": "finetune",
                    "parent": "nobody",
                },
            ],
            "model 't': parent 'nobody' is not in the catalog",
        ),
        (
            [
                {
                    "id": "a",
                    "role": "positive",
                    "attack": "finetune",
                    "recipe": "finetune",
                    "parent": "b",
                },
                {
                    "id": "b",
                    "role": "positive",
                    "attack": "finetune",
                    "recipe": "finetune",
                    "parent": "a",
                },
            ],
            "cycle",
        ),
        ([SOURCE, SOURCE], "appears twice"),
        (
            [
                SOURCE,
                {
                    "id": "t",
                    "role": "positive",
                    "attack": "prune",
                    "recipe": "finetune",
                    "parent": "s",
                    "params": {"ratee": 0.5},
                },
            ],
            "no parameter 'ratee'",
        ),
        ([{**SOURCE, "recipe": "slow"}], "unknown recipe 'slow'"),
        ([{**SOURCE, "id": "../../x"}], "model id '../../x' is not a safe name"),
        ([{**SOURCE, "id": "/tmp/abs"}], "is not a safe name"),
        ([{**SOURCE, "id": ""}], "is not a safe name"),
        ([{**SOURCE, "id": "a\x00b"}], "is not a safe name"),
        ([{**SOURCE, "rol": "positive"}], "rol"),
        ([{**SOURCE, "width": 0}], "model 's': width must be positive"),
        (
            [
                SOURCE,
                {
                    "id": "t",
                    "role": "positive",
                    "attack": "finetune",
                    "recipe": "finetune",
                    "parent": "s",
                    "width": 0.5,
                },
            ],
            "model 't': width must be positive and set beside `arch`",
        ),
    ],
)
def test_bad_catalogs_are_rejected_naming_the_row(
    tmp_path: Path, rows: list[dict], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_profile(_write_catalog(tmp_path, rows))


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="paper"):
        load_profile("papr")


def test_plan_json_lists_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "plan", "--profile", "paper", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 154
    assert {"id", "role", "arch", "attack", "params", "parent"} <= set(rows[0])
    assert sum(r["role"] == "positive" for r in rows) == 63


def test_dry_run_prints_the_task_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "build", "--profile", "paper", "--dry-run"]) == 0
    graph = json.loads(capsys.readouterr().out)
    assert len(graph["tasks"]) == 154 + 32  # the benchmark and the generation ensembles
    source = next(t for t in graph["tasks"] if t["id"] == "source")
    assert source["num_gpus"] == 1 and source["after"] is None


def test_overrides_reach_the_profile() -> None:
    profile = load_profile("smoke", {"data": {"half_size": 100}, "width": 0.5})
    assert profile.data.half_size == 100
    assert profile.by_id()["source"].width == 0.5


def test_per_architecture_settings_reach_the_rows_that_name_their_architecture() -> None:
    profile = load_profile("cpu")
    by_id = profile.by_id()
    student = by_id["distill-mobilenet_v2"]
    assert student.stem_stride == 1 and student.width == 0.25
    assert by_id["distill-squeezenet"].width == 0.5
    # dense architectures follow the hardware; depthwise ones are slower in bf16 everywhere
    assert by_id["distill-resnet18"].train.precision == "auto"
    assert by_id["distill-efficientnet_b0"].train.precision == "fp32"
    base_epochs = by_id["distill-resnet18"].train.epochs
    assert by_id["distill-densenet_bc"].train.epochs == pytest.approx(1.5 * base_epochs)
    # Rows that inherit their parent's architecture keep their own recipe untouched.
    assert by_id["ftal"].train.precision == "auto" and by_id["ftal"].stem_stride == 2


def test_the_higher_level_widens_the_owners_model_and_its_twins_only() -> None:
    by_id = load_profile("cpu40_hq").by_id()
    twins = ("source", "mirror-source", "ens-ref-00-resnet18")
    assert all(by_id[i].width == 0.5 and by_id[i].stem_stride == 1 for i in twins)
    assert by_id["ftll"].width == 0.5 and by_id["mirror-adv-0.5"].width == 0.5  # inherited
    # the other ResNet18s (students of independents, surrogates) keep the profile's width
    assert by_id["indep-resnet34-distilled"].width == 0.25
    assert by_id["ens-distill-00-resnet18"].width == 0.25


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"arch_train": {"resnet18": {"epoch": 3}}}, "unknown training field 'epoch'"),
        ({"arch_train": {"lenet": {"epochs": 3}}}, "unknown architecture 'lenet'"),
        ({"arch_train": {"resnet18": {"precision": "fp8"}}}, "precision"),
        ({"arch_epoch_scale": {"resnet18": 0}}, "arch_epoch_scale.resnet18 must be positive"),
        ({"floors": {"of_source": 1.5}}, r"floors.of_source must be in \[0, 1\]"),
    ],
)
def test_bad_profile_settings_name_the_field(tmp_path: Path, extra: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_profile(_write_catalog(tmp_path, [SOURCE], **extra))


def test_a_floor_exemption_must_say_why(tmp_path: Path) -> None:
    child = {
        "id": "p9",
        "role": "positive",
        "attack": "prune",
        "recipe": "finetune",
        "parent": "s",
        "params": {"rate": 0.9},
        "floor_exempt": True,
    }
    with pytest.raises(ConfigError, match="floor_exempt needs a floor_reason"):
        load_profile(_write_catalog(tmp_path, [SOURCE, child]))
    reason = {**child, "floor_reason": "90% pruning shows what is left"}
    assert load_profile(_write_catalog(tmp_path, [SOURCE, reason])).floor_exempt == {
        "p9": "90% pruning shows what is left"
    }


def test_floors_follow_the_reference_of_each_kind_of_model() -> None:
    from nf_dist.bench.floors import FloorFactors, check_floors

    def row(i: str, role: str, attack: str, acc: float, **extra: str) -> dict:
        return {"id": i, "role": role, "attack": attack, "test_accuracy": acc, **extra}

    rows = [
        row("source", "positive", "scratch", 0.80),
        row("ftal", "positive", "finetune", 0.67, parent="source"),
        row("knock", "positive", "knockoff", 0.57, parent="source"),
        row("weak", "positive", "distill", 0.60, parent="source"),
        row("mirror-weak", "negative", "distill", 0.50, parent="m", mirror_of="weak"),
        row("indep", "negative", "scratch", 0.70),
        row("indep-student", "negative", "distill", 0.55, parent="indep"),
        row("p9", "positive", "prune", 0.30, parent="source"),
    ]
    checks = {c.id: c for c in check_floors(rows, FloorFactors(), {"p9": "shows what is left"})}
    assert "source" not in checks
    assert checks["ftal"].floor == pytest.approx(0.68) and checks["ftal"].below
    assert checks["knock"].floor == pytest.approx(0.56) and not checks["knock"].below
    assert checks["mirror-weak"].floor == pytest.approx(0.51) and checks["mirror-weak"].below
    assert checks["indep"].floor == pytest.approx(0.68) and not checks["indep"].below
    assert checks["indep-student"].floor == pytest.approx(0.595) and checks["indep-student"].below
    assert checks["p9"].floor is None and not checks["p9"].below
