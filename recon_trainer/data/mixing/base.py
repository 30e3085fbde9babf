"""MixableDataset: the namespace of datasets that a mixing expression can name."""
from __future__ import annotations

import abc
from typing import Any, ClassVar, Collection, Dict, Sequence, Tuple

from recon_trainer.config import ReplaceableBase


class MixableDataset(ReplaceableBase):
    """A map-style dataset selectable by name in a mixing expression.

    `"1000 @ ReDWeb(root='ReDWeb_V1', training_crop=384)"` builds the registered subclass
    ReDWeb with those config fields. Fields named in PATH_FIELDS that hold a relative path are
    joined to the data source's data_root. `name` labels the dataset in results and in the
    mixing statistics.

    POSITIONAL_FIELDS names the fields that positional arguments fill, in order: with
    `("size",)`, `Habitat(1_000_000, split='train')` is `Habitat(size=1_000_000, split='train')`
    (DUSt3R's spelling); more positional arguments than names is a ConfigError.
    A subclass that sets TAKES_EPOCH_SEED = True is indexed with (index, epoch_seed, draw)
    by the combinators (data/mixing/combinators.py) instead of a plain int.

    EXPRESSION_ALIASES are other names an expression finds the class by (another code base's
    spelling, e.g. ("ARKitScenes",)); a term written with an alias is labelled by that alias
    unless it sets `name`. KEYWORD_ALIASES map keywords an expression may write to the fields they
    set (e.g. {"num_frames": "num_views"}).
    """

    PATH_FIELDS: ClassVar[Tuple[str, ...]] = ()
    POSITIONAL_FIELDS: ClassVar[Tuple[str, ...]] = ()
    EXPRESSION_ALIASES: ClassVar[Tuple[str, ...]] = ()
    KEYWORD_ALIASES: ClassVar[Dict[str, str]] = {}
    TAKES_EPOCH_SEED: ClassVar[bool] = False

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


class ListedDataset(MixableDataset):
    """A MixableDataset over a listing made before anything is loaded: `list_items()` returns it
    (anything with len, `item_files(i)` and `drop_items(indices)`, e.g. file_check.FileItems), kept
    as `_listing`, and `read_item(i)` loads item i. The data check sees the listing's files
    (CheckableDataset) and drops from it. Not registered itself."""

    def __post_init__(self) -> None:
        self._listing = self.list_items()

    @abc.abstractmethod
    def list_items(self) -> Any:
        """The listing (class doc); raises ConfigError naming what is missing."""

    @abc.abstractmethod
    def read_item(self, index: int) -> Any:
        """Item `index` of the listing, read from disk."""

    def __len__(self) -> int:
        return len(self._listing)

    def __getitem__(self, index: int) -> Any:
        return self.read_item(index)

    def item_files(self, index: int) -> Sequence[Any]:
        """The files item `index` reads (CheckableDataset)."""
        return self._listing.item_files(index)

    def drop_items(self, indices: Collection[int]) -> None:
        """Remove these items (CheckableDataset)."""
        self._listing.drop_items(indices)
