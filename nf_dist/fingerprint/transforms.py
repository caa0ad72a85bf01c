"""The five input transformations of NaturalFinger, as sampled specs applied to a whole batch.

A step draws one transformation uniformly and its random parameters once (a
:class:`TransformSpec`); every image of the batch gets the same transformation. Specs are plain data
so a driver can draw them and ship them to workers; applying a spec is deterministic (the noise of
``gaussian_noise`` comes from a seed in the spec). All are differentiable in the images.

Shape and Range: ``(N, 3, H, W)`` in [0, 1] -> ``(N, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

TRANSFORM_NAMES = ("identity", "hflip", "gaussian_noise", "translate", "shear")
NOISE_STD = 0.02
MAX_SHIFT = 4
TRANSLATE_PROBABILITY = 0.5
MAX_SHEAR = 0.1


@dataclass(frozen=True)
class TransformSpec:
    """One transformation and its drawn parameters."""

    name: str
    params: dict[str, float] = field(default_factory=dict)


def sample_params(name: str, rng: np.random.Generator, strength: float = 1.0) -> TransformSpec:
    """Draw the random parameters of transformation ``name``.

    ``strength`` scales the magnitudes (noise sd, largest shift, largest shear); 1 is the paper's.
    The drawn magnitudes travel in the spec, so applying it needs nothing else.
    """
    if name in ("identity", "hflip"):
        return TransformSpec(name)
    if name == "gaussian_noise":
        return TransformSpec(
            name, {"seed": float(rng.integers(0, 2**31 - 1)), "sd": NOISE_STD * strength}
        )
    if name == "translate":
        applied = rng.random() < TRANSLATE_PROBABILITY
        largest = round(MAX_SHIFT * strength)
        dx, dy = (int(rng.integers(0, largest + 1)) * int(rng.choice([-1, 1])) for _ in range(2))
        return TransformSpec(
            name, {"dx": float(dx if applied else 0), "dy": float(dy if applied else 0)}
        )
    if name == "shear":
        sx, sy = (
            float(rng.uniform(0, MAX_SHEAR * strength)) * float(rng.choice([-1, 1]))
            for _ in range(2)
        )
        return TransformSpec(name, {"sx": sx, "sy": sy})
    raise ValueError(f"unknown transformation {name!r}; known: {', '.join(TRANSFORM_NAMES)}")


def sample_transform(
    rng: np.random.Generator, names: tuple[str, ...] = TRANSFORM_NAMES, strength: float = 1.0
) -> TransformSpec:
    """Choose one of ``names`` uniformly and draw its parameters (see :func:`sample_params`)."""
    return sample_params(names[int(rng.integers(0, len(names)))], rng, strength)


def _translate(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Shift right by dx and down by dy pixels, filling with zeros."""
    if dx == 0 and dy == 0:
        return x
    h, w = x.shape[-2:]
    pad = max(abs(dx), abs(dy))
    padded = F.pad(x, (pad, pad, pad, pad))
    top, left = pad - dy, pad - dx
    return padded[..., top : top + h, left : left + w]


def _shear(x: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Shear about the top-left corner: source (u, v) = (u + sx (v + 1), v + sy (u + 1))."""
    theta = torch.tensor([[1.0, sx, sx], [sy, 1.0, sy]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def apply_transform(x: torch.Tensor, spec: TransformSpec) -> torch.Tensor:
    """Apply a sampled transformation to a batch of images in [0, 1]."""
    if spec.name == "identity":
        return x
    if spec.name == "hflip":
        return x.flip(-1)
    if spec.name == "gaussian_noise":
        generator = torch.Generator(device="cpu").manual_seed(int(spec.params["seed"]))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return (x + spec.params.get("sd", NOISE_STD) * noise).clamp(0.0, 1.0)
    if spec.name == "translate":
        return _translate(x, int(spec.params["dx"]), int(spec.params["dy"]))
    if spec.name == "shear":
        return _shear(x, spec.params["sx"], spec.params["sy"])
    raise ValueError(f"unknown transformation {spec.name!r}; known: {', '.join(TRANSFORM_NAMES)}")
