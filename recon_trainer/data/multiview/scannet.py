"""ScanNet in SimpleRecon's layout (data/formats/scannet.py), as Spann3R's `Scannet` reads it.

    10000 @ Scannet(split='train', ROOT='data/scannet', resolution=224, transform=ColorJitter, max_thresh=50)

Scenes: ROOT/splits/scannetv2_<split>.txt (or test_id); frames: every frame-<6 digits>.color.jpg of the
scene's sensor_data folder, in frame order. The colour image is resized to the depth map's size;
depth is uint16 millimetres (0 unknown); poses are camera-to-world (OpenCV), and a view whose pose
is not finite (ScanNet's failed tracking) or that has no valid depth is redrawn (full_video: left
out), as Spann3R does.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import scannet as scannet_format
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry


@registry.register
class Scannet(CroppedSequences):
    """ScanNet (SimpleRecon export), N views of one scene per item (module doc)."""

    EXPRESSION_ALIASES = ("ScanNet",)

    split: str = "train"  # train or val (ROOT/scans), test (ROOT/scans_test)
    items_per_sequence: int = 100  # items per scene (Spann3R's num_seq)
    min_thresh: int = 10  # largest frame gap at curriculum ratio 0
    max_thresh: int = 100  # largest frame gap at curriculum ratio 1

    def __post_init__(self) -> None:
        self._intrinsics: Dict[str, torch.Tensor] = {}
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        if self.split not in scannet_format.SPLIT_FOLDERS:
            raise ConfigError(f"{type(self).__name__}.split={self.split!r}: expected one of "
                              f"{', '.join(scannet_format.SPLIT_FOLDERS)}")
        scenes = self.scene_ids(lambda: scannet_format.read_split(self.ROOT, self.split))
        return [SequenceEntry(scene, tuple(scannet_format.list_frames(self.ROOT, self.split, scene)))
                for scene in scenes]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        if sequence.name not in self._intrinsics:
            self._intrinsics[sequence.name] = scannet_format.read_intrinsics(self.ROOT, self.split, sequence.name)
        return scannet_format.read_frame(self.ROOT, self.split, sequence.name, frame,
                                         self._intrinsics[sequence.name], self.label())

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = scannet_format.frame_paths(self.ROOT, self.split, sequence.name, frame)
        return [DataFile(paths["color"], "image"), DataFile(paths["depth"], "image"), DataFile(paths["pose"], "file")]
