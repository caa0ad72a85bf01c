"""Every registered fingerprinting method honours the one contract on the tiny zoo:
``generate(context, config, run)`` gives a well-formed set the source itself matches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nf_dist.config import from_dict
from nf_dist.data import load_dataset
from nf_dist.fingerprint.methods import METHODS, FingerprintContext
from nf_dist.fingerprint.methods.base import RunOptions
from nf_dist.verification import model_oracle, verify

#: Seconds-sized settings per method; a method registered without an entry here fails below.
SMOKE_SETTINGS: dict[str, dict[str, Any]] = {
    "naturalfinger": {
        "num_fingerprints": 8,
        "num_candidates": 128,
        "num_optimised": 64,
        "steps": 80,
        "batch_size": 64,
        # the plain image only: on the tiny zoo the five-view screen keeps 0-3 of 64 images,
        # which ones depending on the CPU's float kernels; the plain view keeps about 23
        "screen_transforms": ["identity"],
    },
    "akh": {"num_fingerprints": 12},
    "cae": {"num_fingerprints": 12, "num_seeds": 64, "steps": 30, "lr": 0.01, "threshold": 0.0},
    "clean": {"num_fingerprints": 12},
    "ipguard": {"num_fingerprints": 12, "steps": 20, "lr": 0.01},
    "metafinger": {"num_fingerprints": 12, "num_seeds": 20, "epochs": 2, "steps_per_epoch": 3},
    "metav": {"num_fingerprints": 12, "steps": 10},
}


def test_every_registered_method_has_smoke_settings() -> None:
    assert sorted(SMOKE_SETTINGS) == sorted(METHODS.names())


@pytest.fixture(scope="module")
def context(tiny_zoo: dict, cifar_test_uri: str, tmp_path_factory) -> FingerprintContext:  # type: ignore[no-untyped-def]
    data = load_dataset(cifar_test_uri, cache_dir=tmp_path_factory.mktemp("cache"))
    return FingerprintContext(
        tiny_zoo["positives"],
        tiny_zoo["negatives"],
        clean=data.subset(np.arange(200)),
        generator=tiny_zoo["generator"],
        discriminator=tiny_zoo["discriminator"],
        z_dim=16,
    )


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_a_method_gives_a_well_formed_set_its_source_matches(
    context: FingerprintContext, name: str
) -> None:
    method = METHODS.get(name)
    settings = from_dict(method.config_class, SMOKE_SETTINGS[name])
    observed: list[int] = []
    run = RunOptions(on_step=lambda step, snapshot: observed.append(step))
    fingerprints = method().generate(context, settings, run)
    assert fingerprints.method == name
    assert 0 < len(fingerprints) <= settings.num_fingerprints
    assert fingerprints.images.dtype == np.uint8
    assert fingerprints.images.shape == (len(fingerprints), 32, 32, 3)
    for labels in (fingerprints.y_orig, fingerprints.y_adv):
        assert labels.shape == (len(fingerprints),) and labels.min() >= 0 and labels.max() < 10
    source = context.positives[0]
    assert verify(fingerprints, "source", model_oracle(source)).matching_rate == 1.0
    # The class-level facts say what the method does with the run options.
    assert method.reports_progress == bool(observed)
    if method.reports_progress:
        assert observed[-1] + 1 == method.horizon(settings)
    assert method.needs_gan == (name == "naturalfinger")
