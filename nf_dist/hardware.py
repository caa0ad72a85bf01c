"""What the machine is, and the precision it runs at: one place that reads the hardware.

Every run record, evidence record and benchmark result carries :func:`machine_record` (the CPU
model and the flags that decide speed, torch's CPU capability, cores, GPU and driver), so a reader
can tell which figures came from which hardware.

Precision. ``auto`` (the default of classifier training, GAN training and NaturalFinger) resolves
once per process and device kind to bf16 autocast where the hardware runs it natively and to fp32
elsewhere, and logs why. The CPU rule: bf16 only where torch reports ``avx512_bf16`` or
``amx_bf16`` and oneDNN's bf16 check passes (the check inductor uses). On an AVX2-only CPU bf16
autocast leaves oneDNN for a scalar reference GEMM and measured 7-19x slower than fp32 (an AMD
EPYC Zen 3, ``../shared/paper/TRAINING_FACTS.md``); on AVX512-BF16 it ran 1.5-2x faster. An
explicit ``bf16`` on a CPU without it still runs, with a warning that names the slowdown.

The CPU's facts are an input (:class:`CpuFacts`), so tests decide the rule for any CPU.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import re
import sys
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

logger = logging.getLogger(__name__)

#: What a config may ask for.
Precision = Literal["auto", "fp32", "bf16"]
#: What a run actually uses.
Resolved = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)

#: The CPU flags that decide which kernels run (reported in every machine record).
FLAGS_THAT_MATTER = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
#: Measured bf16-autocast / fp32 time on a CPU without native bf16 (TRAINING_FACTS.md).
EMULATED_BF16_SLOWDOWN = "7-19x slower than fp32 (measured on an AVX2-only AMD EPYC)"


@dataclass(frozen=True)
class CpuFacts:
    """What decides CPU precision and speed.

    Attributes:
        model: the CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere).
        flags: the instruction-set flags that matter, as the kernel names them.
        capability: torch's dispatch level (``torch.backends.cpu.get_cpu_capability()``).
        mkldnn_bf16: oneDNN's own bf16 check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``).
    """

    model: str
    flags: frozenset[str]
    capability: str
    mkldnn_bf16: bool

    @property
    def native_bf16(self) -> bool:
        """Whether bf16 matrix kernels run natively (not through the scalar fallback)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"}) and self.mkldnn_bf16


def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The model name and flags of the first CPU in ``/proc/cpuinfo`` (Linux)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return platform.processor() or platform.machine(), frozenset()
    text = path.read_text(errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    return (
        model.group(1).strip() if model else platform.machine(),
        frozenset(flags.group(1).split()) if flags else frozenset(),
    )


@functools.cache
def cpu_facts() -> CpuFacts:
    """This machine's :class:`CpuFacts` (read once per process)."""
    model, flags = _cpuinfo()
    # torch's own view of the ISA, which also holds where /proc/cpuinfo does not exist
    torch_caps = {name for name, present in _torch_caps().items() if present}
    flags = flags | {f for f in ("avx512_bf16", "amx_bf16") if f in torch_caps}
    try:
        mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        mkldnn_bf16 = False
    return CpuFacts(model, flags, torch.backends.cpu.get_cpu_capability(), mkldnn_bf16)


def _torch_caps() -> dict[str, bool]:
    get = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    try:
        return dict(get()) if get is not None else {}
    except RuntimeError:
        return {}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and why; ``emulated``: bf16 on a CPU without it (the slow path)."""

    precision: Resolved
    reason: str
    emulated: bool = False


def choose_precision(
    requested: str, device: str | torch.device = "cpu", cpu: CpuFacts | None = None
) -> PrecisionChoice:
    """Resolve ``requested`` (``auto``, ``fp32`` or ``bf16``) for ``device``; pure given ``cpu``.

    Args:
        requested: the config's precision.
        device: where the forward passes run.
        cpu: the CPU's facts (default: this machine's); tests pass others.

    Raises:
        ValueError: an unknown precision.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    kind = torch.device(device).type
    if kind == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        where = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
        if requested == "fp32":
            return PrecisionChoice("fp32", "asked for fp32")
        if requested == "bf16":
            return PrecisionChoice("bf16", "asked for bf16")
        return PrecisionChoice(
            "bf16" if native else "fp32",
            f"{where} {'supports' if native else 'lacks'} bf16",
        )
    facts = cpu or cpu_facts()
    native = facts.native_bf16 if kind == "cpu" else False
    about = (
        f"{facts.model} ({facts.capability}; "
        f"{'native bf16' if native else 'no native bf16: no avx512_bf16/amx_bf16 or oneDNN bf16'})"
    )
    if requested == "auto":
        return PrecisionChoice("bf16" if native else "fp32", f"auto on {about}")
    if requested == "bf16" and not native:
        return PrecisionChoice(
            "bf16", f"asked for bf16 on {about}: emulated, {EMULATED_BF16_SLOWDOWN}", emulated=True
        )
    return PrecisionChoice(requested, f"asked for {requested} on {about}")  # type: ignore[arg-type]


