"""ARKitScenes low-resolution RGB-D (data/formats/arkitscenes.py), as Spann3R's `ArkitScene` reads it.

    10000 @ ArkitScene(split='train', ROOT='data/arkit_lowres', resolution=224, transform=ColorJitter, max_thresh=100)

Scenes: the folders of ROOT/raw/Training (split 'train') or ROOT/raw/Validation ('val') that have
all their parts (or test_id); frames: the scene's depth maps in time order. A frame without a pose
in the trajectory is redrawn like one without valid depth (Spann3R draws another item). DUSt3R's
name `ARKitScenes` is an alias (DUSt3R's own loader reads a pre-processed layout; this class reads
Spann3R's).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import arkitscenes as arkit_format
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry


@registry.register
class ArkitScene(CroppedSequences):
    """ARKitScenes lowres_wide / lowres_depth, N views of one scene per item (module doc). A frame id
    is (position in the scene, timestamp string)."""

    EXPRESSION_ALIASES = ("ARKitScenes",)

    split: str = "train"  # train (raw/Training) or val (raw/Validation)
    items_per_sequence: int = 100  # items per scene (Spann3R's num_seq)
    min_thresh: int = 10  # largest frame gap at curriculum ratio 0
    max_thresh: int = 50  # largest frame gap at curriculum ratio 1

    def __post_init__(self) -> None:
        self._poses: Dict[str, Dict[str, np.ndarray]] = {}
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        if self.split not in arkit_format.SPLIT_FOLDERS:
            raise ConfigError(f"{type(self).__name__}.split={self.split!r}: expected one of "
                              f"{', '.join(arkit_format.SPLIT_FOLDERS)}")
        scenes = self.scene_ids(lambda: arkit_format.list_scenes(self.ROOT, self.split))
        return [SequenceEntry(scene, tuple(enumerate(arkit_format.list_timestamps(self.ROOT, self.split, scene))))
                for scene in scenes]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        position, timestamp = frame
        if sequence.name not in self._poses:
            traj = arkit_format.scene_paths(self.ROOT, self.split, sequence.name)["traj"]
            self._poses[sequence.name] = arkit_format.read_trajectory(traj)
        pose = arkit_format.pose_at(self._poses[sequence.name], timestamp)
        view = arkit_format.read_frame(self.ROOT, self.split, sequence.name, timestamp, pose, self.label())
        view.frame = position
        return view

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = arkit_format.frame_paths(self.ROOT, self.split, sequence.name, frame[1])
        return [DataFile(paths["image"], "image"), DataFile(paths["depth"], "image")]
