"""Habitat multi-view sets (CroCo's renders, data/formats/habitat.py), as Spann3R's `habitat` and
DUSt3R's `Habitat` read them.

    10000 @ habitat(split='train', ROOT='data/habitat_5frame', resolution=224, transform=ColorJitter)
    100_000 @ Habitat(1_000_000, split='train', ROOT='data/habitat_processed', aug_crop=16, resolution=224)

An item is one set of 5 covisible views (a "sequence" here). Without `size` (Spann3R) the sets are
found by walking ROOT/<data>/<scene> and only sets numbered below sets_per_scene are used (Spann3R's
num_seq, default 200; `split` is not used: ROOT is the split's folder); with `size` (DUSt3R's first
positional argument) they are the lines of ROOT/Habitat_<size>_scenes_<split>.txt, each taken to
have views 1..5. The views of an item are view 1 (covisible with every other view, as DUSt3R picks
it) and num_views - 1 others drawn at random, in a random order (Spann3R shuffles views 1..num_frames);
full_video: every view of the set in order.
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import habitat as habitat_format
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry


@registry.register
class Habitat(CroppedSequences):
    """Habitat 5-view sets, one set per item (module doc)."""

    EXPRESSION_ALIASES = ("habitat",)
    POSITIONAL_FIELDS: ClassVar[Tuple[str, ...]] = ("size",)
    KEYWORD_ALIASES: ClassVar[Dict[str, str]] = {"num_frames": "num_views", "num_seq": "sets_per_scene"}

    size: Optional[int] = None  # DUSt3R: read ROOT/Habitat_<size>_scenes_<split>.txt; None: walk ROOT (Spann3R)
    sets_per_scene: Optional[int] = 200  # without size: the sets numbered below this per scene (Spann3R's num_seq)

    def __post_init__(self) -> None:
        if self.sets_per_scene is not None and self.sets_per_scene < 1:
            raise ConfigError(f"{type(self).__name__}.sets_per_scene must be >= 1, got {self.sets_per_scene}")
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        views = tuple(range(1, habitat_format.VIEWS_PER_SET + 1))
        if self.size is not None:
            prefixes = self.scene_ids(lambda: habitat_format.list_set_file(self.ROOT, self.size, self.split))
            return [SequenceEntry(prefix, views) for prefix in prefixes]
        sets = habitat_format.list_sets(self.ROOT)
        if self.test_id is not None:
            return [SequenceEntry(prefix, tuple(sets.get(prefix, views))) for prefix in self.scene_ids([])]
        limit = self.sets_per_scene
        return [SequenceEntry(prefix, tuple(found)) for prefix, found in sets.items()
                if limit is None or int(prefix.rsplit("/", 1)[-1]) < limit]

    def choose_frames(self, sequence: SequenceEntry, generator: torch.Generator) -> List[Any]:
        if self.full_video:
            return list(sequence.frames[:: self.kf_every])
        first, others = sequence.frames[0], sequence.frames[1:]
        order = torch.randperm(len(others), generator=generator)[: self.num_views - 1]
        picked = [first] + [others[int(i)] for i in order]
        return [picked[int(i)] for i in torch.randperm(len(picked), generator=generator)]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        return habitat_format.read_view(self.ROOT, sequence.name, frame, self.label())

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = habitat_format.view_paths(self.ROOT, sequence.name, frame)
        return [DataFile(paths["image"], "image"), DataFile(paths["depth"], "file"), DataFile(paths["camera"], "file")]
