"""Model-stealing attacks and independent training, one registered class each.

Papers: fine-tuning FTLL/FTAL/RTLL/RTAL (Adi et al., 2018); magnitude pruning (Han et al., 2015);
weight noising (NaturalFinger, 2023); PGD adversarial fine-tuning (Madry et al., 2018);
distillation (Hinton et al., 2015); Knockoff Nets (Orekondy et al., 2019). See
``../shared/paper/NOTES.md``.
"""

from nf_dist.bench.attacks import adversarial, distill, finetune, noise, prune, scratch
from nf_dist.bench.attacks.base import ATTACKS, Attack, AttackData, ModelRecipe

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackData",
    "ModelRecipe",
    "adversarial",
    "distill",
    "finetune",
    "noise",
    "prune",
    "scratch",
]
