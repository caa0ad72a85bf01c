"""The HTTP verification benchmark's config: the shipped YAML loads, bad settings name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.verify_http.run import VerifyHttpConfig
from nf_dist.config import from_dict, load_config
from nf_dist.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "benchmarks" / "verify_http" / "cpu.yaml"


def test_the_shipped_config_loads() -> None:
    config = load_config(VerifyHttpConfig, SHIPPED)
    assert config.headline_set == "naturalfinger" and config.alphas[0] == 1e-3
    assert config.client("http://127.0.0.1:8765/predict").qps == 1000.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sets": {}}, "name at least one fingerprint set"),
        ({"headline": "nope"}, "headline 'nope' is not one of sets"),
        ({"alphas": [0.0]}, "false-positive rates in"),
        ({"endpoint": {"url": "http://x/predict"}}, "endpoint.url is the served suspect's"),
        ({"endpoint": {"qqps": 5}}, "unknown config key 'endpoint.qqps'"),
    ],
)
def test_bad_settings_name_the_fix(changes: dict, message: str) -> None:
    raw = {"models": {"bench_uri": "runs/bench/cpu"}, "sets": {"nf": "nf.parquet"}, **changes}
    with pytest.raises(ConfigError, match=message):
        from_dict(VerifyHttpConfig, raw)
