"""Map-style combinators of datasets: `N @ ds`, `k * ds` and `a + b` of a mixing expression.

An index is an int, a tuple (index, epoch_seed) or a tuple (index, epoch_seed, draw). Combinators
pass the seed down (the ResizedDataset picks its permutation with it); an int index means seed 0.
`draw` identifies the item drawn: the index at the outermost combinator (where the batch sampler
addressed it), passed down unchanged, so that the 200 draws of one sequence in `10000 @ Co3d(...)`
(50 sequences) are told apart. A dataset below them gets a plain int, unless it sets the class
attribute TAKES_EPOCH_SEED: then it gets (index, epoch_seed, draw) and can seed its own random
choices with them (data/sampling/sequences.py), the same in every DataLoader worker.

No epoch state is kept, so they work unchanged in DataLoader workers. The per-epoch hook
(data/epoch_hooks.py) reaches the datasets below every combinator through `children` (a
ConcatDataset's terms, the one dataset of `N @` and `k *`): unlike DUSt3R's MulDataset, which
forwarded neither set_epoch nor set_ratio, `k * ds` passes `on_epoch_start` on like the others.
"""
from __future__ import annotations

import abc
import bisect
from typing import Any, List, Sequence, Tuple, Union

from torch.utils.data import Dataset

from recon_trainer.data.mixing.permutation import LazyPermutation

Index = Union[int, Tuple[int, int], Tuple[int, int, int]]


def split_index(index: Index) -> Tuple[int, int]:
    """(index, epoch_seed) of an int or a tuple index (an int has seed 0)."""
    position, seed, _ = split_draw(index)
    return position, seed


def split_draw(index: Index) -> Tuple[int, int, int]:
    """(index, epoch_seed, draw) of an int or a tuple index: an int has seed 0, and a tuple
    without a draw is the draw of its own index."""
    if isinstance(index, tuple):
        if len(index) == 3:
            position, seed, draw = index
            return int(position), int(seed), int(draw)
        position, seed = index
        return int(position), int(seed), int(position)
    return int(index), 0, int(index)


def takes_epoch_seed(dataset: Any) -> bool:
    """Whether `dataset` is indexed with (index, epoch_seed, draw) (a combinator, or a dataset
    whose class sets TAKES_EPOCH_SEED) rather than a plain int."""
    return isinstance(dataset, MixtureNode) or bool(getattr(dataset, "TAKES_EPOCH_SEED", False))


def label_of(dataset: Any) -> str:
    """A dataset's `label()`, or its class name when it has none."""
    label = getattr(dataset, "label", None)
    return label() if callable(label) else type(dataset).__name__


class MixtureNode(Dataset, abc.ABC):
    """Base of the combinators: range checks and passing the seed to the dataset below."""

    @abc.abstractmethod
    def label(self) -> str:
        """The label of the dataset below (a concatenation joins its children's with '+')."""

    @property
    def children(self) -> List[Any]:
        """The datasets directly below (the per-epoch hook visits them)."""
        return [self.dataset]

    def _position(self, index: Index) -> Tuple[int, int, int]:
        position, seed, draw = split_draw(index)
        if not 0 <= position < len(self):
            raise IndexError(f"{type(self).__name__} ({self.label()}): index {position} out of range [0, {len(self)})")
        return position, seed, draw

    @staticmethod
    def _fetch(dataset: Any, position: int, seed: int, draw: int) -> Any:
        return dataset[(position, seed, draw)] if takes_epoch_seed(dataset) else dataset[position]


class ResizedDataset(MixtureNode):
    """`n @ dataset`: n items; item i is perm[i % len(dataset)] for a permutation of the dataset
    drawn from the epoch seed, so it subsamples (n < len) or repeats (n > len) the dataset and
    draws other items in another epoch. The permutation is lazy: memory does not grow with n
    or with the length of the dataset."""

    def __init__(self, n: int, dataset: Any) -> None:
        if type(n) is not int or n < 1:
            raise ValueError(f"ResizedDataset: the size must be a positive integer, got {n!r}")
        if len(dataset) == 0:
            raise ValueError(f"ResizedDataset: {label_of(dataset)} is empty")
        self.n, self.dataset = n, dataset

    def __len__(self) -> int:
        return self.n

    def label(self) -> str:
        return label_of(self.dataset)

    def permutation(self, seed: int) -> LazyPermutation:
        """The order of the dataset's items in the epoch with this seed (indexable, len(dataset))."""
        return LazyPermutation(len(self.dataset), seed)

    def __getitem__(self, index: Index) -> Any:
        position, seed, draw = self._position(index)
        permutation = self.permutation(seed)
        return self._fetch(self.dataset, permutation[position % len(permutation)], seed, draw)


class RepeatedDataset(MixtureNode):
    """`k * dataset`: k * len items; item i is dataset item i // k (each repeated k times in a row)."""

    def __init__(self, k: int, dataset: Any) -> None:
        if type(k) is not int or k < 1:
            raise ValueError(f"RepeatedDataset: the factor must be a positive integer, got {k!r}")
        self.k, self.dataset = k, dataset

    def __len__(self) -> int:
        return self.k * len(self.dataset)

    def label(self) -> str:
        return label_of(self.dataset)

    def __getitem__(self, index: Index) -> Any:
        position, seed, draw = self._position(index)
        return self._fetch(self.dataset, position // self.k, seed, draw)


class ConcatDataset(MixtureNode):
    """`a + b + ...`: the children one after the other; each child is a component."""

    def __init__(self, children: Sequence[Any]) -> None:
        if not children:
            raise ValueError("ConcatDataset: needs at least one dataset")
        self._children = list(children)
        self._ends: List[int] = []
        for child in self.children:
            self._ends.append((self._ends[-1] if self._ends else 0) + len(child))

    def __len__(self) -> int:
        return self._ends[-1]

    @property
    def children(self) -> List[Any]:
        """The terms, in order."""
        return self._children

    @property
    def component_sizes(self) -> List[int]:
        """The length of each child."""
        return [len(child) for child in self.children]

    def labels(self) -> List[str]:
        """Each child's label, in order."""
        return [label_of(child) for child in self.children]

    def label(self) -> str:
        return "+".join(self.labels())

    def component_of(self, index: Index) -> int:
        """Which child holds the item `index`."""
        position, _, _ = self._position(index)
        return bisect.bisect_right(self._ends, position)

    def __getitem__(self, index: Index) -> Any:
        position, seed, draw = self._position(index)
        component = bisect.bisect_right(self._ends, position)
        start = self._ends[component - 1] if component > 0 else 0
        return self._fetch(self.children[component], position - start, seed, draw)
