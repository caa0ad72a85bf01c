"""Train a class-conditional SNGAN/SAGAN with the hinge loss; resumable, deterministic by seed.

Recipe: hinge loss (Lim & Ye 2017; Miyato et al. 2018) with Adam, ``n_dis`` discriminator steps
per generator step, real images flipped at random. Every step draws its randomness from a
generator seeded by ``(seed, step)``, and a checkpoint holds the weights, BatchNorm statistics,
spectral-norm vectors and Adam moments, so a killed run resumed from its checkpoint ends with the
same weights as an uninterrupted one.

A checkpoint at ``out_uri`` (a stem) is two safe checkpoints (:mod:`nf_dist.storage.checkpoints`):
``<stem>`` holds tensors ``generator.*``, ``discriminator.*`` and, with EMA on, ``generator_ema.*``;
``<stem>_optim`` holds the Adam state (``generator.<param>.<key>``, ``discriminator.<...>``). The
optimiser file is written first, so a complete main checkpoint always has its optimiser state.

Example:
    >>> config = GanTrainConfig(g_channels=32, d_channels=32, steps=600)
    >>> result = train_gan(images, labels, config, "runs/cpu/gan")  # images uint8 (N, 32, 32, 3)
    >>> generator, discriminator, meta = load_gan("runs/cpu/gan")
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nf_dist.errors import CheckpointError, ConfigError, DataError, NfDistError
from nf_dist.hardware import PRECISIONS, Precision, bf16_autocast
from nf_dist.models.gan.networks import (
    IMAGE_SIZE,
    Discriminator,
    GanSpec,
    Generator,
    build_gan,
)
from nf_dist.models.gan.sampling import gan_test_accuracy, save_sample_grid
from nf_dist.storage.artifacts import same_key
from nf_dist.storage.checkpoints import (
    SIDECAR_SUFFIX,
    checkpoint_stem,
    load_checkpoint,
    save_checkpoint,
)
from nf_dist.storage.uri import exists

logger = logging.getLogger(__name__)

OPTIMIZER_SUFFIX = "_optim"
#: Config fields that may change between a run and its resumption without a warning.
_RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every"})
_MAX_SEED = 2**31


@dataclass(frozen=True)
class GanTrainConfig:
    """How to train the GAN; defaults suit the 2-core CPU profile (32/32 channels, ~0.3 s/step).

    Attributes:
        z_dim, num_classes, g_channels, d_channels, attention: the :class:`GanSpec`. G and D are
            shrunk together: a narrow G against a wide D collapses (GCC, NeurIPS 2021).
            Attention is off: on CIFAR-10 StudioGAN's SNGAN (no attention) matched its SAGAN.
        steps: generator steps (each preceded by ``n_dis`` discriminator steps).
        batch_size: images per step for both real and fake batches.
        lr_g, lr_d, beta1, beta2: Adam; betas (0, 0.9) follow SAGAN / TTUR.
        n_dis: discriminator steps per generator step; 1 keeps each CPU step cheap.
        hflip: flip real images left-right with probability 1/2.
        precision: ``auto`` (bf16 where the hardware runs it natively, else fp32), ``fp32`` or
            ``bf16``: G's and D's forward passes under bf16 autocast (weights, Adam and the
            losses stay fp32): 1.8x faster per step on a CPU with AVX512-BF16, 18.8x slower on
            an AVX2-only one.
        aux_weight: weight of the AC-GAN auxiliary classification loss (D's head on real images,
            G on its own images, cross-entropy); 0 (the default) builds no head. It makes class
            identity explicit, which a short CPU run otherwise barely learns (GAN-test accuracy).
        ema_decay: decay of an exponential moving average of G's weights used for sampling; 0
            turns it off. Off by default because StudioGAN's logs show EMA changes nothing before
            ~10k steps, beyond a CPU budget of a few thousand.
        seed: seeds initialisation and every step's noise, batches and flips.
        checkpoint_every: write the checkpoint every this many steps (and always at the end).
    """

    z_dim: int = 128
    num_classes: int = 10
    g_channels: int = 32
    d_channels: int = 32
    attention: bool = False
    steps: int = 600
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    n_dis: int = 1
    hflip: bool = True
    precision: Precision = "auto"
    aux_weight: float = 0.0
    ema_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        minimums = {"steps": 1, "batch_size": 2, "n_dis": 1, "checkpoint_every": 1}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value < minimum:
                raise ConfigError(
                    f"GanTrainConfig.{name} must be at least {minimum}, got {value}; "
                    f"set it to {minimum} or more (default {getattr(GanTrainConfig, name)})"
                )
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"GanTrainConfig.{name} must be positive, got {value}; try 2e-4")
        for name in ("beta1", "beta2", "ema_decay"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(
                    f"GanTrainConfig.{name} must be in [0, 1), got {value}; "
                    f"the default is {getattr(GanTrainConfig, name)}"
                )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"GanTrainConfig.precision must be one of {', '.join(PRECISIONS)}, "
                f"not {self.precision!r}"
            )
        if not (math.isfinite(self.aux_weight) and self.aux_weight >= 0):
            raise ConfigError(f"GanTrainConfig.aux_weight must be >= 0, got {self.aux_weight}")
        if not 0 <= self.seed < _MAX_SEED:
            raise ConfigError(f"GanTrainConfig.seed must be in [0, 2**31), got {self.seed}")
        self.spec()  # validates the architecture fields

    def spec(self) -> GanSpec:
        """The architecture this config trains."""
        return GanSpec(
            self.z_dim,
            self.num_classes,
            self.g_channels,
            self.d_channels,
            self.attention,
            aux_classifier=self.aux_weight > 0,
        )


@dataclass
class GanTrainResult:
    """What :func:`train_gan` returns; networks are in eval mode.

    ``history`` holds one entry per step run in this call (not steps restored from a checkpoint):
    ``step``, ``loss_d``, ``loss_g``, ``d_real`` and ``d_fake`` (mean scores).
    """

    generator: Generator
    discriminator: Discriminator
    steps_done: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    ema_generator: Generator | None = None
    checkpoint_uri: str = ""

    @property
    def sampler(self) -> Generator:
        """The generator to draw samples from: the EMA copy when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator


