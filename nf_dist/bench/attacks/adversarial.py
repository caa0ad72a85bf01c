"""Adversarial fine-tuning with PGD (Madry et al., ICLR 2018) on a fraction of each batch."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nf_dist.bench.attacks.base import (
    ATTACKS,
    Attack,
    AttackData,
    ModelRecipe,
    Trainer,
    copy_parent,
    param,
)
from nf_dist.errors import ConfigError
from nf_dist.models import Classifier


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Untargeted L-inf PGD from a uniform random start; images ``(N,3,H,W)`` in [0, 1].

    Runs with the model in eval mode (BatchNorm statistics untouched) and restores its mode.
    """
    was_training = model.training
    model.eval()
    start = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    adversarial = (images + (2 * start - 1) * epsilon).clamp(0, 1).detach()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(model(adversarial), labels)
        (grad,) = torch.autograd.grad(loss, adversarial)
        stepped = adversarial.detach() + step_size * grad.sign()
        adversarial = torch.min(torch.max(stepped, images - epsilon), images + epsilon).clamp(0, 1)
    model.train(was_training)
    return adversarial.detach()


@ATTACKS.register("adversarial")
class AdversarialFineTune(Attack):
    """FTAL where a fraction ``params.ratio`` of every batch is replaced by PGD examples.

    Parameters: ``ratio`` r in (0, 1], ``epsilon`` (8/255), ``steps`` (PGD iterations; the paper
    does not say, the catalog records its choice) and ``step_size`` (default 2.5 * eps / steps).
    """

    param_names: ClassVar[tuple[str, ...]] = ("ratio", "epsilon", "steps", "step_size")

    def run(
        self,
        parent: Classifier | None,
        data: AttackData,
        recipe: ModelRecipe,
        seed: int,
        train: Trainer,
    ) -> Classifier:
        ratio = param(recipe, "ratio", 0.5)
        epsilon = param(recipe, "epsilon", 8 / 255)
        steps = int(param(recipe, "steps", 7))
        step_size = param(recipe, "step_size", 2.5 * epsilon / max(1, steps))
        if not 0 < ratio <= 1 or steps < 1 or epsilon <= 0:
            raise ConfigError(
                f"adversarial: need 0 < ratio <= 1, steps >= 1, epsilon > 0 (got {ratio}, "
                f"{steps}, {epsilon})"
            )
        model = copy_parent(parent)
        generator = torch.Generator().manual_seed(seed)

        def perturb(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            count = max(1, round(ratio * len(inputs)))
            attacked = pgd(
                net,
                inputs[:count],
                targets[:count],
                epsilon=epsilon,
                step_size=step_size,
                steps=steps,
                generator=generator,
            )
            return torch.cat([attacked, inputs[count:]])

        torch.manual_seed(seed)
        train(
            model,
            data.finetune,
            perturb=perturb,
            generator=generator,
            description=f"adv{ratio:g}",
        )
        return model
