"""Offline GAN quality on a locally trained classifier: the Fréchet distance of its features.

No Inception download is possible here, so the distance is taken in the penultimate features of
a real-trained CIFAR classifier (the input of its ``fc``): FD = |mu_r - mu_g|^2 +
tr(S_r + S_g - 2 (S_r S_g)^(1/2)) (Heusel et al. 2017, with another feature extractor). It ranks
this project's own GANs; it does not convert to Inception-FID.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nf_dist.data.augment import to_input
from nf_dist.models.gan.networks import Generator
from nf_dist.models.gan.sampling import balanced_labels, evaluating, sample_latents


def _fc_inputs(classifier: nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """``(N, D)`` inputs of ``classifier.fc`` for ``(N, 3, 32, 32)`` images in [0, 1]."""
    captured: list[torch.Tensor] = []
    fc = classifier.fc
    assert isinstance(fc, nn.Module), "the classifier needs an fc layer (see models/classifiers)"
    hook = fc.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    try:
        with evaluating(classifier):
            for start in range(0, len(images), batch_size):
                classifier(images[start : start + batch_size])
    finally:
        hook.remove()
    return torch.cat(captured).double().cpu().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows ``a`` and ``b`` ``(N, D)``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD
    # matrix, so no general (complex) matrix square root is needed.
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def classifier_fd(
    generator: Generator,
    classifier: nn.Module,
    real_images: np.ndarray,
    *,
    num_samples: int = 2000,
    seed: int = 0,
    batch_size: int = 250,
) -> float:
    """FD between ``classifier`` features of real ``(N, 32, 32, 3)`` uint8 images and of
    ``num_samples`` class-balanced samples of ``generator`` (lower is better)."""
    real = _fc_inputs(classifier, to_input(real_images[:num_samples]), batch_size)
    y = balanced_labels(num_samples, generator.num_classes, seed)
    z = sample_latents(num_samples, generator.z_dim, seed + 1)
    with evaluating(generator):
        fake_images = torch.cat(
            [
                generator(z[i : i + batch_size], y[i : i + batch_size])
                for i in range(0, num_samples, batch_size)
            ]
        )
    return frechet_distance(real, _fc_inputs(classifier, fake_images, batch_size))
