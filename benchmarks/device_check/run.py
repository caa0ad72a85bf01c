"""The GPU path, measured in one short run: placement, full-width training, a paper-scale GAN,
the sharded latent step and a few FingerBench rows with their GPU asks.

Usage (from the project root; ``make device-check`` runs it):
    .venv/bin/python -m benchmarks.device_check.run [--smoke] [--budget-s 480] [--out DIR]

On a GPU it measures, in time slices that add up to ``--budget-s`` (8 minutes by default):

1. ``env``: device name, driver, torch and CUDA versions;
2. ``classifiers``: training throughput (images/s) and accuracy after a fixed short schedule for
   the ``paper`` profile's source (ResNet18, width 1, stride-1 stem) and two other architectures,
   fp32 and bf16 autocast;
3. ``gan``: the paper-scale GAN (``jobs/configs/paper_gan.yaml``): seconds per training step;
4. ``latent_step``: the reference engine against the Ray engine with 1, 2 and 4 shard actors on
   fractions of the one device (``gpus_per_shard`` 1, 0.5, 0.25), and 8 same-architecture
   models stacked with vmap against a loop: median seconds per step and the ratios;
5. ``bench``: a handful of ``paper`` rows (source, a fine-tune, a pruning, a distillation)
   built on Ray with their GPU asks at shortened schedules, and the whole profile's wall time on
   one and on eight GPUs extrapolated from them (the method is written into the result).

Every stage records its peak GPU memory. A stage whose measured first step says it cannot finish
in its slice is refused with the reason, not started. ``--smoke`` runs the same code at toy sizes
on the CPU (the test suite does), so the script cannot rot while no GPU is lent. Results:
``<out>/device_check_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import machine
from nf_dist.bench.catalog import load_profile
from nf_dist.config import read_yaml
from nf_dist.data import DataConfig, load_splits
from nf_dist.distributed.cluster import init_ray
from nf_dist.distributed.sharded import RayModelGradients, ShardAsks
from nf_dist.fingerprint.naturalfinger import (
    LocalModelGradients,
    Objective,
    StepPlan,
    Targets,
    channels_last,
)
from nf_dist.fingerprint.stacked import StackedModels
from nf_dist.fingerprint.transforms import TransformSpec
from nf_dist.models import create_classifier
from nf_dist.models.checkpoint import save_classifier
from nf_dist.models.gan import GanSpec, GanTrainConfig, build_gan
from nf_dist.models.gan.train import train_gan
from nf_dist.models.inference import accuracy
from nf_dist.models.training import TrainConfig, train_classifier
from nf_dist.storage.checkpoints import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"
PAPER_GAN = ROOT / "jobs" / "configs" / "paper_gan.yaml"


@dataclass(frozen=True)
class Sizes:
    """What each stage works on: full sizes on a GPU, toy sizes for ``--smoke``."""

    width: float
    stem_stride: int
    images: int
    epochs: float
    gan_steps: int
    latents: int
    repeats: int
    bench_epochs: float
    data: DataConfig


FULL = Sizes(1.0, 1, 25_000, 1.0, 20, 256, 10, 1.0, DataConfig())
SMOKE = Sizes(
    0.125,
    2,
    256,
    1.0,
    2,
    16,
    2,
    0.5,
    DataConfig(half_size=300, finetune_size=100, test_size=100),
)
#: A floor for starting an embedded Ray and building one row, whatever the device.
RAY_START_S = 10.0
#: The share of the time budget each stage may use.
SLICES = {"env": 0.02, "classifiers": 0.3, "gan": 0.1, "latent_step": 0.25, "bench": 0.33}


class Stage:
    """A timed stage with its slice; records peak memory and refuses when it cannot fit."""

    def __init__(self, name: str, budget_s: float, device: torch.device) -> None:
        self.name, self.budget_s, self.device = name, budget_s * SLICES[name], device
        self.started = time.perf_counter()

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def fits(self, estimate_s: float, what: str) -> None:
        """Raise :class:`DoesNotFitError` when ``what`` is estimated to outrun the slice."""
        if estimate_s > self.left():
            raise DoesNotFitError(
                f"{what} would take about {estimate_s:.0f} s, more than the {self.left():.0f} s "
                f"left of the {self.name} stage's {self.budget_s:.0f} s slice"
            )

    def __enter__(self) -> Stage:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def record(self, result: dict[str, Any]) -> dict[str, Any]:
        peak = (
            torch.cuda.max_memory_allocated(self.device) / 2**30
            if self.device.type == "cuda"
            else None
        )
        return {
            **result,
            "seconds": round(time.perf_counter() - self.started, 2),
            "peak_gpu_memory_gib": peak,
        }


class DoesNotFitError(Exception):
    """A stage that would not fit its time slice (it is refused, not started)."""


def env_stage(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"machine": machine(), "python": platform.python_version()}
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_name"] = props.name
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["driver"] = _driver_version()
    else:
        info["device_name"] = platform.processor() or "cpu"
    return info


def _driver_version() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def classifier_stage(stage: Stage, sizes: Sizes, splits: Any) -> dict[str, Any]:
    """Images per second and accuracy after one fixed schedule, fp32 and bf16 autocast."""
    data = splits.half_a.subset(np.arange(min(sizes.images, len(splits.half_a))), "train")
    rows = []
    for arch in ("resnet18", "vgg16_bn", "mobilenet_v2"):
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = create_classifier(arch, 10, sizes.width, sizes.stem_stride)
            model = model.to(stage.device).to(memory_format=torch.channels_last)
            config = TrainConfig(epochs=sizes.epochs, batch_size=256, lr=0.1, precision=precision)
            probe = replace(config, epochs=min(1.0, 1024 / len(data)))  # the first few batches
            started = time.perf_counter()
            train_classifier(model, data, probe, device=stage.device, progress=False)
            stage.fits((time.perf_counter() - started) * config.epochs / probe.epochs, arch)
            result = train_classifier(model, data, config, device=stage.device, progress=False)
            rows.append(
                {
                    "arch": arch,
                    "precision": precision,
                    "images_per_s": round(len(data) * config.epochs / result.seconds, 1),
                    "test_accuracy": round(accuracy(model, splits.test, device=stage.device), 4),
                    "epochs": config.epochs,
                    "width": sizes.width,
                }
            )
    return {"models": rows}


def gan_stage(stage: Stage, sizes: Sizes, splits: Any, work: Path) -> dict[str, Any]:
    """Seconds per training step of the paper-scale GAN (smoke: a tiny one)."""
    recipe = read_yaml(PAPER_GAN)["gan"] if sizes is FULL else {"g_channels": 8, "d_channels": 8}
    config = GanTrainConfig(**{**recipe, "steps": sizes.gan_steps, "checkpoint_every": 10_000})
    first = replace(config, steps=1)
    started = time.perf_counter()
    train_gan(
        splits.half_a.images,
        splits.half_a.labels,
        first,
        str(work / "gan"),
        device=str(stage.device),
        progress=False,
    )
    stage.fits((time.perf_counter() - started) * config.steps, "the GAN steps")
    result = train_gan(
        splits.half_a.images,
        splits.half_a.labels,
        config,
        str(work / "gan"),
        device=str(stage.device),
        progress=False,
    )
    return {
        "spec": {k: recipe.get(k) for k in ("g_channels", "d_channels", "attention")},
        "batch_size": config.batch_size,
        "steps_timed": result.steps_done - 1,
        "seconds_per_step": round(result.seconds / max(1, result.steps_done - 1), 4),
    }


def _timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def latent_stage(stage: Stage, sizes: Sizes, work: Path) -> dict[str, Any]:
    """Reference vs Ray shards on fractions of one device; vmap stacking vs a loop."""
    spec = GanSpec(128, 10, 64 if sizes is FULL else 8, 64 if sizes is FULL else 8, False)
    generator, discriminator = build_gan(spec)
    gan_uri = save_checkpoint(
        str(work / "latent_gan"),
        {
            **{f"generator.{k}": v for k, v in generator.state_dict().items()},
            **{f"discriminator.{k}": v for k, v in discriminator.state_dict().items()},
        },
        {"kind": "gan", "spec": vars(spec)},
    )
    models, uris = [], []
    for i in range(8):
        torch.manual_seed(i)
        model = create_classifier("resnet18", 10, sizes.width, sizes.stem_stride).eval()
        models.append(model.requires_grad_(False))
        uris.append(save_classifier(model, str(work / f"m{i}")))
    generator = generator.to(stage.device).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(sizes.latents, 128, generator=gen).to(stage.device)
    labels = [
        torch.randint(0, 10, (sizes.latents,), generator=gen).to(stage.device) for _ in range(3)
    ]
    targets = Targets(*labels)
    plan = StepPlan((0, 1, 2, 3), (0, 1, 2, 3), TransformSpec("identity", {}), 0)
    objective = Objective()
    # Channels-last, as the method's frozen() and the shard actors hold them.
    on_device = [channels_last(m.to(stage.device)) for m in models]
    reference = LocalModelGradients(channels_last(generator), on_device[:4], on_device[4:])
    step = lambda: reference(z, targets, plan, objective)  # noqa: E731
    started = time.perf_counter()
    step()
    stage.fits((time.perf_counter() - started) * sizes.repeats * 8, "the latent steps")
    result: dict[str, Any] = {"latents": sizes.latents, "reference_s": _timed(step, sizes.repeats)}
    gpus = torch.cuda.device_count()
    init_ray(num_cpus=None)
    targets = Targets(*(t.cpu() for t in labels))
    for shards, fraction in ((1, 1.0), (2, 0.5), (4, 0.25)):
        asks = ShardAsks(num_cpus=0.25 if gpus == 0 else 1.0, num_gpus=fraction if gpus else 0.0)
        with RayModelGradients(gan_uri, uris[:4], uris[4:], shards, asks) as engine:
            engine.wait_ready()
            result[f"ray_{shards}_shards_s"] = _timed(
                lambda: engine(z.cpu(), targets, plan, objective), sizes.repeats
            )
    images = torch.rand(sizes.latents, 3, 32, 32, device=stage.device)
    stacked = StackedModels(on_device)
    result["stacked_s"] = _timed(
        lambda: stacked(images.requires_grad_(True)).sum().backward(), sizes.repeats
    )
    result["looped_s"] = _timed(
        lambda: torch.stack([m(images) for m in on_device]).sum().backward(), sizes.repeats
    )
    result["ratios"] = {
        "ray_1_shard_over_reference": result["ray_1_shards_s"] / result["reference_s"],
        "reference_over_ray_2_shards": result["reference_s"] / result["ray_2_shards_s"],
        "reference_over_ray_4_shards": result["reference_s"] / result["ray_4_shards_s"],
        "looped_over_stacked": result["looped_s"] / result["stacked_s"],
    }
    return result


ROWS = ("source", "ftal", "prune-0.5", "distill-resnet34")


def bench_stage(stage: Stage, sizes: Sizes, work: Path) -> dict[str, Any]:
    """A few ``paper`` rows built on Ray with their GPU asks, at ``bench_epochs`` per recipe,
    and the whole profile extrapolated."""
    from nf_dist.bench.build import BuildConfig, build_bench

    # Starting Ray and building even one row takes tens of seconds; refuse before starting.
    stage.fits(RAY_START_S, "starting Ray and the bench rows")
    profile_name = "paper" if sizes is FULL else "smoke"
    rows = ROWS if sizes is FULL else ("source", "ftll", "prune-0.5", "distill-vgg13_bn")
    profile = load_profile(profile_name)
    by_id = profile.by_id()
    overrides: dict[str, Any] = {
        "recipes": {
            name: {"train": {"epochs": sizes.bench_epochs}}
            for name in {by_id[r].recipe for r in rows if by_id[r].recipe}
        }
    }
    if sizes is SMOKE:
        overrides["data"] = {"half_size": 300, "finetune_size": 100, "test_size": 100}
    report = build_bench(
        BuildConfig(
            profile=profile_name,
            output_uri=str(work / "bench"),
            only=rows,
            profile_overrides=overrides,
            progress=False,
        )
    )
    built = {r["id"]: r for r in report.rows}
    measured = []
    for row_id in rows:
        model = by_id[row_id]
        full_epochs = model.train.epochs
        seconds = built[row_id]["wall_s"]
        measured.append(
            {
                "id": row_id,
                "attack": model.attack,
                "num_gpus": model.num_gpus,
                "num_cpus": model.num_cpus,
                "epochs_run": sizes.bench_epochs,
                "wall_s": seconds,
                "test_accuracy": built[row_id]["test_accuracy"],
                "seconds_per_epoch": seconds / sizes.bench_epochs,
                "full_epochs": full_epochs,
            }
        )
    return {"rows": measured, "extrapolation": extrapolate(profile, measured)}


def extrapolate(profile: Any, measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole profile's GPU-seconds and wall time on 1 and 8 GPUs.

    Method: each catalog row costs (seconds per epoch of the measured row with the same attack,
    or the source's for attacks not measured) x (its recipe's epochs); rows run side by side as
    their GPU asks allow (a row asking g GPUs occupies g of the G devices), so the wall time is
    the total GPU-seconds divided by G, but never less than the longest chain of parents (the
    source, then its longest child).
    """
    per_epoch = {m["attack"]: m["seconds_per_epoch"] for m in measured}
    fallback = next(m["seconds_per_epoch"] for m in measured if m["attack"] == "scratch")
    gpu_seconds, longest_child = 0.0, 0.0
    source_seconds = 0.0
    for model in profile.models:
        seconds = per_epoch.get(model.attack, fallback) * model.train.epochs
        gpu_seconds += seconds * max(model.num_gpus, 1e-9)
        if model.parent is None and model.attack == "scratch":
            source_seconds = max(source_seconds, seconds)
        else:
            longest_child = max(longest_child, seconds)
    chain = source_seconds + longest_child
    return {
        "method": (extrapolate.__doc__ or "")
        .split("Method: ", 1)[1]
        .strip()
        .replace("\n    ", " "),
        "gpu_seconds": round(gpu_seconds, 1),
        "wall_s_1_gpu": round(max(gpu_seconds, chain), 1),
        "wall_s_8_gpus": round(max(gpu_seconds / 8, chain), 1),
    }


