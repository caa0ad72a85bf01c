"""Benchmark: screening rules re-applied to one finished quickstart optimisation.

Usage (from the project root, on the folder of a finished quickstart run):
    .venv/bin/python -m benchmarks.archive.screen_margins.run --run runs/qs_base [--out NAME]

The quickstart checkpoints its latent optimisation (``fingerprint.progress``), so every rule here
screens the same optimised images. A rule is chosen on the generation models only, by leaving one
out: each generation negative (and each generation positive but the source) in turn is dropped
from the screen and then queried like a suspect; the leave-one-out ARUC of those rates is the
choice criterion. Held-out suspects are scored for the report, never for the choice. Results go to
``benchmarks/archive/screen_margins/results/<out>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from benchmarks.common import machine
from nf_dist.bench.store import BenchStore
from nf_dist.config import load_config, read_yaml
from nf_dist.fingerprint.naturalfinger import frozen, prepare
from nf_dist.fingerprint.naturalfinger.images import generate_images, quantize
from nf_dist.fingerprint.transforms import apply_transform, sample_params
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.gan.train import load_gan
from nf_dist.pipelines.quickstart import QuickstartConfig
from nf_dist.scoring import summarize
from nf_dist.storage.artifacts import sibling
from nf_dist.storage.checkpoints import load_checkpoint

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Rule:
    """Keep an image when, on every screened view, every positive gives y_orig a probability
    above ``positive_floor`` (and as its top-1) and every negative gives it less than
    ``negative_cap`` (and not as its top-1); ``generator_class`` ``off`` (``on``) also asks that
    y_orig differ from (equal) the class the generator drew the image as."""

    name: str
    negative_cap: float = 1.0
    positive_floor: float = 0.0
    generator_class: Literal["any", "off", "on"] = "any"


RULES = [
    Rule("top-1 only (default)"),
    *(Rule(f"negatives p(y_orig) < {c}", negative_cap=c) for c in (0.3, 0.2, 0.1, 0.05)),
    *(Rule(f"positives p(y_orig) > {f}", positive_floor=f) for f in (0.5, 0.7, 0.9)),
    Rule("negatives < 0.2, positives > 0.7", negative_cap=0.2, positive_floor=0.7),
    Rule("negatives < 0.1, positives > 0.7", negative_cap=0.1, positive_floor=0.7),
    Rule("y_orig off the generator class", generator_class="off"),
    Rule("y_orig on the generator class", generator_class="on"),
]


def survivors(
    probs: torch.Tensor,
    y_orig: torch.Tensor,
    y_gen: torch.Tensor,
    pos: list[int],
    neg: list[int],
    rule: Rule,
) -> torch.Tensor:
    """Mask over images; ``probs`` is ``(views, models, N, classes)``."""
    index = y_orig.view(1, 1, -1, 1).expand(*probs.shape[:3], 1)
    p_orig = probs.gather(3, index).squeeze(3)
    top1 = probs.argmax(3) == y_orig.view(1, 1, -1)
    keep = (top1[:, pos] & (p_orig[:, pos] > rule.positive_floor)).all(dim=(0, 1))
    keep &= (~top1[:, neg] & (p_orig[:, neg] < rule.negative_cap)).all(dim=(0, 1))
    if rule.generator_class != "any":
        keep &= (y_orig != y_gen) if rule.generator_class == "off" else (y_orig == y_gen)
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished quickstart run's folder")
    parser.add_argument("--out", default="screen_margins")
    args = parser.parse_args()
    run = Path(args.run)
    # The run's own resolved config (its record), so a seed or setting given with --set counts.
    config = load_config(QuickstartConfig, base=read_yaml(run / "config.yaml")["config"])
    fp = config.fingerprint
    store = BenchStore(str(run))
    rows = config.models
    models = [load_classifier(store.model_stem(row.id))[0] for row in rows]
    generation = [i for i, r in enumerate(rows) if r.use == "generation"]
    gen_pos = [i for i in generation if rows[i].role == "positive"]
    gen_neg = [i for i in generation if rows[i].role == "negative"]
    generator, _, meta = load_gan(config.gan.checkpoint)
    with frozen([generator, *models]):
        prepared = prepare(
            generator,
            [models[i] for i in gen_pos],
            [models[i] for i in gen_neg],
            fp,
            int(meta["spec"]["z_dim"]),
            int(meta["spec"]["num_classes"]),
        )
        tensors, _ = load_checkpoint(sibling(str(run / "fingerprint.parquet"), "progress"))
        if not torch.equal(tensors["z0"], prepared.z0):
            sys.exit(f"{run}: the saved optimisation is not this config's run")
        y_gen, y_orig = prepared.targets.y_gen, prepared.targets.y_orig
        images = quantize(generate_images(generator, tensors["z"], y_gen, fp.batch_size))
        # The same views screen() draws: the plain image, then the configured transforms.
        rng = np.random.default_rng(fp.seed + 3)
        views = [images] + [
            apply_transform(images, sample_params(name, rng))
            for _ in range(fp.screen_draws)
            for name in fp.screen_transforms
        ]
        probs = torch.stack(
            [torch.stack([m(v).softmax(1) for m in models]) for v in views]
        )  # (views, models, N, classes)
    answers = probs[0].argmax(2)  # a suspect is queried with the plain images

    def rates(kept: torch.Tensor) -> list[float]:
        return (answers[:, kept] == y_orig[kept]).float().mean(1).tolist()

    results: list[dict[str, Any]] = []
    for rule in RULES:
        kept = torch.nonzero(survivors(probs, y_orig, y_gen, gen_pos, gen_neg, rule)).squeeze(1)
        kept = kept[: fp.num_fingerprints]
        if len(kept) == 0:
            results.append({"rule": rule.name, "fingerprints": 0})
            print(f"{rule.name:36s} fps   0")
            continue
        every = rates(kept)
        loo_pos: list[float] = []
        loo_neg: list[float] = []
        for left in gen_pos[1:] + gen_neg:  # the source always screens
            pos = [i for i in gen_pos if i != left]
            neg = [i for i in gen_neg if i != left]
            mask = survivors(probs, y_orig, y_gen, pos, neg, rule)
            subset = torch.nonzero(mask).squeeze(1)[: fp.num_fingerprints]
            if len(subset) == 0:
                continue  # nothing survives without this model: no rate to record
            rate = float((answers[left, subset] == y_orig[subset]).float().mean())
            (loo_pos if rows[left].role == "positive" else loo_neg).append(rate)
        heldout = [i for i, r in enumerate(rows) if r.use == "heldout"]
        results.append(
            {
                "rule": rule.name,
                "negative_cap": rule.negative_cap,
                "positive_floor": rule.positive_floor,
                "fingerprints": len(kept),
                "leave_one_out_aruc": (
                    summarize(loo_pos, loo_neg)["aruc"] if loo_pos and loo_neg else None
                ),
                "leave_one_out_rates": {"positive": loo_pos, "negative": loo_neg},
                "heldout": summarize(
                    [every[i] for i in heldout if rows[i].role == "positive"],
                    [every[i] for i in heldout if rows[i].role == "negative"],
                ),
                "heldout_rates": {rows[i].id: round(every[i], 4) for i in heldout},
            }
        )
        print(
            f"{rule.name:36s} fps {len(kept):3d}  LOO ARUC {results[-1]['leave_one_out_aruc']}"
            f"  held-out ARUC {results[-1]['heldout']['aruc']:.3f}"
        )
    record = {
        "command": " ".join(["python -m benchmarks.archive.screen_margins.run", *sys.argv[1:]]),
        "machine": machine(),
        "run": str(run),
        "num_optimised": len(y_orig),
        "rules": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
