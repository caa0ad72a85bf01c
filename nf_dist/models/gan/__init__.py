"""Class-conditional SNGAN/SAGAN for 32x32 images: networks, training, sampling.

Example:
    >>> from nf_dist.models.gan import GanTrainConfig, load_gan, save_sample_grid, train_gan
    >>> train_gan(images, labels, GanTrainConfig(steps=600), "runs/cpu/gan")
    >>> generator, _, meta = load_gan("runs/cpu/gan")
    >>> save_sample_grid(generator, "runs/cpu/gan_samples.png")
"""

from nf_dist.models.gan.networks import Discriminator, GanSpec, Generator, build_gan
from nf_dist.models.gan.sampling import gan_test_accuracy, save_sample_grid
from nf_dist.models.gan.train import GanTrainConfig, GanTrainResult, load_gan, train_gan

__all__ = [
    "Discriminator",
    "GanSpec",
    "GanTrainConfig",
    "GanTrainResult",
    "Generator",
    "build_gan",
    "gan_test_accuracy",
    "load_gan",
    "save_sample_grid",
    "train_gan",
]
