"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

from nf_dist.hardware import machine_record


def machine() -> dict[str, object]:
    """CPU model and flags, torch's CPU capability, cores, GPU and driver, the precision ``auto``
    resolves to, versions (:func:`nf_dist.hardware.machine_record`)."""
    return machine_record()
