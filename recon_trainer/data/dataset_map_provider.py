"""The dataset_map_provider slot of ReconDataSource: which frames make up train, val and test."""
from __future__ import annotations

import abc
from typing import Optional

from recon_trainer.config import ReplaceableBase
from recon_trainer.data.splits import DatasetMap


class DatasetMapProviderBase(ReplaceableBase):
    """Builds the train / val / test datasets; their items are single-frame FrameData.

    `PATH_FIELD` names the config field that `data_path()` reads, for messages to users.
    """

    PATH_FIELD = "base_dir"

    @abc.abstractmethod
    def get_dataset_map(self) -> DatasetMap:
        """The datasets of each split (None for a split the provider does not have)."""

    def file_map(self) -> Optional[DatasetMap]:
        """Each split's items as a CheckableDataset (data/file_check.py) before anything is
        loaded, for the data check before training; items dropped from them are left out of
        get_dataset_map's datasets. None (the default): the provider reads no files item by item."""
        return None

    @abc.abstractmethod
    def data_path(self) -> Optional[str]:
        """The folder the data comes from, or None when the user gave none (then ReconDataSource
        falls back to the built-in scene)."""
