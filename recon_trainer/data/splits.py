"""The splits of a data source and the per-split containers its slot returns."""
import dataclasses
from typing import Any, Dict, Optional

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class DatasetMap:
    """The datasets of each split; a split a source does not have is None."""

    train: Optional[Any] = None
    val: Optional[Any] = None
    test: Optional[Any] = None


@dataclasses.dataclass
class DataLoaderMap:
    """An iterable of batches for each split; a split a source does not have is None.

    test_sets: named parts of the test split, each its own loader (e.g. one per '+' term of a
    mixing expression, as DUSt3R and Spann3R evaluate them); `test` stays the whole split. The
    training loop evaluates them one by one when its `separate_test_sets` is on.
    """

    train: Optional[Any] = None
    val: Optional[Any] = None
    test: Optional[Any] = None
    test_sets: Dict[str, Any] = dataclasses.field(default_factory=dict)
