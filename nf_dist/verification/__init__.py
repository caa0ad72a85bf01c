"""Verifying suspects: oracles (files, HTTP APIs), the statistical decision, evidence records."""

from nf_dist.verification.oracles import (
    LabelOracle,
    Preprocessing,
    Verdict,
    model_oracle,
    module_oracle,
    verify,
)

__all__ = [
    "LabelOracle",
    "Preprocessing",
    "Verdict",
    "model_oracle",
    "module_oracle",
    "verify",
]
