"""Depth datasets sampled by sequence: N views of one TUM sequence, KITTI drive, Sintel scene or
ETH3D scene per item, with the frame-gap curriculum of data/sampling/sequences.py.

    TUMSequences(root='tum/rgbd_dataset_freiburg2_desk_with_person', num_views=4, min_thresh=1, max_thresh=8)

Each class is its dataset (same fields, same layout and files checked) whose items are
SequenceRecords of ViewRecords instead of single frames; frames of a sequence keep the reader's
order (time stamps, frame numbers, sorted file names).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.depth.base import DepthDataset
from recon_trainer.data.depth.eth3d import ETH3D
from recon_trainer.data.depth.kitti import KITTI
from recon_trainer.data.depth.sintel import Sintel
from recon_trainer.data.depth.tum import TUM
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceDataset, SequenceEntry


class DepthSequences(SequenceDataset):
    """A depth dataset's samples grouped by `sample_sequence` into sequences (put it first among
    the bases, before the dataset class)."""

    def __post_init__(self) -> None:
        if self.training_crop > 0:
            raise ConfigError(f"{type(self).__name__}.training_crop={self.training_crop}: sequence items are whole "
                              "views (set training_crop=0)")
        DepthDataset.__post_init__(self)  # lists the samples
        SequenceDataset.__post_init__(self)

    def list_sequences(self) -> List[SequenceEntry]:
        groups: Dict[str, List[int]] = {}
        for index, sample in enumerate(self._records):
            groups.setdefault(self.sample_sequence(sample), []).append(index)
        return [SequenceEntry(name, tuple(indices)) for name, indices in sorted(groups.items())]

    def load_frame(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        return DepthDataset.read_record(self, frame)

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        return self.record_files(self._records[frame])


@registry.register
class TUMSequences(DepthSequences, TUM):
    """TUM RGB-D, N views of the sequence per item (with poses when groundtruth.txt is there)."""


@registry.register
class KITTISequences(DepthSequences, KITTI):
    """KITTI, N views of one drive per item."""


@registry.register
class SintelSequences(DepthSequences, Sintel):
    """Sintel, N views of one scene per item (with poses from camdata_left)."""


@registry.register
class ETH3DSequences(DepthSequences, ETH3D):
    """ETH3D, N views of one scene per item (with COLMAP poses)."""
