"""CIFAR variants of the 15 FingerBench architectures, registered in :data:`CLASSIFIERS`.

Importing this package imports every architecture module, which registers its builders.
"""

from nf_dist.models.classifiers import (  # noqa: F401  (imported for registration)
    densenet,
    efficientnet,
    googlenet,
    inception,
    mobilenet,
    resnet,
    shufflenet,
    squeezenet,
    vgg,
    xception,
)
from nf_dist.models.classifiers.base import CLASSIFIERS

__all__ = ["CLASSIFIERS"]
