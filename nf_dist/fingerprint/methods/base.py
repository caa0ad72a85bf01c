"""The fingerprinting-method contract and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn

from nf_dist.data.readers import ImageDataset
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.fingerprint.naturalfinger import Checkpointing, ModelGradients
from nf_dist.models.inference import predict
from nf_dist.registry import Registry


@dataclass
class FingerprintContext:
    """What the owner has when fingerprinting.

    Attributes:
        positives: models derived from the owner's source, the source first (white-box).
        negatives: independent models (white-box).
        screening_positives, screening_negatives: models that only screen a generative
            method's optimised images (never optimised for or against, so they stand for unseen
            stolen and independent models); other methods ignore them.
        clean: clean owner images (e.g. the test split) for methods that start from real data.
        generator, discriminator, z_dim: the GAN, for generative methods (None otherwise).
        num_classes: label count.
        progress: show progress bars.
    """

    positives: Sequence[nn.Module]
    negatives: Sequence[nn.Module]
    screening_positives: Sequence[nn.Module] = ()
    screening_negatives: Sequence[nn.Module] = ()
    clean: ImageDataset | None = None
    generator: nn.Module | None = None
    discriminator: nn.Module | None = None
    z_dim: int = 128
    num_classes: int = 10
    progress: bool = False


#: ``observer(step, snapshot)`` after every optimisation step; ``snapshot()`` screens the
#: current state into the set the run would return if it stopped now (possibly empty).
StepObserver = Callable[[int, Callable[[], FingerprintSet]], None]


@dataclass(frozen=True)
class RunOptions:
    """How one generation runs, beyond the method's settings.

    Attributes:
        engine: the gradient engine of a generative method's latent optimisation, opened by the
            caller (``nf_dist.distributed.engines.open_engine``); None: in this process.
        checkpointing: save the optimisation and resume a killed run (generative methods).
        on_step: an observer of the optimisation (methods with ``reports_progress``).
    """

    engine: ModelGradients | None = None
    checkpointing: Checkpointing | None = None
    on_step: StepObserver | None = None


class FingerprintMethod(ABC):
    """A fingerprinting method: ``generate(context, config, run) -> FingerprintSet``.

    Class-level facts replace tests on the method's name:

    - ``config_class``: the method's frozen config dataclass (its YAML section);
    - ``needs_gan``: it optimises a GAN's latents (the context must carry a generator and a
      discriminator, and its models' gradients go through ``run.engine``);
    - ``reports_progress``: it calls ``run.on_step`` during generation, so a sweep can stop it
      early; :meth:`horizon` says over how many steps.
    """

    config_class: ClassVar[type]
    needs_gan: ClassVar[bool] = False
    reports_progress: ClassVar[bool] = False

    @abstractmethod
    def generate(
        self, context: FingerprintContext, config: Any, run: RunOptions | None = None
    ) -> FingerprintSet:
        """Build the fingerprint set (``run`` None: defaults, in this process)."""

    @classmethod
    def horizon(cls, config: Any) -> int:
        """How many steps a generation with ``config`` reports over (1 if it reports once)."""
        return 1


METHODS: Registry[type[FingerprintMethod]] = Registry("fingerprinting method")


def majority_labels(
    models: Sequence[nn.Module], images: np.ndarray, num_classes: int
) -> np.ndarray:
    """Per image, the label most of ``models`` give (ties: the smaller label); ``y_adv`` of the
    baselines, the label independent models answer."""
    votes = np.stack([predict(m, images) for m in models])
    return np.array([np.bincount(column, minlength=num_classes).argmax() for column in votes.T])
