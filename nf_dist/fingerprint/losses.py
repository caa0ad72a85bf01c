"""Losses of NaturalFinger: the Carlini-Wagner margin and the discriminator term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: How the discriminator score enters the loss (see ``../shared/paper/NOTES.md``).
#: ``generator_hinge``: max(0, 1 - D(x)), pushes images toward "real" and stops once D is sure
#: (the intended, default form). ``generator_linear``: -D(x), the usual hinge-GAN generator loss.
#: ``paper``: max(0, 1 + D(x)), the sign printed in the paper and used in the authors' code, which
#: pushes images toward "fake".
DISCRIMINATOR_LOSSES = ("generator_hinge", "generator_linear", "paper")


def cw_loss(logits: torch.Tensor, target: torch.Tensor, k: float) -> torch.Tensor:
    """Carlini-Wagner loss per sample: max(max_{i != t} Z_i - Z_t, -k).

    Args:
        logits: ``(N, C)`` pre-softmax scores Z.
        target: ``(N,)`` class indices t.
        k: confidence; the loss stops decreasing once Z_t leads every other logit by k.

    Returns:
        ``(N,)`` losses; negative once the target class wins.

    Example:
        >>> cw_loss(torch.tensor([[1.0, 3.0, 0.0]]), torch.tensor([1]), k=50.0)
        tensor([-2.])
    """
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(
            f"cw_loss expects (N,C) logits and (N,) targets, got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )
    target_logit = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(target, logits.shape[1]).bool(), float("-inf"))
    return torch.clamp(others.max(dim=1).values - target_logit, min=-k)


def cw_away_loss(logits: torch.Tensor, source: torch.Tensor, k: float) -> torch.Tensor:
    """Untargeted CW loss per sample: max(Z_s - max_{i != s} Z_i, -k), low once any class other
    than ``source`` wins by k. Shapes as :func:`cw_loss`.

    Example:
        >>> cw_away_loss(torch.tensor([[1.0, 3.0, 0.0]]), torch.tensor([1]), k=50.0)
        tensor([2.])
    """
    source_logit = logits.gather(1, source[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(source, logits.shape[1]).bool(), float("-inf"))
    return torch.clamp(source_logit - others.max(dim=1).values, min=-k)


def discriminator_loss(scores: torch.Tensor, mode: str = "generator_hinge") -> torch.Tensor:
    """Per-sample discriminator term from scores ``(N,)`` (hinge convention: real is high)."""
    if mode == "generator_hinge":
        return F.relu(1.0 - scores)
    if mode == "generator_linear":
        return -scores
    if mode == "paper":
        return F.relu(1.0 + scores)
    raise ValueError(f"unknown discriminator loss {mode!r}; use one of {DISCRIMINATOR_LOSSES}")
