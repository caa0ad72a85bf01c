"""What a latent step costs at each quality level, in forward FLOPs per image (issue 27).

    python -m benchmarks.quality_trend.step_cost

Counts (torch's FlopCounterMode, one 32x32 image, no timing) the forward pass of the generator
and of every generation model of the trend experiment at each level's profile, and writes
``results/step_cost.{json,md}``. The backward pass to the latents costs about twice the forward
of the same modules, so the ratio of the sums is the ratio of a step's work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine
from nf_dist.bench.catalog import load_profile
from nf_dist.config import load_config
from nf_dist.models import create_classifier
from nf_dist.models.gan.train import load_gan
from nf_dist.pipelines.experiment import ExperimentConfig

RESULTS = Path(__file__).parent / "results"
LEVELS = {"cpu40": "jobs/configs/trend_cpu40.yaml", "cpu40_hq": "jobs/configs/trend_cpu40_hq.yaml"}
COMMAND = "python -m benchmarks.quality_trend.step_cost"


def forward_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return int(counter.get_total_flops())


def main() -> None:
    levels: dict[str, dict[str, Any]] = {}
    for profile_name, config_file in LEVELS.items():
        config = load_config(ExperimentConfig, Path(config_file))
        generator, _, _ = load_gan(config.gans["gan64"])
        z = torch.randn(1, generator.z_dim)
        gan = forward_flops(generator.eval(), z, torch.zeros(1, dtype=torch.long))
        by_id = load_profile(profile_name).by_id()
        models = {}
        for model_id in (*config.models.positives, *config.models.negatives):
            m = by_id[model_id]
            net = create_classifier(m.arch, 10, m.width, m.stem_stride).eval()
            models[model_id] = forward_flops(net, torch.rand(1, 3, 32, 32))
        levels[profile_name] = {
            "generator_gflop": gan / 1e9,
            "classifiers_gflop": sum(models.values()) / 1e9,
            "per_model_gflop": {k: v / 1e9 for k, v in models.items()},
        }
    base, higher = (levels[n]["generator_gflop"] + levels[n]["classifiers_gflop"] for n in LEVELS)
    record = {"command": COMMAND, "levels": levels, "step_ratio": higher / base}
    record["machine"] = machine()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "step_cost.json").write_text(json.dumps(record, indent=2))
    lines = [
        "# A latent step's work at each level (forward GFLOP per image; backward about 2x)",
        "",
        f"`{COMMAND}` (FLOPs are counted, not timed: no machine dependence).",
        "",
        "| level | generator | 17 generation classifiers | sum |",
        "|---|---|---|---|",
    ]
    for name, level in levels.items():
        total = level["generator_gflop"] + level["classifiers_gflop"]
        lines.append(
            f"| {name} | {level['generator_gflop']:.3f} | {level['classifiers_gflop']:.3f} | "
            f"{total:.3f} |"
        )
    lines += ["", f"Step work, higher level / first level: {record['step_ratio']:.2f}x."]
    (RESULTS / "step_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
