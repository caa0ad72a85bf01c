"""Where the data is, how it is split, and the loaded splits every job trains on."""

from __future__ import annotations

from dataclasses import dataclass, replace

from nf_dist.data.readers import ImageDataset, load_dataset
from nf_dist.data.splits import paper_splits, stratified_split
from nf_dist.storage.uri import absolute_uri


@dataclass(frozen=True)
class DataConfig:
    """Dataset locations and split sizes (None = the paper's full sizes).

    Attributes:
        train_uri, test_uri: CIFAR-10 train and test sets (Parquet or a CIFAR-10 folder).
        split_seed: seed of the stratified splits (recorded with every artefact).
        half_size: images per training half (paper: 25,000).
        finetune_size, test_size: the test split's fine-tuning and test parts (paper: 5,000 each).
        query_uri: out-of-distribution images that Knockoff queries with (None: no Knockoff).
        query_size: how many query images to use (None: all), a stratified subset.
        query_image_size: query images are resized to this square size (CIFAR: 32).
        cache_dir: where decoded arrays are cached (default ``$NF_DIST_CACHE``).
    """

    train_uri: str = "../shared/data/cifar10/train.parquet"
    test_uri: str = "../shared/data/cifar10/test.parquet"
    split_seed: int = 0
    half_size: int | None = None
    finetune_size: int | None = None
    test_size: int | None = None
    query_uri: str | None = None
    query_size: int | None = None
    query_image_size: int = 32
    cache_dir: str | None = None

    def absolute(self) -> DataConfig:
        """The same config with local relative paths made absolute (for worker processes, whose
        working directory differs from the driver's)."""
        return replace(
            self,
            train_uri=absolute_uri(self.train_uri),
            test_uri=absolute_uri(self.test_uri),
            query_uri=absolute_uri(self.query_uri) if self.query_uri else None,
            cache_dir=absolute_uri(self.cache_dir) if self.cache_dir else None,
        )


@dataclass(frozen=True)
class Splits:
    """The paper's splits: training halves ``a`` and ``b``, fine-tuning and test sets, and the
    optional Knockoff query set."""

    half_a: ImageDataset
    half_b: ImageDataset
    finetune: ImageDataset
    test: ImageDataset
    query: ImageDataset | None = None

    def half(self, name: str) -> ImageDataset:
        """Training half ``a`` or ``b``."""
        return self.half_a if name == "a" else self.half_b


def load_splits(config: DataConfig, *, with_query: bool = True) -> Splits:
    """Decode (or read from cache) the datasets and cut the paper's splits.

    Raises:
        DataError: a missing or corrupt file, a missing column or an out-of-range label.
    """
    train = load_dataset(config.train_uri, cache_dir=config.cache_dir)
    test_split = load_dataset(config.test_uri, split="test", cache_dir=config.cache_dir)
    parts = paper_splits(
        train.labels,
        test_split.labels,
        config.split_seed,
        half_size=config.half_size,
        finetune_size=config.finetune_size,
        test_size=config.test_size,
    )
    query = None
    if with_query and config.query_uri is not None:
        query = load_dataset(
            config.query_uri, image_size=config.query_image_size, cache_dir=config.cache_dir
        )
        if config.query_size is not None and config.query_size < len(query):
            (keep,) = stratified_split(query.labels, [config.query_size], config.split_seed)
            query = query.subset(keep, "query")
    return Splits(
        half_a=train.subset(parts["half_a"], "half_a"),
        half_b=train.subset(parts["half_b"], "half_b"),
        finetune=test_split.subset(parts["finetune"], "finetune"),
        test=test_split.subset(parts["test"], "test"),
        query=query,
    )
