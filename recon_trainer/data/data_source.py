"""The data_source slot of Experiment: what the data is and how it is batched."""
import abc
import dataclasses
from typing import Any, Optional, Tuple

from recon_trainer.config import ReplaceableBase


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


class DataSourceBase(ReplaceableBase):
    """Where the data comes from: builds the datasets of each split and their loaders."""

    @abc.abstractmethod
    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        """The datasets and the loaders over them."""
