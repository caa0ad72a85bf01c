"""The device check runs end to end at toy sizes on the CPU (so it cannot rot while no GPU is
lent), writes its result in the documented shape, and refuses stages that would not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.device_check.run import run

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

STAGES = ["env", "classifiers", "gan", "latent_step", "bench"]


def test_the_smoke_device_check_writes_every_stage(tmp_path: Path) -> None:
    record = run(480.0, smoke=True, out=tmp_path)
    (result,) = tmp_path.glob("device_check_smoke_*.json")
    assert json.loads(result.read_text()) == json.loads(json.dumps(record, default=float))
    assert list(record["stages"]) == STAGES
    stages = record["stages"]
    for name in STAGES[1:]:
        assert "refused" not in stages[name], stages[name]
        assert stages[name]["seconds"] > 0 and "peak_gpu_memory_gib" in stages[name]
    models = stages["classifiers"]["models"]
    assert {(m["arch"], m["precision"]) for m in models} == {
        (a, p) for a in ("resnet18", "vgg16_bn", "mobilenet_v2") for p in ("fp32", "bf16")
    }
    assert all(m["images_per_s"] > 0 and 0 <= m["test_accuracy"] <= 1 for m in models)
    assert stages["gan"]["seconds_per_step"] > 0
    latent = stages["latent_step"]
    assert {"ray_1_shards_s", "ray_2_shards_s", "ray_4_shards_s", "stacked_s"} <= set(latent)
    assert set(latent["ratios"]) == {
        "ray_1_shard_over_reference",
        "reference_over_ray_2_shards",
        "reference_over_ray_4_shards",
        "looped_over_stacked",
    }
    bench = stages["bench"]
    assert len(bench["rows"]) == 4
    extrapolation = bench["extrapolation"]
    assert "longest chain" in extrapolation["method"]
    assert 0 < extrapolation["wall_s_8_gpus"] <= extrapolation["wall_s_1_gpu"]
    assert (tmp_path / result.name.replace(".json", ".md")).read_text().startswith("# Device")


def test_a_stage_that_cannot_fit_its_slice_is_refused_with_the_reason(tmp_path: Path) -> None:
    record = run(0.01, smoke=True, out=tmp_path)
    refused = [n for n in STAGES if "refused" in record["stages"][n]]
    assert refused == STAGES[1:]
    assert "more than the" in record["stages"]["gan"]["refused"]