#: What this process resolved: ``"<requested> on <device kind>"`` -> the precision used.
_RESOLVED: dict[str, str] = {}


@functools.cache
def _announce(requested: str, kind: str) -> PrecisionChoice:
    """Resolve for this machine and log (or warn) once per process and device kind."""
    choice = choose_precision(requested, kind)
    _RESOLVED[f"{requested} on {kind}"] = choice.precision
    if choice.emulated:
        warnings.warn(
            f"nf-dist: precision bf16 {choice.reason}; set precision: auto (or fp32)",
            RuntimeWarning,
            stacklevel=3,
        )
    logger.info("precision %s -> %s: %s", requested, choice.precision, choice.reason)
    return choice


def resolve_precision(requested: str, device: str | torch.device = "cpu") -> Resolved:
    """The precision a run on ``device`` uses for ``requested``, on this machine (logged once)."""
    return _announce(requested, torch.device(device).type).precision


def bf16_autocast(requested: str, device: str | torch.device) -> torch.autocast:
    """The autocast context of a run's forward passes: bf16 where ``requested`` resolves to it,
    a no-op in fp32. Weights, optimiser state and losses stay fp32."""
    kind = torch.device(device).type
    return torch.autocast(
        kind, dtype=torch.bfloat16, enabled=resolve_precision(requested, kind) == "bf16"
    )


def free_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_record() -> dict[str, object]:
    """The hardware and software a result came from: CPU model and flags, torch's capability,
    cores, GPU and driver where present, the precision ``auto`` resolves to, versions."""
    from nf_dist import __version__  # the package imports this module's users

    facts = cpu_facts()
    record: dict[str, object] = {
        "cpu_model": facts.model,
        "cpu_flags": {flag: flag in facts.flags for flag in FLAGS_THAT_MATTER},
        "torch_cpu_capability": facts.capability,
        "mkldnn_bf16": facts.mkldnn_bf16,
        "cpu_count": os.cpu_count(),
        "cpus_free": free_cpus(),
        "torch_threads": torch.get_num_threads(),
        "auto_precision_cpu": choose_precision("auto", "cpu", facts).precision,
        # what this process's runs asked for and used (empty before any forward pass)
        "precisions_resolved": dict(_RESOLVED),
        "platform": platform.platform(),
        "torch": str(torch.__version__),  # a TorchVersion, which YAML cannot represent
        "python": sys.version.split()[0],
        "nf_dist": __version__,
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        record["cuda_version"] = torch.version.cuda
        record["gpu_driver"] = _nvidia_driver()
        record["auto_precision_cuda"] = choose_precision("auto", "cuda").precision
    return record


def _nvidia_driver() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    if not path.exists():
        return None
    match = re.search(r"Kernel Module\s+([\d.]+)", path.read_text(errors="replace"))
    return match.group(1) if match else None