def _seeded_build(spec: GanSpec, seed: int) -> tuple[Generator, Discriminator]:
    """Build G and D from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_gan(spec)


def _step_rng(seed: int, step: int) -> torch.Generator:
    """The CPU generator for one step: a function of (seed, step) only, so resuming replays it."""
    return torch.Generator().manual_seed(seed * 2**32 + step)


def _to_tensors(
    images: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the training data and return ``(N, 3, 32, 32)`` uint8 and ``(N,)`` long tensors."""
    expected = (IMAGE_SIZE, IMAGE_SIZE, 3)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
        raise DataError(
            f"images must be uint8 of shape (N, 32, 32, 3), got {images.dtype} {images.shape}; "
            "convert with np.asarray(images, dtype=np.uint8) in HWC layout"
        )
    if (
        labels.ndim != 1
        or len(labels) != len(images)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise DataError(
            f"labels must be integers of shape ({len(images)},), got {labels.dtype} {labels.shape}"
        )
    if len(images) == 0:
        raise DataError("no training images were given")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(
            f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]; "
            "set GanTrainConfig.num_classes to the number of classes"
        )
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(labels.astype(np.int64))


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Flatten an optimiser's per-parameter state to ``prefix.<param index>.<key>`` tensors."""
    out: dict[str, torch.Tensor] = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            out[f"{prefix}.{index}.{key}"] = torch.as_tensor(value)
    return out


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor]
) -> None:
    """Inverse of :func:`_optimizer_tensors`; hyper-parameters come from the current config."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in _sub_state(tensors, prefix).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    param_groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def _sub_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed."""
    head = prefix + "."
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}


@dataclass
class _State:
    """Everything training mutates (bundled so checkpoint I/O takes one argument)."""

    generator: Generator
    discriminator: Discriminator
    ema_generator: Generator | None
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    steps_done: int = 0
    seconds_total: float = 0.0


