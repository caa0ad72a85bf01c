"""The channels-last heap corruption of torch 2.14.1 on AVX2 CPUs, minimised, and its work-around.

The minimal reproduction below (a strided 1x1 convolution, 4 input channels, channels-last,
weight gradient) aborts with glibc heap corruption on an AMD EPYC (Zen 3, AVX2, no AVX-512) and
runs with ``ONEDNN_MAX_CPU_ISA=SSE41``: oneDNN's AVX2 weight-gradient kernel. Each case runs in a
subprocess, since a crash kills the interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from nf_dist.models import create_classifier
from nf_dist.models.memory_format import has_unsafe_convolution, training_memory_format

MINIMAL_REPRO = """
import torch
torch.set_num_threads(1)
conv = torch.nn.Conv2d(4, 8, kernel_size=1, stride=2, bias=False)
conv = conv.to(memory_format=torch.{layout})
for _ in range(200):
    x = torch.rand(64, 4, 16, 16).contiguous(memory_format=torch.{layout})
    conv(x).sum().backward()
print("ok")
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_rule_flags_the_reproduced_layer_and_only_narrow_models() -> None:
    conv = torch.nn.Conv2d(4, 8, kernel_size=1, stride=2)
    assert has_unsafe_convolution(conv)
    assert not has_unsafe_convolution(torch.nn.Conv2d(8, 16, kernel_size=1, stride=2))
    assert not has_unsafe_convolution(torch.nn.Conv2d(4, 8, kernel_size=3, stride=2))
    assert not has_unsafe_convolution(torch.nn.Conv2d(4, 8, kernel_size=1, stride=1))
    narrow = create_classifier("resnet18", width=0.0625, stem_stride=2)
    assert training_memory_format(narrow) == torch.contiguous_format
    cpu_profile = create_classifier("resnet18", width=0.25, stem_stride=2)
    assert training_memory_format(cpu_profile) == torch.channels_last


def test_the_minimal_reproduction_runs_in_contiguous_memory() -> None:
    result = _run(MINIMAL_REPRO.format(layout="contiguous_format"))
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_a_width_0_0625_resnet18_trains_through_the_training_loop() -> None:
    """The loop picks the safe layout: 30 SGD steps that abort in channels-last on AVX2."""
    code = """
    import numpy as np
    import torch
    from nf_dist.data.readers import ImageDataset
    from nf_dist.models import create_classifier
    from nf_dist.models.training import TrainConfig, train_classifier
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = ImageDataset(
        rng.integers(0, 256, (64 * 30, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, 64 * 30),
        tuple(str(c) for c in range(10)),
        "random",
    )
    model = create_classifier("resnet18", width=0.0625, stem_stride=1)
    result = train_classifier(
        model, data, TrainConfig(epochs=1, batch_size=64, lr=0.1, precision="fp32"),
        progress=False,
    )
    assert result.steps == 30 and np.isfinite(result.losses[-1])
    print("ok")
    """
    result = _run(code)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
