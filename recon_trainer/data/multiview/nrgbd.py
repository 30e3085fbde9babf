"""NRGBD: the Neural RGB-D scenes (data/formats/nrgbd.py), as Spann3R's NRGBD evaluates on them.

    NRGBD(split='test', ROOT='data/neural_rgbd', resolution=224, num_seq=1, full_video=True, kf_every=40)

Every scene folder under ROOT is a sequence (sorted; test_id: only these), whatever the split
(the original ignores it too); frames 0..N-1. Items are full videos (every kf_every-th frame) or
gap-curriculum draws. Frames with an invalid pose keep the original's stand-in pose (the
identity in OpenGL axes) and say so in extras["pose_valid"]. Spann3R's tuple_path is not supported.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from recon_trainer.config import registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import nrgbd
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry


@registry.register
class NRGBD(CroppedSequences):
    """Neural RGB-D scenes, an evaluation set (module doc)."""

    items_per_sequence: int = 1  # items per scene (Spann3R's num_seq)
    min_thresh: int = 10  # largest gap between consecutive sampled frames at ratio 0
    max_thresh: int = 100  # largest gap between consecutive sampled frames at ratio 1

    def __post_init__(self) -> None:
        self._poses: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        scenes = self.scene_ids(nrgbd.list_scenes(self.ROOT))
        return [SequenceEntry(scene, tuple(range(nrgbd.count_frames(self.ROOT, scene)))) for scene in scenes]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        if sequence.name not in self._poses:
            self._poses[sequence.name] = nrgbd.read_poses(nrgbd.poses_path(self.ROOT, sequence.name))
        return nrgbd.read_frame(self.ROOT, sequence.name, int(frame), self._poses[sequence.name])

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = nrgbd.frame_paths(self.ROOT, sequence.name, int(frame))
        return [DataFile(paths["image"]), DataFile(paths["depth"]),
                DataFile(nrgbd.poses_path(self.ROOT, sequence.name), "file")]
