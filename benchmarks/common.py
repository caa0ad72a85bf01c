"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys

import torch

from nf_dist import __version__


def machine() -> dict[str, object]:
    """Platform, CPU count, torch build and threads, CUDA availability, versions."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "python": sys.version.split()[0],
        "nf_dist": __version__,
    }
