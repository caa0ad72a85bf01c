"""Datasets (Parquet, CIFAR-10 folders, any fsspec URL), splits and augmentation."""

from nf_dist.data.readers import ImageDataset, load_dataset
from nf_dist.data.splits import paper_splits, stratified_split

__all__ = ["ImageDataset", "load_dataset", "paper_splits", "stratified_split"]