def run(budget_s: float, smoke: bool, out: Path) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = SMOKE if smoke else FULL
    if not smoke and device.type != "cuda":
        raise SystemExit("device_check: no GPU here; use --smoke to exercise it on the CPU")
    record: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.device_check.run", *sys.argv[1:]]),
        "budget_s": budget_s,
        "smoke": smoke,
        "stages": {},
    }
    started = time.perf_counter()
    splits = load_splits(sizes.data, with_query=False)
    with tempfile.TemporaryDirectory(prefix="nf_device_") as folder:
        work = Path(folder)
        stages: dict[str, Callable[[Stage], dict[str, Any]]] = {
            "env": lambda s: env_stage(device),
            "classifiers": lambda s: classifier_stage(s, sizes, splits),
            "gan": lambda s: gan_stage(s, sizes, splits, work),
            "latent_step": lambda s: latent_stage(s, sizes, work),
            "bench": lambda s: bench_stage(s, sizes, work),
        }
        for name, body in stages.items():
            with Stage(name, budget_s, device) as stage:
                try:
                    record["stages"][name] = stage.record(body(stage))
                except DoesNotFitError as refused:
                    record["stages"][name] = stage.record({"refused": str(refused)})
    record["wall_s"] = round(time.perf_counter() - started, 1)
    name = record["stages"]["env"]["device_name"].replace(" ", "_").replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"device_check_{'smoke_' if smoke else ''}{name}"
    Path(f"{stem}.json").write_text(json.dumps(record, indent=2, default=float))
    Path(f"{stem}.md").write_text(markdown(record))
    return record


def markdown(record: dict[str, Any]) -> str:
    stages = record["stages"]
    env = stages["env"]
    lines = [
        f"# Device check: {env['device_name']}",
        "",
        f"Command: `{record['command']}`; wall time {record['wall_s']} s of a "
        f"{record['budget_s']:.0f} s budget; torch {env['torch']}, CUDA {env['cuda']}, driver "
        f"{env.get('driver')}.",
        "",
    ]
    for name, result in stages.items():
        if name == "env":
            continue
        memory = result.get("peak_gpu_memory_gib")
        lines += [
            f"## {name}",
            "",
            f"{result['seconds']} s; peak GPU memory "
            f"{'-' if memory is None else f'{memory:.2f} GiB'}",
            "",
        ]
        if "refused" in result:
            lines += [f"DoesNotFitError: {result['refused']}", ""]
            continue
        lines += [
            "```",
            json.dumps(
                {k: v for k, v in result.items() if k not in ("seconds", "peak_gpu_memory_gib")},
                indent=1,
                default=float,
            ),
            "```",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    record = run(args.budget_s, args.smoke, args.out)
    print(json.dumps({k: v for k, v in record.items() if k != "stages"}, indent=2))


if __name__ == "__main__":
    main()
