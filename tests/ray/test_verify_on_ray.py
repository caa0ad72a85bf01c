"""Many suspects at once: ``nf-dist verify`` runs one Ray task per suspect with the same
verdicts as one after another in this process."""

from __future__ import annotations

import numpy as np
import pytest

from nf_dist.config import from_dict
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.inference import predict
from nf_dist.pipelines.verify import VerifyConfig, run_verify

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


def test_ray_tasks_give_the_local_verdicts(tiny_zoo: dict, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source, _ = load_classifier(tiny_zoo["positive_uris"][0])
    images = np.random.default_rng(5).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    labels = predict(source, images)
    fingerprints = str(tmp_path / "set.parquet")
    save_fingerprint_set(FingerprintSet(images, labels, (labels + 1) % 10), fingerprints)
    suspects = [
        {"file": {"uri": uri}, "known": known}
        for uri, known in [
            *((u, "stolen") for u in tiny_zoo["positive_uris"]),
            *((u, "independent") for u in tiny_zoo["negative_uris"]),
        ]
    ]
    base = {
        "fingerprints": fingerprints,
        "suspects": suspects,
        "calibration": tiny_zoo["negative_uris"],
        "sequential": True,
        "batch": 5,
    }
    local = run_verify(from_dict(VerifyConfig, {**base, "backend": "local"}))
    on_ray = run_verify(from_dict(VerifyConfig, {**base, "backend": "ray"}))
    assert on_ray == local
    assert [row["suspect"] for row in on_ray["suspects"]] == [s["file"]["uri"] for s in suspects]
    assert on_ray["suspects"][0]["matching_rate"] == 1.0
