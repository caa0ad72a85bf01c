"""The memory layout a classifier trains in: channels-last, unless oneDNN would corrupt the heap.

channels_last is 1.28-1.5x faster than contiguous on CPUs (oneDNN) and what cuDNN prefers for
bf16. But with torch 2.14.1 on an AVX2-only CPU, the weight gradient of a strided 1x1 convolution
with fewer than 8 input channels in channels_last corrupts the heap (``corrupted size vs.
prev_size``, ``double free``, segfaults): a ResNet18 at width 0.0625 (4-channel downsampling
shortcuts) dies within 30 SGD steps, in contiguous memory it trains. The input gradient alone
(fingerprint optimisation through frozen models) is not affected, and neither are wider models.
Minimal reproduction: ``tests/unit/test_memory_format.py``; it does not crash with oneDNN capped
at SSE4.1 (``ONEDNN_MAX_CPU_ISA=SSE41``), so it is oneDNN's AVX2 kernel.
"""

from __future__ import annotations

import torch
from torch import nn

#: Below this many input channels a strided 1x1 convolution's weight gradient is unsafe.
MIN_SAFE_CHANNELS = 8


def has_unsafe_convolution(model: nn.Module) -> bool:
    """Whether ``model`` holds a convolution whose channels-last weight gradient may crash."""
    return any(
        isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and max(m.stride) > 1
        and m.in_channels < MIN_SAFE_CHANNELS
        for m in model.modules()
    )


def training_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last, or contiguous for a model :func:`has_unsafe_convolution` flags."""
    return torch.contiguous_format if has_unsafe_convolution(model) else torch.channels_last
