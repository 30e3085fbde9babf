"""ScanNet++ DSLR frames (SplaTAM's layout, data/formats/scannetpp.py), as Spann3R's `Scannetpp` reads them.

    10000 @ Scannetpp(split='train', ROOT='data/scannetpp', resolution=224, transform=ColorJitter)
    Scannetpp(split='val', ROOT='data/scannetpp', resolution=224, num_seq=1, kf_every=10, seed=777, full_video=True)

Scenes: ROOT/splits/nvs_sem_<split>.txt (or test_id); frames: the scene's `train` list, sorted by
name. DUSt3R's name `ScanNetpp` is an alias (DUSt3R's own loader reads a different, pre-processed
layout; this class reads Spann3R's).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

import torch

from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import scannetpp as scannetpp_format
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry
from recon_trainer.errors import DataFileError
from recon_trainer.config import registry


@registry.register
class Scannetpp(CroppedSequences):
    """ScanNet++ DSLR (SplaTAM pre-processing), N views of one scene per item (module doc). A frame
    id is (position in the scene's sorted train list, image name)."""

    EXPRESSION_ALIASES = ("ScanNetpp",)

    split: str = "train"  # the split list ROOT/splits/nvs_sem_<split>.txt
    items_per_sequence: int = 100  # items per scene (Spann3R's num_seq)
    min_thresh: int = 5  # largest frame gap at curriculum ratio 0
    max_thresh: int = 30  # largest frame gap at curriculum ratio 1

    def __post_init__(self) -> None:
        self._cameras: Dict[str, Tuple[torch.Tensor, Dict[str, torch.Tensor]]] = {}
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        scenes = self.scene_ids(lambda: scannetpp_format.read_split(self.ROOT, self.split))
        return [SequenceEntry(scene, tuple(enumerate(scannetpp_format.read_train_frames(self.ROOT, scene))))
                for scene in scenes]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        position, name = frame
        if sequence.name not in self._cameras:
            self._cameras[sequence.name] = scannetpp_format.read_cameras(self.ROOT, sequence.name)
        intrinsics, poses = self._cameras[sequence.name]
        if name not in poses:
            path = os.path.join(scannetpp_format.dslr_folder(self.ROOT, sequence.name), "nerfstudio",
                                "transforms_undistorted.json")
            raise DataFileError(f"{path}: no frame with file_path {name!r} (listed in train_test_lists.json)")
        view = scannetpp_format.read_frame(self.ROOT, sequence.name, name, intrinsics, poses[name], self.label())
        view.frame = position
        return view

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = scannetpp_format.frame_paths(self.ROOT, sequence.name, frame[1])
        return [DataFile(paths["image"], "image"), DataFile(paths["depth"], "image")]
