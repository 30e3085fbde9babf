"""Sequences of N views with a frame-gap curriculum (Spann3R's sampler), and the base of the
datasets whose items are such sequences.

`sample_frames` picks `num_views` increasing positions in a sequence of `length` frames so that
consecutive picks are at most `max_gap` frames apart: the first uniformly among the positions that
leave room for the rest, each next one uniformly among the next `max_gap` positions that still
leave room for the remaining picks; the order is then reversed with probability `reverse_prob`.

The gap follows a curriculum: `max_gap = int(min_thresh + ratio * (max_thresh - min_thresh))`,
where the ratio is a formula over the epoch (`ratio_schedule`, default Spann3R's: rising from 0
to 1 over the first 37.5 % of the epochs, 1 until 75 %, then falling to 0.5 at the end), set by
the per-epoch hook (data/epoch_hooks.py) through `on_epoch_start(epoch, max_epochs)`.

Randomness comes from a torch.Generator seeded by (epoch_seed, draw), which the mixing batch
sampler and the combinators pass down (data/mixing/combinators.py; an int index is seed 0): the
same item of the same epoch is the same in every run and every DataLoader worker. The draw is
the index the batch sampler addressed, so a component the sampler cycles through more than once
in an epoch (batches_per_epoch asking for more items than it has) repeats its samples in the
later passes; `N @ dataset` with N at least the epoch's draws gives every draw its own index.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Collection, List, Optional, Sequence, Tuple, Union

import torch

from recon_trainer.config import ConfigError
from recon_trainer.config.expressions import Expression
from recon_trainer.data.file_check import DataFile, without
from recon_trainer.data.mixing.base import MixableDataset
from recon_trainer.data.mixing.combinators import split_draw
from recon_trainer.data.mixing.permutation import mix64
from recon_trainer.data.records import SequenceRecord, ViewRecord
from recon_trainer.data.transforms import get_transform

# Spann3R's curriculum (spann3r/training.py): the frame-gap ratio of each epoch.
SPANN3R_RATIO_SCHEDULE = (
    "min(1, 2*epoch/max_epochs) if epoch < 0.75*max_epochs else max(0.5, 1 - (epoch/max_epochs - 0.75)/0.25)"
)
SCHEDULE_VARIABLES = ("epoch", "max_epochs")
_SEED_MASK = (1 << 63) - 1


def frame_gap(ratio: float, min_thresh: int, max_thresh: int) -> int:
    """The largest gap between consecutive sampled frames for `ratio` in [0, 1]:
    int(min_thresh + ratio * (max_thresh - min_thresh)) (truncated, as Spann3R), at least 1."""
    return max(1, int(min_thresh + ratio * (max_thresh - min_thresh)))


def item_generator(seed: int, draw: int) -> torch.Generator:
    """A torch.Generator for one item: seeded by a hash of (epoch_seed, draw)."""
    return torch.Generator().manual_seed(mix64(mix64(seed & ((1 << 64) - 1)) ^ (draw & ((1 << 64) - 1))) & _SEED_MASK)


def _randint(low: int, high: int, generator: Optional[torch.Generator]) -> int:
    """Uniform integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def sample_frames(
    length: int, num_views: int, max_gap: int, generator: Optional[torch.Generator] = None,
    reverse_prob: float = 0.5,
) -> List[int]:
    """`num_views` positions in range(length), increasing, consecutive ones at most `max_gap`
    apart, reversed with probability `reverse_prob` (module doc). generator None: torch's global
    RNG. ValueError when the sequence has fewer than num_views frames."""
    if num_views < 1 or max_gap < 1:
        raise ValueError(f"sample_frames: num_views and max_gap must be >= 1, got {num_views} and {max_gap}")
    if length < num_views:
        raise ValueError(f"sample_frames: a sequence of {length} frames has fewer than num_views={num_views}")
    # Spann3R's first-pick range: every start from which the other picks fit at the largest gap
    # (and at least the first length // num_views positions); any start <= length - num_views works.
    first_range = max(length // num_views, length - max_gap * (num_views - 1))
    picks = [_randint(0, min(first_range, length - num_views + 1) - 1, generator)]
    while len(picks) < num_views:
        remaining = num_views - len(picks)
        highest = min(picks[-1] + max_gap, length - remaining)
        picks.append(_randint(picks[-1] + 1, highest, generator))
    if reverse_prob > 0 and float(torch.rand((), generator=generator)) < reverse_prob:
        picks.reverse()
    return picks


@dataclasses.dataclass(frozen=True)
class SequenceEntry:
    """One sequence of a SequenceDataset: its id and its frames' ids in temporal order (whatever
    the subclass's load_frame takes: frame numbers, file stems, timestamps)."""

    name: str
    frames: Tuple[Any, ...]


class SequenceDataset(MixableDataset):
    """Base of datasets whose items are SequenceRecords of `num_views` views (not registered itself).

    A subclass lists its sequences (`list_sequences`, called once in __post_init__) and loads one
    frame as a ViewRecord (`load_frame`); `frame_files` lets the data check before training
    (data/file_check.py) see the files. Item i is a sample of sequence i // items_per_sequence
    (module doc for the sampling); `full_video` takes every kf_every-th frame instead (evaluation,
    as Spann3R's full_video / kf_every). Each view's image goes through `transform` (a named
    transform, data/transforms.py) with the item's generator.
    """

    TAKES_EPOCH_SEED: ClassVar[bool] = True

    num_views: int = 5  # views per item (Spann3R's num_frames)
    min_thresh: int = 10  # largest gap between consecutive sampled frames at ratio 0
    max_thresh: int = 100  # largest gap between consecutive sampled frames at ratio 1
    ratio_schedule: str = SPANN3R_RATIO_SCHEDULE  # gap ratio per epoch, a formula in epoch and max_epochs (clamped to [0, 1])
    initial_ratio: float = 1.0  # gap ratio before the first on_epoch_start (e.g. outside a training loop)
    random_reverse: bool = True  # reverse the sampled order with probability 1/2
    items_per_sequence: int = 1  # items per sequence (Spann3R's num_seq)
    full_video: bool = False  # every kf_every-th frame of the sequence instead of num_views sampled ones
    kf_every: int = 1  # with full_video: the step between frames
    transform: str = "ImgNorm"  # named image transform applied to each view (ImgNorm: none, ColorJitter)

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("num_views", "min_thresh", "max_thresh", "items_per_sequence", "kf_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_thresh < self.min_thresh:
            raise ConfigError(f"{name}.max_thresh={self.max_thresh} is below min_thresh={self.min_thresh}")
        if not 0.0 <= self.initial_ratio <= 1.0:
            raise ConfigError(f"{name}.initial_ratio must be in [0, 1], got {self.initial_ratio}")
        self._schedule = Expression(self.ratio_schedule, SCHEDULE_VARIABLES, f"{name}.ratio_schedule")
        self._transform = get_transform(self.transform, f"{name}.transform")
        self.ratio = float(self.initial_ratio)
        sequences = [s for s in self.list_sequences() if self.full_video or len(s.frames) >= self.num_views]
        if not sequences:
            raise ConfigError(f"{self.label()}: no sequence with at least num_views={self.num_views} frames")
        self._sequences = sequences

    @abc.abstractmethod
    def list_sequences(self) -> List[SequenceEntry]:
        """The sequences (sorted); raises ConfigError naming the missing file or folder when the
        layout is not there. Sequences shorter than num_views are left out."""

    @abc.abstractmethod
    def load_frame(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        """Read one frame of `sequence` from disk; a malformed file raises DataFileError naming it."""

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        """The files load_frame reads; the default () leaves the items unchecked."""
        return ()

    @property
    def sequences(self) -> List[SequenceEntry]:
        """The sequences items are drawn from."""
        return list(self._sequences)

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Set the gap ratio of this epoch from ratio_schedule (clamped to [0, 1])."""
        value = float(self._schedule(epoch=epoch, max_epochs=max(1, max_epochs)))
        self.ratio = min(1.0, max(0.0, value))

    def max_gap(self) -> int:
        """The largest gap between consecutive sampled frames at the current ratio."""
        return frame_gap(self.ratio, self.min_thresh, self.max_thresh)

    def choose_frames(self, sequence: SequenceEntry, generator: torch.Generator) -> List[Any]:
        """The frame ids of one item of `sequence` (module doc)."""
        if self.full_video:
            return list(sequence.frames[:: self.kf_every])
        picks = sample_frames(len(sequence.frames), self.num_views, self.max_gap(), generator,
                              0.5 if self.random_reverse else 0.0)
        return [sequence.frames[k] for k in picks]

    def __len__(self) -> int:
        return len(self._sequences) * self.items_per_sequence

    def __getitem__(self, index: Union[int, Tuple[int, ...]]) -> SequenceRecord:
        position, seed, draw = split_draw(index)
        if not 0 <= position < len(self):
            raise IndexError(f"{self.label()}: index {position} out of range [0, {len(self)})")
        sequence = self._sequences[position // self.items_per_sequence]
        generator = item_generator(seed, draw)
        frames = self.choose_frames(sequence, generator)
        views = []
        for frame in frames:
            view = self.load_frame(sequence, frame)
            view.image = self._transform(view.image, generator)
            if not view.dataset:
                view.dataset = self.label()
            views.append(view)
        return SequenceRecord(views, sequence.name, self.label(), {"max_gap": self.max_gap(), "ratio": self.ratio})

    def item_files(self, index: int) -> Sequence[DataFile]:
        """Every file of the item's sequence (any of its frames may be drawn) (CheckableDataset)."""
        sequence = self._sequences[index // self.items_per_sequence]
        return [file for frame in sequence.frames for file in self.frame_files(sequence, frame)]

    def drop_items(self, indices: Collection[int]) -> None:
        """Remove the sequences of these items (CheckableDataset; with items_per_sequence > 1 the
        whole sequence goes, so the other items keep their order)."""
        dropped = {index // self.items_per_sequence for index in indices}
        self._sequences = without(self._sequences, dropped)
