"""Stage 2 of NaturalFinger: SGD on the latents only (Algorithm 1, step 3).

Per step the engine returns the gradient of the step's CW losses (4 positives + 4 negatives on one
randomly transformed batch) plus lambda times the discriminator term's, this loop takes one SGD
step and, when asked, projects the latents back into a ball around the prior's shell. The loop is
pure given an engine: the reference and the sharded engine run it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from nf_dist.errors import FingerprintError
from nf_dist.fingerprint.naturalfinger.config import NaturalFingerConfig
from nf_dist.fingerprint.naturalfinger.engine import ModelGradients, Objective
from nf_dist.fingerprint.naturalfinger.prepare import Prepared, Targets
from nf_dist.fingerprint.naturalfinger.progress import load_progress, save_progress
from nf_dist.fingerprint.naturalfinger.schedule import GenerationHistory, StepPlan, plan_steps

#: ``observer(step, z, history)`` after every step; the history covers the whole run.
LatentObserver = Callable[[int, torch.Tensor, GenerationHistory], None]


@dataclass(frozen=True)
class Checkpointing:
    """Save the optimisation at ``uri`` every ``every`` steps; a re-run of the same run
    resumes from the last save (see :mod:`.progress`). ``models_digest`` names the modules the
    run optimises against (:func:`~.progress.modules_digest`); a save made against others is
    not resumed."""

    uri: str
    every: int = 50
    models_digest: str | None = None


@dataclass(frozen=True)
class Descent:
    """What the loop needs that stays fixed while it runs."""

    engine: ModelGradients
    plans: tuple[StepPlan, ...]
    targets: Targets
    config: NaturalFingerConfig
    num_classes: int


def discriminator_labels(
    plan: StepPlan, y_gen: torch.Tensor, num_classes: int, config: NaturalFingerConfig
) -> torch.Tensor:
    """The class labels given to D this step."""
    if config.discriminator_label == "generator":
        return y_gen
    gen = torch.Generator().manual_seed(plan.label_seed)
    return torch.randint(0, num_classes, y_gen.shape, generator=gen)


def optimise(
    engine: ModelGradients,
    prepared: Prepared,
    config: NaturalFingerConfig,
    num_classes: int,
    *,
    progress: bool = True,
    checkpointing: Checkpointing | None = None,
    on_step: LatentObserver | None = None,
) -> tuple[torch.Tensor, GenerationHistory]:
    """Run (or resume) the whole optimisation; returns the final latents and the history.

    The schedule walks through the engine's models ``positives_per_step`` +
    ``negatives_per_step`` at a time.
    """
    descent = Descent(
        engine,
        tuple(plan_steps(engine.num_positive, engine.num_negative, config)),
        prepared.targets,
        config,
        num_classes,
    )
    z0 = prepared.z0
    saved = None
    if checkpointing is not None:
        template = torch.optim.SGD([z0.clone().requires_grad_(True)], lr=config.lr)
        saved = load_progress(checkpointing.uri, z0, config, template, checkpointing.models_digest)
    earlier = GenerationHistory(**saved.history) if saved is not None else GenerationHistory()

    def observe(
        step: int, z: torch.Tensor, optimizer: torch.optim.Optimizer, done: GenerationHistory
    ) -> None:
        history = earlier.extended(done)
        last = step + 1 == len(descent.plans)
        if checkpointing is not None and ((step + 1) % checkpointing.every == 0 or last):
            save_progress(
                checkpointing.uri,
                step + 1,
                z,
                z0,
                optimizer,
                history,
                config,
                checkpointing.models_digest,
            )
        if on_step is not None:
            on_step(step, z, history)

    z, done = descend(
        descent,
        saved.z if saved is not None else z0,
        first_step=saved.next_step if saved is not None else 0,
        optimizer_state=saved.optimizer_state if saved is not None else None,
        progress=progress,
        on_step=observe,
    )
    return z, earlier.extended(done)


def descend(
    descent: Descent,
    z0: torch.Tensor,
    *,
    first_step: int = 0,
    optimizer_state: dict | None = None,
    progress: bool = True,
    on_step: Callable[[int, torch.Tensor, torch.optim.Optimizer, GenerationHistory], None]
    | None = None,
) -> tuple[torch.Tensor, GenerationHistory]:
    """The optimisation loop shared by every engine: per step, the engine's gradient of the
    models' and the discriminator's terms (scaled by N under ``reduction: sum``), one SGD step on
    z, then the latents projected into the ``latent_max_norm`` ball when one is set.

    ``first_step`` and ``optimizer_state`` resume a run; ``on_step(step, z, optimizer, history)``
    runs after every step (checkpointing, observers).

    Raises:
        FingerprintError: a non-finite loss or gradient, naming the step's models.
    """
    config, y_gen = descent.config, descent.targets.y_gen
    objective = Objective.of(config)
    z = z0.clone().requires_grad_(True)  # (N, z_dim): the only thing optimised
    optimizer = torch.optim.SGD(
        [z],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
    )
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    history = GenerationHistory()
    # The prior N(0, I) puts latents near the sphere of radius sqrt(z_dim).
    max_norm = config.latent_max_norm * math.sqrt(z.shape[1]) if config.latent_max_norm else None
    steps = range(first_step, len(descent.plans))
    for step in tqdm(steps, desc="naturalfinger", disable=not progress, leave=False):
        plan = descent.plans[step]
        critic_labels = None
        if objective.lambda_d > 0:
            critic_labels = discriminator_labels(plan, y_gen, descent.num_classes, config)
        models = descent.engine(z.detach(), descent.targets, plan, objective, critic_labels)
        optimizer.zero_grad(set_to_none=True)
        z.grad = models.grad.clone()
        loss = models.positive + models.negative + objective.lambda_d * models.discriminator
        if not (math.isfinite(loss) and bool(torch.isfinite(z.grad).all())):
            raise FingerprintError(
                f"non-finite loss or gradient at step {step} (positive {models.positive}, "
                f"negative {models.negative}, discriminator {models.discriminator}) with "
                f"positives {plan.positives} and negatives {plan.negatives}; lower fingerprint.lr"
            )
        if config.reduction == "sum":
            # Every term is a mean over the N images and image i depends on z_i alone, so
            # d(mean)/dz_i = d(loss_i)/dz_i / N: scaling by N makes lr the per-latent step.
            z.grad.mul_(len(z))
        optimizer.step()
        if max_norm is not None:
            with torch.no_grad():
                norms = z.norm(dim=1, keepdim=True)  # (N, 1)
                z.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))
        history.append(loss, models, models.discriminator)
        if on_step is not None:
            on_step(step, z.detach(), optimizer, history)
    return z.detach(), history
