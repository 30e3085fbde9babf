"""DTU: MVSNet's DTU test scans with rendered depth and object masks (data/formats/dtu.py), as
Spann3R's DTU evaluates on them.

    DTU(split='test', ROOT='data/dtu_test', resolution=224, num_seq=1, full_video=True, kf_every=5)

Every scan folder under ROOT is a sequence (sorted; test_id: only these), whatever the split;
its frames are the sorted image names. full_video takes every kf_every-th image and, as the
original (which pops them from the end of the list), returns them in reverse order. Otherwise a
draw takes a random view cluster of pair.txt: its reference view, then its first num_frames - 1
neighbours (the original meant this, with num_frames neighbours, but its `sample_pairs` flag
shadows the method, so only full_video runs there). Lengths are DTU's millimetres.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from recon_trainer.config import registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import blendedmvs, dtu
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry
from recon_trainer.errors import DataFileError


@registry.register
class DTU(CroppedSequences):
    """DTU test scans, an evaluation set (module doc)."""

    items_per_sequence: int = 49  # items per scan (Spann3R's num_seq: one per view of the 49)
    min_thresh: int = 10  # Spann3R's default; unused (full_video or pair.txt clusters)
    max_thresh: int = 30  # Spann3R's default; unused (full_video or pair.txt clusters)

    def __post_init__(self) -> None:
        self._pair_cache: Dict[str, List[blendedmvs.Cluster]] = {}
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        scans = self.scene_ids(dtu.list_scans(self.ROOT))
        return [SequenceEntry(scan, tuple(dtu.list_images(self.ROOT, scan))) for scan in scans]

    def choose_frames(self, sequence: SequenceEntry, generator: torch.Generator) -> List[Any]:
        """Reversed every-kf_every-th image names (full_video), or a pair.txt cluster (module doc)."""
        if self.full_video:
            return list(reversed(sequence.frames[:: self.kf_every]))
        if sequence.name not in self._pair_cache:
            self._pair_cache[sequence.name] = blendedmvs.read_pair_file(dtu.pair_path(self.ROOT, sequence.name))
        clusters = self._pair_cache[sequence.name]
        if not clusters:
            raise DataFileError(f"{dtu.pair_path(self.ROOT, sequence.name)}: no view cluster")
        reference, neighbours = clusters[int(torch.randint(0, len(clusters), (), generator=generator))]
        if len(neighbours) < self.num_views - 1:
            raise DataFileError(f"{dtu.pair_path(self.ROOT, sequence.name)}: view {reference} has {len(neighbours)} "
                                f"neighbours, num_frames={self.num_views} needs {self.num_views - 1}")
        return [f"{view:08d}.jpg" for view in [reference] + [n for n, _ in neighbours[: self.num_views - 1]]]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        return dtu.read_frame(self.ROOT, sequence.name, str(frame))

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = dtu.frame_paths(self.ROOT, sequence.name, str(frame))
        return [DataFile(paths["image"]), DataFile(paths["depth"]), DataFile(paths["mask"]),
                DataFile(paths["cam"], "file")]
