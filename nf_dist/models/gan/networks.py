"""Class-conditional SNGAN / SAGAN networks for 32x32 images, sized by a channel count.

Generator: Miyato & Koyama 2018 ("cGANs with Projection Discriminator") / Miyato et al. 2018
("Spectral Normalization for GANs"): a linear map to 4x4, three residual up-sampling blocks with
class-conditional BatchNorm, BN-ReLU-conv-tanh. Discriminator: spectral-normalised residual
down-sampling blocks, global sum pooling, a linear output plus the projection term <embed(y), h>.
``attention=True`` adds a SAGAN self-attention block (Zhang et al. 2019) at 16x16 in both.

Both networks keep one channel count through every block (as SNGAN's CIFAR models do), so a CPU
profile shrinks them with a single number; shrink G and D together (a narrow G facing a wide D
collapses). Spectral norm is on D only: StudioGAN's CIFAR-10 runs found SN on G did not help.

Example:
    >>> spec = GanSpec(z_dim=128, num_classes=10, g_channels=32, d_channels=32, attention=False)
    >>> generator, discriminator = build_gan(spec)
    >>> images = generator(torch.randn(4, 128), torch.arange(4))  # (4, 3, 32, 32) in [0, 1]
    >>> discriminator(images, torch.arange(4)).shape
    torch.Size([4])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from nf_dist.errors import ConfigError

IMAGE_SIZE = 32
_BASE_SIZE = 4  # G starts at 4x4; three 2x up-samplings reach 32x32


def _init(module: nn.Module) -> nn.Module:
    """Xavier-uniform weights and zero biases (StudioGAN's SNGAN initialisation)."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        nn.init.xavier_uniform_(weight)
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        nn.init.zeros_(bias)
    return module


def _conv(in_channels: int, out_channels: int, kernel_size: int, sn: bool) -> nn.Module:
    """A same-padding convolution, initialised, optionally spectral-normalised."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    _init(conv)
    # Initialise before wrapping: spectral_norm captures the weight as ``original`` and runs its
    # first power iterations on it.
    return spectral_norm(conv) if sn else conv


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, followed by a per-class gain and bias.

    Shape: x ``(N, C, H, W)``, y ``(N,)`` long in [0, num_classes) -> ``(N, C, H, W)``.
    In eval mode the normalisation uses the running statistics gathered while training G.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = self.gain(y)[:, :, None, None]  # (N, C, 1, 1)
        bias = self.bias(y)[:, :, None, None]
        return self.bn(x) * gain + bias


class SelfAttention(nn.Module):
    """SAGAN non-local block (Zhang et al. 2019) with 2x2 max-pooled keys and values.

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``; H and W must be even. The residual gain starts at
    zero, so the block is the identity at initialisation.
    """

    def __init__(self, channels: int, sn: bool) -> None:
        super().__init__()
        key_channels = max(1, channels // 8)
        self.value_channels = max(1, channels // 2)
        self.query = _conv(channels, key_channels, 1, sn)
        self.key = _conv(channels, key_channels, 1, sn)
        self.value = _conv(channels, self.value_channels, 1, sn)
        self.out = _conv(self.value_channels, channels, 1, sn)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        query = self.query(x).flatten(2)  # (N, C/8, HW)
        key = F.max_pool2d(self.key(x), 2).flatten(2)  # (N, C/8, HW/4)
        value = F.max_pool2d(self.value(x), 2).flatten(2)  # (N, C/2, HW/4)
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (N, HW, HW/4)
        out = (value @ attention.transpose(1, 2)).view(n, self.value_channels, h, w)
        return x + self.gamma * self.out(out)


class GeneratorBlock(nn.Module):
    """Residual 2x up-sampling block: CBN-ReLU-up-conv3x3-CBN-ReLU-conv3x3 plus up-conv1x1.

    Shape: ``(N, C_in, H, W)``, y ``(N,)`` -> ``(N, C_out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_channels, num_classes)
        self.conv1 = _conv(in_channels, out_channels, 3, sn=False)
        self.bn2 = ConditionalBatchNorm2d(out_channels, num_classes)
        self.conv2 = _conv(out_channels, out_channels, 3, sn=False)
        self.shortcut = _conv(in_channels, out_channels, 1, sn=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """Spectral-normalised residual block with 2x2 average-pool down-sampling.

    The first block (``preactivation=False``, SNGAN's "optimised" block) sees raw pixels, so it
    skips the leading ReLU and pools before its shortcut convolution.
    Shape: ``(N, C_in, H, W)`` -> ``(N, C_out, H/2, W/2)``.
    """

    def __init__(self, in_channels: int, out_channels: int, preactivation: bool) -> None:
        super().__init__()
        self.preactivation = preactivation
        self.conv1 = _conv(in_channels, out_channels, 3, sn=True)
        self.conv2 = _conv(out_channels, out_channels, 3, sn=True)
        self.shortcut = _conv(in_channels, out_channels, 1, sn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        if self.preactivation:
            return h + F.avg_pool2d(self.shortcut(x), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class Generator(nn.Module):
    """Class-conditional residual generator for 32x32 RGB images.

    Shape and Range: z ``(N, z_dim)`` float, y ``(N,)`` long in [0, num_classes)
    -> ``(N, 3, 32, 32)`` float in [0, 1] (computed as ``(tanh + 1) / 2``).

    Args:
        z_dim: latent size.
        num_classes: number of conditioning classes.
        channels: channel count of every block (SNGAN's CIFAR G uses 256).
        attention: add a SAGAN self-attention block at 16x16.
    """

    def __init__(
        self, z_dim: int = 128, num_classes: int = 10, channels: int = 64, attention: bool = False
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.channels = channels
        self.linear = _init(nn.Linear(z_dim, _BASE_SIZE * _BASE_SIZE * channels))
        self.blocks = nn.ModuleList(
            [GeneratorBlock(channels, channels, num_classes) for _ in range(3)]
        )
        self.attention = SelfAttention(channels, sn=False) if attention else None
        self.bn = nn.BatchNorm2d(channels)
        self.to_rgb = _conv(channels, 3, 3, sn=False)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.channels, _BASE_SIZE, _BASE_SIZE)
        for index, block in enumerate(self.blocks):
            h = block(h, y)  # 4 -> 8 -> 16 -> 32
            if index == 1 and self.attention is not None:
                h = self.attention(h)  # at 16x16
        h = torch.tanh(self.to_rgb(F.relu(self.bn(h))))
        return (h + 1) / 2


class Discriminator(nn.Module):
    """Spectral-normalised projection discriminator for 32x32 RGB images (hinge convention).

    Shape and Range: x ``(N, 3, 32, 32)`` float in [0, 1], y ``(N,)`` long in [0, num_classes)
    -> ``(N,)`` unbounded scores, high for real. Pixels are mapped to [-1, 1] inside.

    Args:
        num_classes: number of conditioning classes.
        channels: channel count of every block (SNGAN's CIFAR D uses 128).
        attention: add a SAGAN self-attention block at 16x16.
        aux_classifier: add an auxiliary classification head on the pooled features (AC-GAN,
            Odena et al. 2017), trained on real images; G is then also pushed to make images the
            head classifies as their class.
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 64,
        attention: bool = False,
        aux_classifier: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.channels = channels
        self.blocks = nn.ModuleList(
            [
                DiscriminatorBlock(3, channels, preactivation=False),  # 32 -> 16
                DiscriminatorBlock(channels, channels, preactivation=True),  # 16 -> 8
                DiscriminatorBlock(channels, channels, preactivation=True),  # 8 -> 4
            ]
        )
        self.attention = SelfAttention(channels, sn=True) if attention else None
        self.linear = spectral_norm(_init(nn.Linear(channels, 1)))
        self.embed = spectral_norm(_init(nn.Embedding(num_classes, channels)))
        self.classifier = (
            spectral_norm(_init(nn.Linear(channels, num_classes))) if aux_classifier else None
        )

    def scores_and_logits(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores ``(N,)`` and, with the auxiliary head, class logits ``(N, num_classes)``."""
        h = x * 2 - 1
        for index, block in enumerate(self.blocks):
            h = block(h)
            if index == 0 and self.attention is not None:
                h = self.attention(h)  # at 16x16
        h = F.relu(h).sum(dim=(2, 3))  # (N, C) global sum pooling
        # Projection (Miyato & Koyama 2018): the class enters as an inner product with features.
        scores = self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
        return scores, self.classifier(h) if self.classifier is not None else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scores_and_logits(x, y)[0]


@dataclass(frozen=True)
class GanSpec:
    """What :func:`build_gan` needs to rebuild a GAN (stored in every checkpoint sidecar)."""

    z_dim: int = 128
    num_classes: int = 10
    g_channels: int = 64
    d_channels: int = 64
    attention: bool = False
    aux_classifier: bool = False

    def __post_init__(self) -> None:
        if self.z_dim < 1:
            raise ConfigError(f"z_dim must be at least 1, got {self.z_dim}; 128 is usual")
        if self.num_classes < 2:
            raise ConfigError(
                f"num_classes must be at least 2, got {self.num_classes}; "
                "set it to the number of labels in the training data"
            )
        for name in ("g_channels", "d_channels"):
            value = getattr(self, name)
            if value < 4:
                raise ConfigError(f"{name} must be at least 4, got {value}; use 16-64 on a CPU")


def build_gan(spec: GanSpec) -> tuple[Generator, Discriminator]:
    """Build an untrained generator and discriminator from ``spec``."""
    generator = Generator(spec.z_dim, spec.num_classes, spec.g_channels, spec.attention)
    discriminator = Discriminator(
        spec.num_classes, spec.d_channels, spec.attention, spec.aux_classifier
    )
    return generator, discriminator
