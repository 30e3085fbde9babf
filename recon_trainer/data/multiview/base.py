"""CroppedSequences: the base of DUSt3R / Spann3R-style multi-view datasets.

A subclass lists its sequences (`list_sequences`, SequenceDataset) and reads one frame at full
size (`read_view(sequence, frame) -> ViewRecord`); the base crops and resizes every view as
DUSt3R does (data/multiview/crop.py) to `resolution`, draws frames with Spann3R's gap curriculum
(data/sampling/sequences.py) and, as Spann3R's loaders, redraws an item whose views include one
without valid depth or with a non-finite pose (`view_usable`): five more tries on the same
sequence, then on random other sequences; with full_video such views are left out instead (a
sequence without any usable view is a DataFileError).

    10000 @ Scannet(split='train', ROOT='data/scannet', resolution=224, num_frames=5, max_thresh=50)

Fields as the originals spell them: ROOT, split, resolution (224, (512, 384) or a list of (W, H):
the first is used, DUSt3R's per-batch aspect-ratio choice is not), aug_crop, seed (an int fixes
every item's draws, epoch or not: DUSt3R / Spann3R test sets use 777), test_id (scene ids used
instead of the split list); keywords num_frames / num_seq set num_views / items_per_sequence.
Views keep their orientation: a portrait view is a portrait record (DUSt3R's transposition to
landscape belongs to the batch builder).
"""
from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.mixing.combinators import split_draw
from recon_trainer.data.multiview.crop import crop_resize_like_dust3r
from recon_trainer.data.records import SequenceRecord, ViewRecord
from recon_trainer.data.sampling.sequences import SequenceDataset, SequenceEntry, item_generator
from recon_trainer.errors import DataFileError

SAME_SEQUENCE_TRIES = 6  # Spann3R: the first draw and five more on the same sequence
OTHER_SEQUENCE_TRIES = 20  # then draws on random sequences before giving up (Spann3R: unbounded)


def parse_resolution(value: Any, where: str) -> Tuple[int, int]:
    """(W, H) of DUSt3R's `resolution`: an int (square), (W, H), or a list of (W, H) (the first);
    ConfigError naming `where` otherwise or when W < H (DUSt3R's resolutions are landscape)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(f"{where}={value!r}: expected a positive int, (width, height) or a list of (width, height)")
    if value[0] < value[1]:
        raise ConfigError(f"{where}={tuple(value)}: expected width >= height (landscape, as DUSt3R)")
    return int(value[0]), int(value[1])


class CroppedSequences(SequenceDataset):
    """Base of DUSt3R-style sequence datasets (module doc); not registered itself."""

    PATH_FIELDS: ClassVar[Tuple[str, ...]] = ("ROOT",)
    KEYWORD_ALIASES: ClassVar[Dict[str, str]] = {"num_frames": "num_views", "num_seq": "items_per_sequence"}

    ROOT: str = ""  # dataset folder (relative: joined to the data source's data_root)
    split: str = "train"  # the split to read (each dataset says which it has)
    resolution: Any = 224  # output size: int (square), (width, height), or a list of them (the first is used)
    aug_crop: int = 0  # > 1: a random 0..aug_crop-1 pixels added to both sides before the final crop (DUSt3R)
    seed: Optional[int] = None  # None: draws change with the epoch; an int fixes every item's draws (test sets: 777)
    test_id: Any = None  # a scene id or a list of them, used instead of the split list (Spann3R)

    def __post_init__(self) -> None:
        name = type(self).__name__
        self._resolution = parse_resolution(self.resolution, f"{name}.resolution")
        if self.aug_crop < 0:
            raise ConfigError(f"{name}.aug_crop must be >= 0, got {self.aug_crop}")
        if not self.ROOT:
            raise ConfigError(f"{name}.ROOT is not set: give the dataset folder")
        super().__post_init__()

    @property
    def resolution_wh(self) -> Tuple[int, int]:
        """The landscape output size (W, H); portrait views get (H, W)."""
        return self._resolution

    def scene_ids(self, split_list: Union[Sequence[str], Callable[[], Sequence[str]]]) -> List[str]:
        """test_id as a list when it is set, else `split_list` (the ids a split file lists, or a
        function reading them: then the split file is only read without test_id)."""
        if self.test_id is None:
            return list(split_list() if callable(split_list) else split_list)
        return [str(s) for s in self.test_id] if isinstance(self.test_id, (list, tuple)) else [str(self.test_id)]

    @abc.abstractmethod
    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        """One frame at its stored size: image (3, H, W) in [0, 1], depth (H, W) metres (0 unknown),
        K (records' convention), camera_to_world (OpenCV); DataFileError naming a malformed file."""

    def load_frame(self, sequence: SequenceEntry, frame: Any, generator: Optional[torch.Generator] = None
                   ) -> ViewRecord:
        """read_view, cropped and resized as DUSt3R (generator: aug_crop and orientation draws;
        None: seeded 0)."""
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        return crop_resize_like_dust3r(self.read_view(sequence, frame), self._resolution, self.aug_crop, generator)

    def view_usable(self, view: ViewRecord) -> bool:
        """Whether a loaded view may enter an item: some valid depth and a finite pose (Spann3R)."""
        pose_ok = view.camera_to_world is not None and bool(torch.isfinite(view.camera_to_world).all())
        return pose_ok and (view.depth is None or bool(view.depth_valid().any()))

    def __getitem__(self, index: Union[int, Tuple[int, ...]]) -> SequenceRecord:
        position, seed, draw = split_draw(index)
        if not 0 <= position < len(self):
            raise IndexError(f"{self.label()}: index {position} out of range [0, {len(self)})")
        generator = item_generator(self.seed, position) if self.seed is not None else item_generator(seed, draw)
        sequence = self._sequences[position // self.items_per_sequence]
        for attempt in range(SAME_SEQUENCE_TRIES + OTHER_SEQUENCE_TRIES):
            if attempt >= SAME_SEQUENCE_TRIES:
                sequence = self._sequences[int(torch.randint(0, len(self._sequences), (), generator=generator))]
            views = self._load_views(sequence, generator)
            if views:
                return SequenceRecord(views, sequence.name, self.label(),
                                      {"max_gap": self.max_gap(), "ratio": self.ratio})
            if self.full_video:
                break
        raise DataFileError(f"{self.label()}: no item of usable views (valid depth, finite pose) after "
                            f"{attempt + 1} draws, last in sequence {sequence.name!r}")

    def _load_views(self, sequence: SequenceEntry, generator: torch.Generator) -> List[ViewRecord]:
        """The views of one draw from `sequence`, transformed; [] when one is not usable (full_video:
        unusable views are left out)."""
        views = []
        for frame in self.choose_frames(sequence, generator):
            view = self.load_frame(sequence, frame, generator)
            if not self.view_usable(view):
                if self.full_video:
                    continue
                return []
            view.image = self._transform(view.image, generator)
            view.dataset = view.dataset or self.label()
            views.append(view)
        return views
