"""NaturalFinger as a registered method (the reference in nf_dist.fingerprint.naturalfinger)."""

from __future__ import annotations

from nf_dist.errors import ConfigError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet
from nf_dist.fingerprint.methods.base import METHODS, FingerprintContext, FingerprintMethod
from nf_dist.fingerprint.naturalfinger import NaturalFingerConfig, generate


@METHODS.register("naturalfinger")
class NaturalFinger(FingerprintMethod):
    """Yang et al., IJCAI 2023: GAN latents optimised against positive and negative models."""

    config_class = NaturalFingerConfig

    def generate(self, context: FingerprintContext, config: NaturalFingerConfig) -> FingerprintSet:
        if context.generator is None or context.discriminator is None:
            raise ConfigError("naturalfinger needs a generator and a discriminator (gan_uri)")
        return generate(
            context.generator,
            context.discriminator,
            context.positives,
            context.negatives,
            config,
            z_dim=context.z_dim,
            num_classes=context.num_classes,
            progress=context.progress,
        )
