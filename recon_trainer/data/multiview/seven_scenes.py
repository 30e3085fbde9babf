"""SevenScenes: 7-Scenes with SimpleRecon's projected depth (data/formats/seven_scenes.py), as
Spann3R's SevenScenes evaluates on it.

    SevenScenes(split='test', ROOT='data/7scenes', resolution=224, num_seq=1, full_video=True, kf_every=20)

Sequences are the seq-XX folders the scenes' TrainSplit.txt / TestSplit.txt (split 'train' /
'test') name, scenes sorted (test_id: only these scenes; seq_id: only this sequence folder);
frames 0..N-1. Items are full videos (every kf_every-th frame) or gap-curriculum draws.
Spann3R's tuple_path (SimpleRecon tuple files, unused by its evaluation) is not supported.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import seven_scenes
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceEntry


@registry.register
class SevenScenes(CroppedSequences):
    """7-Scenes (SimpleRecon layout), an evaluation set (module doc)."""

    items_per_sequence: int = 1  # items per sequence (Spann3R's num_seq)
    min_thresh: int = 10  # largest gap between consecutive sampled frames at ratio 0
    max_thresh: int = 100  # largest gap between consecutive sampled frames at ratio 1
    seq_id: Optional[str] = None  # only this sequence folder of each scene, e.g. 'seq-01'

    def list_sequences(self) -> List[SequenceEntry]:
        if self.split not in seven_scenes.SPLIT_FILES:
            raise ConfigError(f"{self.label()}.split={self.split!r}: expected one of {list(seven_scenes.SPLIT_FILES)}")
        scenes = self.scene_ids(seven_scenes.list_scenes(self.ROOT))
        names = [name for name in seven_scenes.sequences_of(self.ROOT, self.split, scenes)
                 if self.seq_id is None or name.split("/")[-1] == self.seq_id]
        return [SequenceEntry(name, tuple(range(seven_scenes.count_frames(self.ROOT, name)))) for name in names]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        return seven_scenes.read_frame(self.ROOT, sequence.name, int(frame))

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = seven_scenes.frame_paths(self.ROOT, sequence.name, int(frame))
        return [DataFile(paths["color"]), DataFile(paths["depth"]), DataFile(paths["pose"], "file")]