def _save(stem: str, state: _State, config: GanTrainConfig) -> None:
    optim = {
        **_optimizer_tensors("generator", state.optimizer_g),
        **_optimizer_tensors("discriminator", state.optimizer_d),
    }
    save_checkpoint(
        stem + OPTIMIZER_SUFFIX, optim, {"kind": "gan_optim", "steps_done": state.steps_done}
    )
    tensors = {f"generator.{k}": v for k, v in state.generator.state_dict().items()}
    tensors |= {f"discriminator.{k}": v for k, v in state.discriminator.state_dict().items()}
    if state.ema_generator is not None:
        tensors |= {f"generator_ema.{k}": v for k, v in state.ema_generator.state_dict().items()}
    meta = {
        "kind": "gan",
        "spec": asdict(config.spec()),
        "config": asdict(config),
        "steps_done": state.steps_done,
        "seconds_total": state.seconds_total,
    }
    save_checkpoint(stem, tensors, meta)
    logger.info("GAN checkpoint %s at step %d", stem, state.steps_done)


def _resume(stem: str, state: _State, config: GanTrainConfig) -> None:
    """Load the checkpoint at ``stem`` into ``state``; ConfigError if it is another architecture."""
    tensors, meta = load_checkpoint(stem)
    if meta.get("kind") != "gan":
        raise CheckpointError(f"{stem} is a {meta.get('kind')!r} checkpoint, not a GAN")
    saved_spec = meta.get("spec")
    if not same_key(saved_spec, config.spec()):
        raise ConfigError(
            f"{stem} holds a GAN with spec {saved_spec}, but the config asks for "
            f"{asdict(config.spec())}; use another out_uri or delete the old checkpoint"
        )
    saved_config = meta.get("config", {})
    changed = sorted(
        f.name
        for f in fields(config)
        if f.name not in _RESUMABLE_CHANGES and saved_config.get(f.name) != getattr(config, f.name)
    )
    if changed:
        logger.warning("resuming %s with changed config fields %s", stem, ", ".join(changed))
    state.generator.load_state_dict(_sub_state(tensors, "generator"))
    state.discriminator.load_state_dict(_sub_state(tensors, "discriminator"))
    if state.ema_generator is not None:
        ema = _sub_state(tensors, "generator_ema") or _sub_state(tensors, "generator")
        state.ema_generator.load_state_dict(ema)
    state.steps_done = int(meta["steps_done"])
    state.seconds_total = float(meta.get("seconds_total", 0.0))
    optim_stem = stem + OPTIMIZER_SUFFIX
    optim_tensors: dict[str, torch.Tensor] = {}
    optim_meta: dict[str, Any] = {}
    if exists(optim_stem + SIDECAR_SUFFIX):
        optim_tensors, optim_meta = load_checkpoint(optim_stem)
    if optim_meta.get("steps_done") == state.steps_done:
        _restore_optimizer(state.optimizer_g, "generator", optim_tensors)
        _restore_optimizer(state.optimizer_d, "discriminator", optim_tensors)
    else:
        logger.warning(
            "%s has no optimiser state for step %d; Adam restarts", stem, state.steps_done
        )
    logger.info("resuming GAN training from %s at step %d", stem, state.steps_done)


