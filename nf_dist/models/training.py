"""Train and evaluate classifiers: one-cycle Nesterov SGD, the paper's augmentation, TTA.

One loop serves every recipe: training from scratch, fine-tuning (a subset of parameters),
distillation from a teacher's soft outputs, and fine-tuning under a pruning mask. Recipes are
:class:`TrainConfig` values; the catalog of the benchmark chooses them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nf_dist.data.augment import random_crop_flip, to_input
from nf_dist.data.readers import ImageDataset
from nf_dist.errors import ConfigError
from nf_dist.hardware import PRECISIONS, Precision, bf16_autocast
from nf_dist.models.memory_format import training_memory_format

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe.

    Attributes:
        epochs: passes over the data (fractions allowed).
        batch_size: images per step.
        lr: peak learning rate of the one-cycle schedule.
        schedule: ``onecycle`` (linear warm-up to ``lr``, then linear decay) or ``constant``.
        warmup_fraction: share of steps spent warming up (onecycle only).
        momentum / nesterov / weight_decay: SGD settings.
        label_smoothing: for hard-label training (ignored for distillation).
        crop_padding: random-crop padding in pixels (paper: 4; 0 disables).
        flip: random horizontal flips.
        precision: ``auto`` (bf16 autocast where the hardware runs it natively, else fp32;
            :mod:`nf_dist.hardware`), ``fp32``, or ``bf16`` autocast for the forward passes
            (weights, optimiser and loss stay fp32). On CPUs with AVX512-BF16 bf16 speeds up dense
            convolutions 1.2-1.9x and slows depthwise ones (MobileNet, EfficientNet, ShuffleNet);
            without native bf16 it is 7-19x slower than fp32.
        seed: seeds initialisation-independent randomness (data order, augmentation).
    """

    epochs: float = 4.0
    batch_size: int = 128
    lr: float = 0.2
    schedule: str = "onecycle"
    warmup_fraction: float = 0.25
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    crop_padding: int = 4
    flip: bool = True
    precision: Precision = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ConfigError(f"train.epochs must be positive, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.schedule not in ("onecycle", "constant"):
            raise ConfigError(f"train.schedule must be onecycle or constant, not {self.schedule!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError("train.warmup_fraction must be in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"train.precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )


@dataclass
class TrainProgress:
    """Where a run stands at an epoch boundary: enough to resume it exactly.

    Attributes:
        step: the next step to run.
        rng_state: the data-order/augmentation generator's state.
        optimizer_state: the optimiser's ``state_dict()``.
        losses: mean loss of every finished epoch.
        perturb_rng_state: the state of the supervision's ``generator``, where it has one.
    """

    step: int
    rng_state: dict
    optimizer_state: dict
    losses: list[float] = field(default_factory=list)
    perturb_rng_state: torch.Tensor | None = None


@dataclass
class TrainResult:
    """What a training run did: per-epoch mean loss and the time it took."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def _lr_factor(step: int, total: int, config: TrainConfig) -> float:
    if config.schedule == "constant":
        return 1.0
    warmup = max(1, int(total * config.warmup_fraction))
    if step < warmup:
        return 0.1 + 0.9 * step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@dataclass(frozen=True)
class Supervision:
    """What the model learns from, beyond its data's labels, and which of its parameters move.

    Attributes:
        teacher: distil from its soft outputs (softmax at T = 1) on the same augmented view.
        parameters: the parameters to train (default: all); the rest stay frozen.
        after_step: called after every optimiser step (e.g. to re-apply a pruning mask).
        perturb: ``perturb(model, inputs, targets) -> inputs`` replaces a hard-label batch before
            the forward pass (adversarial training); called with the model in train mode.
        generator: the generator ``perturb`` draws from; its state is part of the loop's
            :class:`TrainProgress`, so a resumed loop draws the same perturbations.
    """

    teacher: nn.Module | None = None
    parameters: Iterable[nn.Parameter] | None = None
    after_step: Callable[[], None] | None = None
    perturb: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    generator: torch.Generator | None = None


@dataclass(frozen=True)
class LoopControl:
    """Data-parallel slicing and resumption of the loop.

    Attributes:
        shard: ``(rank, world_size)`` for data-parallel training: every worker draws the same
            global batch (same generator, same augmentation) and trains on its ``rank::world``
            slice; with gradient averaging (DDP) this is the single-process run at the same
            global batch, up to BatchNorm statistics.
        resume: continue from a :class:`TrainProgress` (an epoch boundary).
        on_epoch_end: called with the progress after every full epoch (checkpointing).
    """

    shard: tuple[int, int] = (0, 1)
    resume: TrainProgress | None = None
    on_epoch_end: Callable[[TrainProgress], None] | None = None


def train_classifier(
    model: nn.Module,
    data: ImageDataset,
    config: TrainConfig,
    supervision: Supervision | None = None,
    control: LoopControl | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place.

    Args:
        model: a classifier, ``(N,3,32,32)`` in [0,1] -> logits.
        data: training images and labels (labels unused when a teacher is given).
        config: the recipe.
        supervision: a teacher, the trainable parameters, step hooks (default: hard labels, all
            parameters).
        control: data-parallel slice and resumption (default: the whole batch, from scratch).
        device: where to train.
        progress: show a progress bar.
        description: label of the progress bar and log lines.
    """
    supervision = supervision or Supervision()
    control = control or LoopControl()
    teacher, parameters = supervision.teacher, supervision.parameters
    after_step, perturb = supervision.after_step, supervision.perturb
    shard, resume, on_epoch_end = control.shard, control.resume, control.on_epoch_end
    rng = np.random.default_rng(config.seed)
    rank, world_size = shard
    params = [p for p in (parameters if parameters is not None else model.parameters())]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = max(1, len(data) // config.batch_size)
    total = max(1, math.ceil(config.epochs * steps_per_epoch))
    # (N, 3, 32, 32) batches and weights share one layout: channels_last unless it would crash
    memory_format = training_memory_format(model)
    model.to(device, memory_format=memory_format).train()  # type: ignore[call-overload]
    if teacher is not None:
        teacher.to(device).eval()
    result = TrainResult()
    first_step = 0
    if resume is not None:
        first_step = resume.step
        rng.bit_generator.state = resume.rng_state
        optimizer.load_state_dict(resume.optimizer_state)
        result.losses = list(resume.losses)
        if supervision.generator is not None and resume.perturb_rng_state is not None:
            supervision.generator.set_state(resume.perturb_rng_state)
    autocast = bf16_autocast(config.precision, device)
    start = time.perf_counter()
    running, seen = 0.0, 0
    order = np.arange(len(data))
    bar = tqdm(range(first_step, total), desc=description, disable=not progress, leave=False)
    for step in bar:
        cursor = step % steps_per_epoch
        if cursor == 0:
            if step > first_step:
                result.losses.append(running / max(1, seen))
                running, seen = 0.0, 0
                if on_epoch_end is not None:
                    on_epoch_end(_progress(step, rng, optimizer, result, supervision.generator))
            order = rng.permutation(len(data))
        batch = order[cursor * config.batch_size : (cursor + 1) * config.batch_size]
        images = random_crop_flip(data.images[batch], config.crop_padding, config.flip, rng)
        batch, images = batch[rank::world_size], images[rank::world_size]
        inputs = to_input(images, device).contiguous(memory_format=memory_format)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, total, config)
        if teacher is not None:
            with torch.no_grad(), autocast:
                soft = F.softmax(teacher(inputs).float(), dim=1)
            with autocast:
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), soft)
        else:
            targets = torch.as_tensor(data.labels[batch], device=device)
            if perturb is not None:
                inputs = perturb(model, inputs, targets)
            with autocast:
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{description}: loss became {loss.item()} at step {step}; lower train.lr"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        running += loss.item() * len(batch)
        seen += len(batch)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    result.losses.append(running / max(1, seen))
    result.steps = total
    result.seconds = time.perf_counter() - start
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    logger.info(
        "%s: %d steps in %.1fs, final loss %.3f",
        description,
        total,
        result.seconds,
        result.losses[-1],
    )
    return result


def _progress(
    step: int,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer,
    result: TrainResult,
    generator: torch.Generator | None,
) -> TrainProgress:
    return TrainProgress(
        step,
        dict(rng.bit_generator.state),
        optimizer.state_dict(),
        list(result.losses),
        generator.get_state() if generator is not None else None,
    )
