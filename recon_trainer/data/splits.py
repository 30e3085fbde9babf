"""The splits of a data source and the per-split containers its slot returns."""
import dataclasses
from typing import Any, Optional

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class DatasetMap:
    """The datasets of each split; a split a source does not have is None."""

    train: Optional[Any] = None
    val: Optional[Any] = None
    test: Optional[Any] = None


@dataclasses.dataclass
class DataLoaderMap:
    """An iterable of batches for each split; a split a source does not have is None."""

    train: Optional[Any] = None
    val: Optional[Any] = None
    test: Optional[Any] = None
