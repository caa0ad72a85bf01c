"""Fingerprinting methods behind one interface: NaturalFinger and the baselines.

Every method turns a :class:`~nf_dist.fingerprint.methods.base.FingerprintContext` (the owner's
white-box models, the generator, clean owner data) into a
:class:`~nf_dist.fingerprint.fingerprint_set.FingerprintSet`, so evaluation treats them alike.
"""

from nf_dist.fingerprint.methods import (
    akh,
    cae,
    clean,
    ipguard,
    metafinger,
    metav,
    naturalfinger,
)
from nf_dist.fingerprint.methods.base import METHODS, FingerprintContext, FingerprintMethod

__all__ = [
    "METHODS",
    "FingerprintContext",
    "FingerprintMethod",
    "akh",
    "cae",
    "clean",
    "ipguard",
    "metafinger",
    "metav",
    "naturalfinger",
]
