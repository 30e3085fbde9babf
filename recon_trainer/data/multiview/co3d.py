"""Co3d: CO3D v2 sequences as DUSt3R's preprocessing writes them (data/formats/co3d_dust3r.py),
sampled as Spann3R's Co3d.

    10000 @ Co3d(split='train', ROOT='data/co3d_preprocessed_50', resolution=224, num_frames=5, mask_bg='rand')

Frames of a sequence are positions in its selected_seqs_<split>.json list. Two samplers:

- use_comb (Spann3R's default; DUSt3R's Co3d with num_frames=2): a combination of num_frames
  increasing positions in range(comb_frames) whose consecutive gaps are multiples of 5 in
  (lb, ub], each position jittered by a uniform integer in [-4, 4] and clamped to the sequence;
  the order is kept. Each sequence has one item per combination (num_seq is overridden). The
  original takes combination (item index mod their count); here each draw picks one uniformly
  (the same distribution: `N @ Co3d` permutes the items uniformly).
- otherwise the gap-curriculum sampler of SequenceDataset (num_seq items per sequence).

mask_bg: True zeroes the depth outside the object mask, 'rand' does so for half the items (one
coin per item), False reads no mask. A frame whose cropped depth has no valid pixel is remembered
(per worker, as the original) and later draws take the nearest remembered-valid position in a
random direction instead. A draw is redrawn when its views' maximum_depth values span a ratio
over 100, or the largest is over 10 times the first's.

Not as the original: full_video / kf_every are honoured (Spann3R's Co3d ignores them); test_id is
not a field here (scene_class / scene_id select sequences, as the original).
"""
from __future__ import annotations

import functools
from typing import Any, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import co3d_dust3r
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry

COMB_STEP = 5  # combination gaps are multiples of this
JITTER = 4  # combination positions move by up to this many frames
MAX_DEPTH_SPAN = 100.0  # a draw's maximum_depth max / min may not exceed this
MAX_DEPTH_OVER_FIRST = 10.0  # nor its max / the first view's


@functools.lru_cache(maxsize=16)
def frame_combinations(num_frames: int, comb_frames: int, lb: int, ub: int) -> np.ndarray:
    """(C, num_frames) int64: every increasing num_frames-tuple of range(comb_frames) whose consecutive
    gaps g satisfy lb < g <= ub and g % 5 == 0, in lexicographic order (itertools.combinations filtered,
    as the original, without enumerating all tuples)."""
    gaps = [g for g in range(1, max(ub, 0) + 1) if lb < g and g % COMB_STEP == 0]
    rows: List[Tuple[int, ...]] = []

    def extend(prefix: Tuple[int, ...]) -> None:
        if len(prefix) == num_frames:
            rows.append(prefix)
            return
        for gap in gaps:
            if prefix[-1] + gap < comb_frames:
                extend(prefix + (prefix[-1] + gap,))

    for start in range(comb_frames):
        extend((start,))
    return np.asarray(rows, dtype=np.int64).reshape(-1, num_frames)


def depth_span_ok(maxima: Sequence[float]) -> bool:
    """Spann3R's rejection of a draw by its views' largest depths (first view first): False when
    max / min > 100 or max / first > 10."""
    if not maxima:
        return True
    low, high, first = min(maxima), max(maxima), maxima[0]
    if low <= 0 or first <= 0:
        return False
    return high / low <= MAX_DEPTH_SPAN and high / first <= MAX_DEPTH_OVER_FIRST


