"""NaturalFinger as a registered method: prepare, optimise and screen in a straight line.

The stages live in :mod:`nf_dist.fingerprint.naturalfinger`; this class composes them, takes the
gradient engine, the resume point and the step observer from :class:`RunOptions`, and declares
what makes it differ from the baselines (a GAN, progress reports over ``steps``).

Example:
    >>> method = METHODS.get("naturalfinger")()
    >>> fingerprints = method.generate(context, NaturalFingerConfig(steps=200))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import torch

from nf_dist.errors import ConfigError, FingerprintError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.fingerprint.methods.base import (
    METHODS,
    FingerprintContext,
    FingerprintMethod,
    RunOptions,
)
from nf_dist.fingerprint.naturalfinger import (
    GenerationHistory,
    LocalModelGradients,
    NaturalFingerConfig,
    frozen,
    modules_digest,
    optimise,
    prepare,
    screened_set,
)

logger = logging.getLogger(__name__)


@METHODS.register("naturalfinger")
class NaturalFinger(FingerprintMethod):
    """Yang et al., IJCAI 2023: GAN latents optimised against positive and negative models."""

    config_class = NaturalFingerConfig
    needs_gan = True
    reports_progress = True

    @classmethod
    def horizon(cls, config: NaturalFingerConfig) -> int:
        return config.steps

    def generate(
        self,
        context: FingerprintContext,
        config: NaturalFingerConfig,
        run: RunOptions | None = None,
    ) -> FingerprintSet:
        """Prepare, optimise and screen; the set holds at most ``num_fingerprints`` images.

        Raises:
            ConfigError: no GAN, or no positive or negative model.
            FingerprintError: no initial sample, a non-finite loss, or nothing survives
                screening.
        """
        if context.generator is None or context.discriminator is None:
            raise ConfigError("naturalfinger needs a generator and a discriminator (gan_uri)")
        if not context.positives or not context.negatives:
            raise ConfigError("naturalfinger needs at least one positive and one negative model")
        run = run or RunOptions()
        started = time.perf_counter()
        generator, discriminator = context.generator, context.discriminator
        positives, negatives = context.positives, context.negatives
        kept_by = [*positives, *context.screening_positives]
        rejected_by = [*negatives, *context.screening_negatives]
        with frozen([generator, discriminator, *kept_by, *rejected_by]):
            prepared = prepare(
                generator, positives, negatives, config, context.z_dim, context.num_classes
            )

            def snapshot(z: torch.Tensor, history: GenerationHistory) -> FingerprintSet:
                return screened_set(
                    generator, kept_by, rejected_by, z, prepared.targets, config, history
                )

            def observe(step: int, z: torch.Tensor, history: GenerationHistory) -> None:
                assert run.on_step is not None
                run.on_step(step, lambda: snapshot(z, history))

            checkpointing = run.checkpointing
            if checkpointing is not None:
                checkpointing = replace(
                    checkpointing,
                    models_digest=modules_digest(
                        [generator, discriminator, *positives, *negatives]
                    ),
                )
            engine = run.engine or LocalModelGradients(
                generator, positives, negatives, discriminator
            )
            z, history = optimise(
                engine,
                prepared,
                config,
                context.num_classes,
                progress=context.progress,
                checkpointing=checkpointing,
                on_step=observe if run.on_step is not None else None,
            )
            fingerprints = snapshot(z, history)
        kept = fingerprints.info["num_passed_screening"]
        logger.info("screening kept %d of %d optimised images", kept, len(z))
        if len(fingerprints) == 0:
            raise FingerprintError(
                "no optimised image passed screening; raise fingerprint.steps or num_optimised"
            )
        if len(fingerprints) < config.num_fingerprints:
            logger.warning(
                "only %d fingerprints passed screening (asked for %d)",
                len(fingerprints),
                config.num_fingerprints,
            )
        fingerprints.info.update(
            num_selected=len(prepared.z0), seconds=time.perf_counter() - started
        )
        return fingerprints
