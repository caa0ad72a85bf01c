"""The stealthiness detector: its shape contract, and that it learns to flag noisy queries."""

from __future__ import annotations

import numpy as np
import torch

from nf_dist.data import load_dataset
from nf_dist.fingerprint.stealth import (
    DetectorConfig,
    detection_rate,
    detector_cnn,
    suspicious_images,
    train_detector,
)


def test_detector_has_nine_weight_layers_and_two_outputs() -> None:
    detector = detector_cnn()
    layers = [m for m in detector.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 9
    assert detector(torch.rand(2, 3, 32, 32)).shape == (2, 2)


def test_detector_flags_noisy_images_more_than_clean_ones(
    tiny_zoo: dict, cifar_test_uri: str, tmp_path
) -> None:
    data = load_dataset(cifar_test_uri, cache_dir=tmp_path)
    train, held_out = data.subset(np.arange(300)), data.subset(np.arange(300, 400))
    config = DetectorConfig(epochs=10, noise_sd=0.2)
    detector = train_detector(train, tiny_zoo["positives"][0], config)
    noisy, _ = suspicious_images(held_out, tiny_zoo["positives"][0], config)
    assert detection_rate(detector, noisy) > detection_rate(detector, held_out.images) + 0.3