@registry.register
class Co3d(CroppedSequences):
    """CO3D v2 in DUSt3R's preprocessed layout, sampled as Spann3R (module doc)."""

    items_per_sequence: int = 100  # items per sequence without use_comb (Spann3R's num_seq)
    min_thresh: int = 5  # largest gap between consecutive sampled frames at ratio 0 (without use_comb)
    max_thresh: int = 20  # largest gap between consecutive sampled frames at ratio 1 (without use_comb)
    mask_bg: Any = True  # True, False or 'rand': zero the depth outside the object mask (always, never, per item)
    use_comb: bool = True  # combination sampler (module doc) instead of the gap curriculum
    lb: int = 0  # combination gaps are > lb
    ub: int = 30  # combination gaps are <= ub
    comb_frames: int = 100  # combinations span positions 0..comb_frames-1 (CO3D's preprocessed sequences: 100)
    scene_class: Optional[str] = None  # only this category
    scene_id: Optional[str] = None  # only this sequence id

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.mask_bg not in (True, False, "rand"):
            raise ConfigError(f"{name}.mask_bg={self.mask_bg!r}: expected True, False or 'rand'")
        if self.test_id is not None:
            raise ConfigError(f"{name}.test_id={self.test_id!r}: Co3d selects sequences by scene_class / scene_id")
        self._combinations = None
        if self.use_comb and not self.full_video:
            self._combinations = frame_combinations(self.num_views, self.comb_frames, self.lb, self.ub)
            if not len(self._combinations):
                raise ConfigError(f"{name}: no combination of num_frames={self.num_views} positions in "
                                  f"range(comb_frames={self.comb_frames}) with gaps in ({self.lb}, {self.ub}] "
                                  f"that are multiples of {COMB_STEP}")
            self.items_per_sequence = len(self._combinations)
        self._invalid: Set[Tuple[str, int]] = set()  # (sequence, frame) whose cropped depth was empty
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        selection = co3d_dust3r.read_selected_sequences(self.ROOT, self.split)
        return [SequenceEntry(f"{category}/{sequence}", tuple(frames))
                for (category, sequence), frames in selection.items()
                if (self.scene_class is None or category == self.scene_class)
                and (self.scene_id is None or sequence == self.scene_id)]

    def choose_frames(self, sequence: SequenceEntry, generator: torch.Generator) -> List[Any]:
        """(frame number, mask the background) pairs of one draw (module doc)."""
        if self._combinations is None:
            numbers = super().choose_frames(sequence, generator)
            positions = [sequence.frames.index(n) for n in numbers]
        else:
            combination = self._combinations[int(torch.randint(0, len(self._combinations), (),
                                                               generator=generator))]
            jitter = torch.randint(-JITTER, JITTER + 1, (len(combination),), generator=generator).tolist()
            last = len(sequence.frames) - 1
            positions = [max(0, min(int(p) + j, last)) for p, j in zip(combination, jitter)]
        mask = self.mask_bg is True or (self.mask_bg == "rand" and bool(torch.randint(0, 2, (), generator=generator)))
        return [(sequence.frames[self._valid_position(sequence, p, generator)], mask) for p in positions]

    def _valid_position(self, sequence: SequenceEntry, position: int, generator: torch.Generator) -> int:
        """`position`, or when its frame is remembered invalid the nearest position in a random
        direction (cyclic) whose frame is not."""
        if (sequence.name, sequence.frames[position]) not in self._invalid:
            return position
        direction = 1 if bool(torch.randint(0, 2, (), generator=generator)) else -1
        for offset in range(1, len(sequence.frames)):
            candidate = (position + direction * offset) % len(sequence.frames)
            if (sequence.name, sequence.frames[candidate]) not in self._invalid:
                return candidate
        return position

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        number, mask_background = frame
        category, name = sequence.name.split("/", 1)
        view = co3d_dust3r.read_frame(self.ROOT, category, name, number, with_mask=self.mask_bg is not False)
        if mask_background:
            view.depth = view.depth * view.mask_fg
        return view

    def view_usable(self, view: ViewRecord) -> bool:
        usable = super().view_usable(view)
        if not usable:
            self._invalid.add((view.sequence, int(view.frame)))
        return usable

    def _load_views(self, sequence: SequenceEntry, generator: torch.Generator) -> List[ViewRecord]:
        views = super()._load_views(sequence, generator)
        return views if depth_span_ok([float(v.extras["maximum_depth"]) for v in views]) else []

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        category, name = sequence.name.split("/", 1)
        paths = co3d_dust3r.frame_paths(self.ROOT, category, name, frame)
        keys = ("image", "meta", "depth", "mask") if self.mask_bg is not False else ("image", "meta", "depth")
        return [DataFile(paths[key]) for key in keys]
