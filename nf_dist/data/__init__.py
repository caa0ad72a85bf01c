"""Datasets (Parquet, CIFAR-10 folders, any fsspec URL), splits and augmentation."""

from nf_dist.data.config import DataConfig, Splits, load_splits
from nf_dist.data.readers import ImageDataset, load_dataset
from nf_dist.data.splits import paper_splits, stratified_split

__all__ = [
    "DataConfig",
    "ImageDataset",
    "Splits",
    "load_dataset",
    "load_splits",
    "paper_splits",
    "stratified_split",
]
