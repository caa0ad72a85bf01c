"""Benchmark: seconds per latent-optimisation step, reference vs authors' loop vs Ray shards, and
stacked (vmap) vs looped evaluation of 8 models of one architecture.

Usage (from the project root, after ``python -m benchmarks.bench_build.run`` and ``make run``):
    .venv/bin/python -m benchmarks.latent_step.run [--bench runs/bench/cpu] \\
        [--gan runs/quickstart/gan]

Models: 4 positives + 4 negatives of the built benchmark (one step's mini-batch, the paper's
4 + 4), the quickstart's GAN, 128 latents. Every engine runs one CPU thread per worker; the
reference runs in this process with one thread. Writes
``benchmarks/latent_step/results/latent_step.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import machine
from nf_dist import bench
from nf_dist.distributed.cluster import init_ray
from nf_dist.distributed.sharded import RayModelGradients
from nf_dist.fingerprint.losses import cw_loss
from nf_dist.fingerprint.naturalfinger import (
    LocalModelGradients,
    Objective,
    StepPlan,
    Targets,
    channels_last,
)
from nf_dist.fingerprint.stacked import StackedModels
from nf_dist.fingerprint.transforms import TransformSpec, apply_transform
from nf_dist.models.gan.train import load_gan

RESULTS = Path(__file__).parent / "results"
POSITIVES = ["source", "ftal", "prune-0.3", "distill-resnet18"]
NEGATIVES = ["mirror-source", "indep-vgg13_bn", "indep-shufflenet_v2", "indep-resnet34"]
SAME_ARCH = ["source", "ftll", "ftal", "rtll", "rtal", "prune-0.1", "prune-0.2", "noise-5"]


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="runs/bench/cpu")
    parser.add_argument("--gan", default="runs/quickstart/gan")
    parser.add_argument("--latents", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    built = bench.load(args.bench)
    store_uris = {i: str(Path(args.bench).resolve() / "models" / i) for i in built.ids()}
    generator, _, meta = load_gan(args.gan)
    z_dim = int(meta["spec"]["z_dim"])
    generator.requires_grad_(False)
    positives = [built.model(i).requires_grad_(False) for i in POSITIVES]
    negatives = [built.model(i).requires_grad_(False) for i in NEGATIVES]
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(args.latents, z_dim, generator=gen)
    targets = Targets(*(torch.randint(0, 10, (args.latents,), generator=gen) for _ in range(3)))
    y_gen, y_orig, y_adv = targets.y_gen, targets.y_orig, targets.y_adv
    plan = StepPlan((0, 1, 2, 3), (0, 1, 2, 3), TransformSpec("identity", {}), 0)
    objective = Objective(50.0)

    # Channels-last, as the method's frozen() and the shard actors hold them.
    for module in [generator, *positives, *negatives]:
        channels_last(module)
    reference = LocalModelGradients(generator, positives, negatives)
    reference_s = timed(lambda: reference(z, targets, plan, objective), args.repeats)

    def authors_loop() -> torch.Tensor:
        # The authors' style: a fresh G(z) and a separate backward per model.
        latents = z.clone().requires_grad_(True)
        for models, target, count in ((positives, y_orig, 4), (negatives, y_adv, 4)):
            for model in models:
                images = apply_transform(generator(latents, y_gen), plan.transform)
                (cw_loss(model(images), target, 50.0).mean() / count).backward()
        assert latents.grad is not None
        return latents.grad

    loop_s = timed(authors_loop, args.repeats)

    init_ray(num_cpus=2)
    ray_s = {}
    for shards in (1, 2):
        with RayModelGradients(
            str(Path(args.gan).resolve()),
            [store_uris[i] for i in POSITIVES],
            [store_uris[i] for i in NEGATIVES],
            shards,
        ) as engine:
            engine.wait_ready()
            ray_s[shards] = timed(lambda: engine(z, targets, plan, objective), args.repeats)
        time.sleep(1)

    same = [built.model(i).requires_grad_(False) for i in SAME_ARCH]
    images = torch.rand(args.latents, 3, 32, 32)
    stacked = StackedModels(same)

    def looped_eval() -> None:
        x = images.clone().requires_grad_(True)
        torch.stack([m(x) for m in same]).sum().backward()

    def stacked_eval() -> None:
        x = images.clone().requires_grad_(True)
        stacked(x).sum().backward()

    looped_s = timed(looped_eval, args.repeats)
    stacked_s = timed(stacked_eval, args.repeats)
    record = {
        "command": " ".join(["python -m benchmarks.latent_step.run", *sys.argv[1:]]),
        "machine": machine(),
        "setup": {
            "bench": args.bench,
            "gan": args.gan,
            "gan_spec": meta["spec"],
            "latents": args.latents,
            "positives": POSITIVES,
            "negatives": NEGATIVES,
            "threads_per_worker": 1,
            "repeats": args.repeats,
            "statistic": "median seconds per step",
        },
        "reference_step_s": round(reference_s, 4),
        "authors_loop_step_s": round(loop_s, 4),
        "ray_1shard_step_s": round(ray_s[1], 4),
        "ray_2shard_step_s": round(ray_s[2], 4),
        "ray_1shard_overhead": round(ray_s[1] / reference_s - 1, 3),
        "ray_2shard_speedup": round(reference_s / ray_s[2], 3),
        "stacking": {
            "models": SAME_ARCH,
            "arch": "resnet18 (width 0.25, stride-2 stem)",
            "looped_s": round(looped_s, 4),
            "stacked_s": round(stacked_s, 4),
            "speedup": round(looped_s / stacked_s, 3),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latent_step.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k not in ("machine", "setup")}, indent=2))


if __name__ == "__main__":
    main()
