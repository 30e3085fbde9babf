"""MixableDataset: the namespace of datasets that a mixing expression can name."""
from __future__ import annotations

import abc
from typing import Any, ClassVar, Tuple

from recon_trainer.config import ReplaceableBase


class MixableDataset(ReplaceableBase):
    """A map-style dataset selectable by name in a mixing expression.

    `"1000 @ ReDWeb(root='ReDWeb_V1', training_crop=384)"` builds the registered subclass
    ReDWeb with those config fields. Fields named in PATH_FIELDS that hold a relative path are
    joined to the data source's data_root. `name` labels the dataset in results and in the
    mixing statistics.
    """

    PATH_FIELDS: ClassVar[Tuple[str, ...]] = ()

    name: str = ""  # label in results and mixing statistics; "": the class name

    def label(self) -> str:
        """`name`, or the class name when it is empty."""
        return self.name or type(self).__name__

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of items."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Any:
        """Item `index` (0 <= index < len)."""
