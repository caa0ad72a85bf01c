"""Stealthiness (NaturalFinger, Sec. 4.5): can an adversary's detector spot fingerprint queries?

The adversary trains a 9-layer CNN (Adam, lr 1e-3, 20 epochs) to tell clean images (label 0) from
suspicious ones (label 1): clean images plus Gaussian noise, and one-step FGSM examples (8/255)
against its own model. A method's detection rate is the share of its fingerprints the detector
flags; the paper reports it averaged over 3 detector seeds (NaturalFinger about 0.3%).
Choices the paper leaves open: the noise sd (0.1 by default) and the layer layout below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nf_dist.data.augment import to_input
from nf_dist.data.readers import ImageDataset
from nf_dist.fingerprint.fingerprint_set import to_uint8


@dataclass(frozen=True)
class DetectorConfig:
    """Training of the adversary's detector."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    noise_sd: float = 0.1
    fgsm_epsilon: float = 8 / 255
    seed: int = 0


def detector_cnn() -> nn.Module:
    """The 9-layer detector: 6 conv (3 blocks of two, BN, ReLU, pooling) + 3 linear layers.

    Shape: ``(N, 3, 32, 32)`` in [0, 1] -> ``(N, 2)`` logits (clean, suspicious).
    """

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, 32),
        *block(32, 64),
        *block(64, 128),
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, 256),
        nn.ReLU(),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Linear(64, 2),
    )


def suspicious_images(
    clean: ImageDataset, model: nn.Module, config: DetectorConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-noise and FGSM versions of the clean images, stored as 8-bit like real queries."""
    generator = torch.Generator().manual_seed(config.seed)
    x = to_input(clean.images).contiguous()
    noisy = (x + config.noise_sd * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    model.eval()
    adversarial = []
    for start in range(0, len(x), 500):
        part = x[start : start + 500].clone().requires_grad_(True)
        labels = torch.as_tensor(clean.labels[start : start + 500], dtype=torch.long)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(part), labels), part)
        adversarial.append((part + config.fgsm_epsilon * grad.sign()).clamp(0, 1).detach())
    return to_uint8(noisy), to_uint8(torch.cat(adversarial))


def train_detector(clean: ImageDataset, model: nn.Module, config: DetectorConfig) -> nn.Module:
    """Train the detector on clean (0) vs noisy and FGSM (1) images."""
    noisy, adversarial = suspicious_images(clean, model, config)
    images = np.concatenate([clean.images, noisy, adversarial])
    labels = np.concatenate([np.zeros(len(clean)), np.ones(len(noisy) + len(adversarial))])
    torch.manual_seed(config.seed)
    detector = detector_cnn()
    optimizer = torch.optim.Adam(detector.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    detector.train()
    for _ in range(config.epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            logits = detector(to_input(images[batch]))
            loss = F.cross_entropy(logits, torch.as_tensor(labels[batch], dtype=torch.long))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return detector.eval()


@torch.no_grad()
def detection_rate(detector: nn.Module, images: np.ndarray) -> float:
    """Share of ``(N, H, W, 3)`` uint8 images the detector flags as suspicious."""
    detector.eval()
    flagged = [
        detector(to_input(images[start : start + 500])).argmax(1)
        for start in range(0, len(images), 500)
    ]
    return float(torch.cat(flagged).float().mean()) if flagged else 0.0
