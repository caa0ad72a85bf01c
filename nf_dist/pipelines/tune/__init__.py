"""Ray Tune sweeps of a fingerprinting method's settings, scored on validation suspects
(:mod:`nf_dist.pipelines.tune.run`)."""

from nf_dist.pipelines.tune.config import OBJECTIVES, TuneJobConfig
from nf_dist.pipelines.tune.run import run_tune
from nf_dist.pipelines.tune.space import ParamSpec, default_space, search_algorithm
from nf_dist.pipelines.tune.split import (
    ThreeWaySplit,
    ValidationScorer,
    split_models,
    three_way_split,
)
from nf_dist.pipelines.tune.trial import method_settings

__all__ = [
    "OBJECTIVES",
    "ParamSpec",
    "ThreeWaySplit",
    "TuneJobConfig",
    "ValidationScorer",
    "default_space",
    "method_settings",
    "run_tune",
    "search_algorithm",
    "split_models",
    "three_way_split",
]