def _real_batch(
    data: torch.Tensor, labels: torch.Tensor, config: GanTrainConfig, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch ``(B, 3, 32, 32)`` in [0, 1] with its labels, flipped at random."""
    index = torch.randint(len(data), (config.batch_size,), generator=rng)
    x = data[index].float() / 255
    if config.hflip:
        flip = torch.rand(config.batch_size, generator=rng) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x, labels[index]


def _noise(config: GanTrainConfig, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``(B, z_dim)`` and uniformly drawn class labels ``(B,)``."""
    z = torch.randn(config.batch_size, config.z_dim, generator=rng)
    return z, torch.randint(config.num_classes, (config.batch_size,), generator=rng)


def _train_step(
    state: _State,
    data: torch.Tensor,
    labels: torch.Tensor,
    config: GanTrainConfig,
    rng: torch.Generator,
    device: torch.device,
    shard: tuple[int, int] = (0, 1),
    grad_sync: Callable[[nn.Module], None] | None = None,
) -> dict[str, float]:
    """``n_dis`` hinge-loss D steps then one G step; returns the losses.

    Data-parallel workers (``shard = (rank, world_size)``) draw the same global batch from the
    shared generator and keep their ``rank::world_size`` slice; ``grad_sync`` averages the
    gradients across workers before each optimiser step.
    """
    G, D = state.generator, state.discriminator
    rank, world_size = shard
    batch = len(range(rank, config.batch_size, world_size))

    def mine(*tensors: torch.Tensor) -> list[torch.Tensor]:
        return [t[rank::world_size] for t in tensors]

    autocast = bf16_autocast(config.precision, device)

    for _ in range(config.n_dis):
        x_real, y_real = mine(*_real_batch(data, labels, config, rng))
        z, y_fake = mine(*_noise(config, rng))
        with torch.no_grad(), autocast:
            x_fake = G(z.to(device), y_fake.to(device)).float()
        # One D pass over real and fake together (D has no BatchNorm, so this equals two passes).
        with autocast:
            scores, logits = D.scores_and_logits(
                torch.cat([x_real.to(device), x_fake]), torch.cat([y_real, y_fake]).to(device)
            )
        scores = scores.float()
        logits = logits.float() if logits is not None else None
        d_real, d_fake = scores[:batch], scores[batch:]
        loss_d = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        if logits is not None:  # the auxiliary head learns classes from real images only
            loss_d = loss_d + config.aux_weight * F.cross_entropy(logits[:batch], y_real.to(device))
        state.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if grad_sync is not None:
            grad_sync(D)
        state.optimizer_d.step()
    z, y_fake = mine(*_noise(config, rng))
    y_fake = y_fake.to(device)
    D.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
    with autocast:
        scores, logits = D.scores_and_logits(G(z.to(device), y_fake), y_fake)
    loss_g = -scores.float().mean()
    if logits is not None:
        loss_g = loss_g + config.aux_weight * F.cross_entropy(logits.float(), y_fake)
    state.optimizer_g.zero_grad(set_to_none=True)
    loss_g.backward()
    if grad_sync is not None:
        grad_sync(G)
    state.optimizer_g.step()
    D.requires_grad_(True)
    if state.ema_generator is not None:
        _update_ema(state.ema_generator, G, config.ema_decay)
    return {
        "loss_d": loss_d.item(),
        "loss_g": loss_g.item(),
        "d_real": d_real.mean().item(),
        "d_fake": d_fake.mean().item(),
    }


@torch.no_grad()
def _update_ema(ema: Generator, generator: Generator, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * generator; BatchNorm statistics are copied."""
    for ema_param, param in zip(ema.parameters(), generator.parameters()):
        ema_param.lerp_(param, 1 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), generator.buffers()):
        ema_buffer.copy_(buffer)


@dataclass(frozen=True)
class DataParallel:
    """How one data-parallel worker takes part in GAN training.

    Attributes:
        shard: ``(rank, world_size)`` (see :func:`_train_step`); only rank 0 writes checkpoints,
            every rank resumes from them.
        grad_sync: averages gradients across workers before each optimiser step.
        on_checkpoint: called as ``on_checkpoint(steps_done, losses)`` on every rank after each
            checkpoint step (Ray Train reports progress through it).
    """

    shard: tuple[int, int] = (0, 1)
    grad_sync: Callable[[nn.Module], None] | None = None
    on_checkpoint: Callable[[int, dict[str, float]], None] | None = None


def train_gan(
    images: np.ndarray,
    labels: np.ndarray,
    config: GanTrainConfig,
    out_uri: str,
    *,
    device: str = "cpu",
    progress: bool = True,
    parallel: DataParallel | None = None,
) -> GanTrainResult:
    """Train (or resume training) a class-conditional GAN and checkpoint it at ``out_uri``.

    Args:
        images: ``(N, 32, 32, 3)`` uint8 training images.
        labels: ``(N,)`` integer labels in [0, config.num_classes).
        config: the recipe; see :class:`GanTrainConfig`.
        out_uri: checkpoint stem (local or ``s3://``), e.g. ``"runs/cpu/gan"``. A checkpoint of the
            same spec already there is resumed from its ``steps_done``; once ``steps_done`` reaches
            ``config.steps`` the call returns at once.
        device: torch device to train on.
        progress: show a tqdm bar with the losses.
        parallel: this worker's part in data-parallel training (None: a single process).

    Returns:
        A :class:`GanTrainResult` with eval-mode networks.

    Raises:
        DataError: images or labels have the wrong shape, type or range.
        ConfigError: the checkpoint at ``out_uri`` holds a different architecture.
        NfDistError: a loss became NaN or infinite.
    """
    parallel = parallel or DataParallel()
    shard, grad_sync, on_checkpoint = parallel.shard, parallel.grad_sync, parallel.on_checkpoint
    data, label_tensor = _to_tensors(images, labels, config.num_classes)
    stem = checkpoint_stem(out_uri)
    torch_device = torch.device(device)
    generator, discriminator = _seeded_build(config.spec(), config.seed)
    generator.to(torch_device)
    discriminator.to(torch_device)
    ema_generator = copy.deepcopy(generator).eval() if config.ema_decay > 0 else None
    betas = (float(config.beta1), float(config.beta2))  # Adam rejects a mix of int and float
    state = _State(
        generator,
        discriminator,
        ema_generator,
        torch.optim.Adam(generator.parameters(), lr=float(config.lr_g), betas=betas),
        torch.optim.Adam(discriminator.parameters(), lr=float(config.lr_d), betas=betas),
    )
    if exists(stem + SIDECAR_SUFFIX):  # the sidecar is written last: present means complete
        _resume(stem, state, config)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    if state.steps_done < config.steps:
        logger.info(
            "training GAN %s for steps %d..%d on %s",
            asdict(config.spec()),
            state.steps_done + 1,
            config.steps,
            device,
        )
        generator.train()
        discriminator.train()
        bar = tqdm(total=config.steps, initial=state.steps_done, disable=not progress, desc="gan")
        with bar:
            while state.steps_done < config.steps:
                step_started = time.perf_counter()
                rng = _step_rng(config.seed, state.steps_done)
                losses = _train_step(
                    state, data, label_tensor, config, rng, torch_device, shard, grad_sync
                )
                state.steps_done += 1
                state.seconds_total += time.perf_counter() - step_started
                if not all(math.isfinite(v) for v in losses.values()):
                    raise NfDistError(
                        f"GAN training diverged at step {state.steps_done} ({losses}); lower "
                        f"lr_d/lr_g or resume from the last checkpoint at {stem}"
                    )
                history.append({"step": float(state.steps_done), **losses})
                bar.set_postfix(
                    loss_d=f"{losses['loss_d']:.3f}",
                    loss_g=f"{losses['loss_g']:.3f}",
                    refresh=False,
                )
                bar.update()
                last = state.steps_done == config.steps
                if last or state.steps_done % config.checkpoint_every == 0:
                    if shard[0] == 0:
                        _save(stem, state, config)
                    if on_checkpoint is not None:
                        on_checkpoint(state.steps_done, losses)
    else:
        logger.info("%s already has %d steps (asked for %d)", stem, state.steps_done, config.steps)
    return GanTrainResult(
        generator=generator.eval(),
        discriminator=discriminator.eval(),
        steps_done=state.steps_done,
        seconds=time.perf_counter() - started,
        history=history,
        ema_generator=ema_generator.eval() if ema_generator is not None else None,
        checkpoint_uri=stem,
    )


def load_gan(
    uri: str, *, ema: bool = True, device: str = "cpu"
) -> tuple[Generator, Discriminator, dict[str, Any]]:
    """Rebuild a trained GAN from its checkpoint; both networks in eval mode.

    Args:
        uri: the checkpoint stem given to :func:`train_gan` (or its weights/sidecar path).
        ema: return the EMA generator when the checkpoint has one (the one to sample from).
        device: torch device for the networks.

    Returns:
        ``(generator, discriminator, sidecar metadata)``.

    Raises:
        CheckpointError: missing, corrupt, not a GAN checkpoint, or an unknown spec.
    """
    tensors, meta = load_checkpoint(uri)
    if meta.get("kind") != "gan":
        raise CheckpointError(f"{uri} is a {meta.get('kind')!r} checkpoint, not a GAN")
    try:
        spec = GanSpec(**meta["spec"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{uri} has an unusable GAN spec in its sidecar: {exc}") from exc
    generator, discriminator = _seeded_build(spec, seed=0)
    generator_weights = _sub_state(tensors, "generator_ema") if ema else {}
    generator.load_state_dict(generator_weights or _sub_state(tensors, "generator"))
    discriminator.load_state_dict(_sub_state(tensors, "discriminator"))
    return generator.to(device).eval(), discriminator.to(device).eval(), meta


__all__ = [
    "GanTrainConfig",
    "GanTrainResult",
    "gan_test_accuracy",
    "load_gan",
    "save_sample_grid",
    "train_gan",
]
