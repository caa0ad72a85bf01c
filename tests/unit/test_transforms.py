"""The five input transformations: shape, range, determinism, differentiability, schedule."""

import numpy as np
import pytest
import torch

from nf_dist.fingerprint.transforms import (
    TRANSFORM_NAMES,
    TransformSpec,
    apply_transform,
    sample_params,
    sample_transform,
)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_shape_range_and_gradient(name: str) -> None:
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    spec = sample_params(name, np.random.default_rng(1))
    out = apply_transform(x, spec)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    again = apply_transform(x.detach(), spec)
    assert torch.equal(out.detach(), again), "applying a spec must be deterministic"


def test_hflip_and_translate_exact() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) / 6144
    assert torch.equal(apply_transform(x, TransformSpec("hflip")), x.flip(-1))
    shifted = apply_transform(x, TransformSpec("translate", {"dx": 2.0, "dy": -3.0}))
    assert torch.equal(shifted[..., :29, 2:], x[..., 3:, :30])
    assert (shifted[..., :, :2] == 0).all() and (shifted[..., 29:, :] == 0).all()


def test_shear_zero_is_identity_and_top_left_fixed() -> None:
    x = torch.rand(1, 3, 32, 32)
    same = apply_transform(x, TransformSpec("shear", {"sx": 0.0, "sy": 0.0}))
    assert torch.allclose(same, x, atol=1e-5)
    sheared = apply_transform(x, TransformSpec("shear", {"sx": 0.1, "sy": 0.0}))
    # Rows near the top barely move; rows near the bottom shift by about 0.1 * 32 = 3 px.
    assert torch.allclose(sheared[..., 0, 1:-1], x[..., 0, 1:-1], atol=0.1)
    assert not torch.allclose(sheared[..., -1, :], x[..., -1, :], atol=0.1)


def test_parameter_ranges() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        translate = sample_params("translate", rng).params
        assert abs(translate["dx"]) <= 4 and abs(translate["dy"]) <= 4
        shear = sample_params("shear", rng).params
        assert abs(shear["sx"]) <= 0.1 and abs(shear["sy"]) <= 0.1
    names = {sample_transform(rng).name for _ in range(200)}
    assert names == set(TRANSFORM_NAMES)
    with pytest.raises(ValueError, match="unknown transformation"):
        sample_params("rotate", rng)


def test_strength_scales_the_drawn_magnitudes() -> None:
    def largest(name: str, key: str, strength: float) -> float:
        rng = np.random.default_rng(0)
        return max(abs(sample_params(name, rng, strength).params[key]) for _ in range(200))

    assert largest("shear", "sx", 1.0) <= 0.1 < largest("shear", "sx", 2.0) <= 0.2
    assert largest("translate", "dx", 1.0) == 4 and largest("translate", "dx", 2.0) == 8
    assert largest("translate", "dx", 0.0) == 0
    x = torch.rand(2, 3, 32, 32)
    quiet = sample_params("gaussian_noise", np.random.default_rng(0), 0.0)
    assert torch.equal(apply_transform(x, quiet), x)
    shifted = apply_transform(x, TransformSpec("translate", {"dx": 8.0, "dy": 0.0}))
    assert torch.equal(shifted[..., 8:], x[..., :-8]) and shifted[..., :8].abs().sum() == 0
