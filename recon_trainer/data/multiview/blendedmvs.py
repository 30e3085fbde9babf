"""BlendMVS: BlendedMVS scenes as released (data/formats/blendedmvs.py), sampled as Spann3R's BlendMVS.

    10000 @ BlendMVS(split='train', ROOT='data/blendmvg', resolution=224)

A draw picks a random view cluster of the scene's pair.txt that has more than num_frames - 1
neighbours (up to 10 tries, else the item is redrawn elsewhere): its reference view, then
num_frames - 1 of its neighbours drawn without replacement (in the drawn order); the order is
reversed with probability 1/2. full_video takes every kf_every-th view instead (sorted ids).
As the original, a draw is redrawn when a view's principal point is too close to the border
(margins must exceed a fifth of the image), when a view has no valid depth or a non-finite pose,
or when the views' largest cropped depths span a ratio over 100 (or over 10 against the first's).

The expression also finds it as BlendedMVS (DUSt3R's name); DUSt3R's own BlendedMVS reads its
preprocessed layout (blendedmvs_pairs.npy, .exr depth), which this class does not.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats import blendedmvs
from recon_trainer.data.multiview.base import CroppedSequences
from recon_trainer.data.multiview.co3d import depth_span_ok
from recon_trainer.data.multiview.crop import SPANN3R_MIN_MARGIN, crop_resize_like_dust3r
from recon_trainer.data.records import ViewRecord, intrinsics_corner_to_centre
from recon_trainer.data.sampling.sequences import SequenceEntry
from recon_trainer.errors import DataFileError

PAIR_TRIES = 10  # clusters tried per draw


@registry.register
class BlendMVS(CroppedSequences):
    """BlendedMVS (low-res, raw layout), Spann3R's sampling (module doc)."""

    EXPRESSION_ALIASES = ("BlendedMVS",)

    items_per_sequence: int = 100  # items per scene (Spann3R's num_seq)
    min_thresh: int = 10  # Spann3R's default; unused (the pair.txt sampler has no gap curriculum)
    max_thresh: int = 30  # Spann3R's default; unused (the pair.txt sampler has no gap curriculum)

    def __post_init__(self) -> None:
        self._pair_cache: Dict[str, List[blendedmvs.Cluster]] = {}
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        if self.test_id is None and not os.path.exists(os.path.join(self.ROOT, f"{self.split}_list.txt")) \
                and os.path.exists(os.path.join(self.ROOT, "blendedmvs_pairs.npy")):
            raise ConfigError(f"{self.label()}.ROOT={self.ROOT!r} holds DUSt3R's preprocessed BlendedMVS "
                              f"(blendedmvs_pairs.npy); this dataset reads the raw layout with {self.split}_list.txt")
        scenes = self.scene_ids([] if self.test_id is not None else blendedmvs.read_scene_list(self.ROOT, self.split))
        return [SequenceEntry(scene, tuple(blendedmvs.list_views(self.ROOT, scene))) for scene in scenes]

    def choose_frames(self, sequence: SequenceEntry, generator: torch.Generator) -> List[Any]:
        """Every kf_every-th view (full_video) or a pair.txt cluster draw (module doc); [] when no
        cluster has enough neighbours in PAIR_TRIES tries."""
        if self.full_video:
            return super().choose_frames(sequence, generator)
        clusters = self._clusters(sequence.name)
        for _ in range(PAIR_TRIES):
            reference, neighbours = clusters[int(torch.randint(0, len(clusters), (), generator=generator))]
            if len(neighbours) > self.num_views - 1:
                picks = torch.randperm(len(neighbours), generator=generator)[: self.num_views - 1].tolist()
                views = [reference] + [neighbours[k][0] for k in picks]
                if self.random_reverse and bool(torch.randint(0, 2, (), generator=generator)):
                    views.reverse()
                return views
        return []

    def _clusters(self, scene: str) -> List[blendedmvs.Cluster]:
        """The scene's pair.txt clusters (read once)."""
        if scene not in self._pair_cache:
            path = blendedmvs.pair_path(self.ROOT, scene)
            self._pair_cache[scene] = blendedmvs.read_pair_file(path)
            if not self._pair_cache[scene]:
                raise DataFileError(f"{path}: no view cluster")
        return self._pair_cache[scene]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        return blendedmvs.read_view(self.ROOT, sequence.name, int(frame))

    def load_frame(self, sequence: SequenceEntry, frame: Any, generator: Optional[torch.Generator] = None
                   ) -> ViewRecord:
        """As the base, except that a view whose principal point fails Spann3R's margin check comes
        back without depth (not usable: the draw is redrawn) instead of raising."""
        view = self.read_view(sequence, frame)
        if not _margins_ok(view):
            view.depth = torch.zeros_like(view.depth)
            return view
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        return crop_resize_like_dust3r(view, self.resolution_wh, self.aug_crop, generator)

    def _load_views(self, sequence: SequenceEntry, generator: torch.Generator) -> List[ViewRecord]:
        views = super()._load_views(sequence, generator)
        return views if depth_span_ok([float(v.depth.max()) for v in views]) else []

    def frame_files(self, sequence: SequenceEntry, frame: Any) -> Sequence[DataFile]:
        paths = blendedmvs.view_paths(self.ROOT, sequence.name, int(frame))
        return [DataFile(paths["image"]), DataFile(paths["depth"], "file"), DataFile(paths["cam"], "file")]


def _margins_ok(view: ViewRecord) -> bool:
    """Spann3R's check before the crop: the rounded principal point (integer pixel centres) is more
    than a fifth of the image from every border."""
    height, width = view.image_size_hw
    cx, cy = (round(float(v)) for v in intrinsics_corner_to_centre(view.intrinsics.double())[:2, 2])
    return min(cx, width - cx) > SPANN3R_MIN_MARGIN * width and min(cy, height - cy) > SPANN3R_MIN_MARGIN * height
