"""DepthDataset: images with dense depth, disparity or ordinal ground truth, read from disk.

Each dataset module reads one original layout into DepthSample records; this base turns a
record into a FrameData item. Two kinds of item:

- evaluation (training_crop = 0): the full image with `depth_map` (datasets with metric depth),
  `disparity_map` (the relative inverse depth: 1 / depth, or the dataset's own disparity) and
  `depth_mask`, plus meta {"dataset", "eval_metric", "depth_cap"} and, for ordinal datasets,
  "ordinal_pairs";
- training (training_crop > 0): the shorter side resized to training_crop, a random square crop
  of that size and a random horizontal flip; only `image_rgb`, `disparity_map` and `depth_mask`
  (so that datasets of different kinds batch together), plus meta {"dataset"}.

Valid pixels: finite ground truth > 0, below `depth_cap` when the dataset has metric depth and a
cap, and inside the sample's own mask (e.g. Sintel's non-occluded pixels).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Collection, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from recon_trainer.config import ConfigError
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.file_check import DataFile, without
from recon_trainer.data.frame_data import FrameData
from recon_trainer.data.mixing.base import MixableDataset

EVAL_METRICS = ("delta1.25", "absrel", "whdr")


@dataclasses.dataclass
class DepthSample:
    """One image and its ground truth as stored on disk (numpy, full resolution).

    image: (H, W, 3) uint8 RGB.
    depth: (H, W) float32 depth in metres (the dataset's units); <= 0 or non-finite where unknown.
    disparity: (H, W) float32 relative inverse depth, for datasets without metric depth; <= 0 where unknown.
    mask: (H, W) bool, an extra validity mask (e.g. non-occluded pixels); None: every pixel.
    ordinal_pairs: (P, 5) int64 rows (y_a, x_a, y_b, x_b, relation), 0-based pixel coordinates;
        relation -1: point A is closer than B, +1: A is farther.
    path: the image file; sequence: the scene, drive or sequence the image belongs to.
    """

    image: np.ndarray
    path: str
    sequence: str = ""
    depth: Optional[np.ndarray] = None
    disparity: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    ordinal_pairs: Optional[np.ndarray] = None


class DepthDataset(MixableDataset):
    """Base of the monocular depth datasets (not registered itself; see the module doc).

    Subclasses declare their path fields, defaults for `split`, `depth_cap` and `eval_metric`,
    and implement `list_samples` (called once, in __post_init__), `load_sample` and
    `record_files`, through which the data check before training (data/file_check.py) sees the
    files of every item; items dropped by the check are not replaced (max_images counts before).
    """

    PATH_FIELDS: ClassVar[Tuple[str, ...]] = ("root",)

    root: str = ""  # the dataset's folder as distributed (relative: joined to the data source's data_root)
    split: str = "test"  # which images (each dataset lists its splits)
    max_images: int = 0  # only the first N images of the split (in sorted order); 0: all
    training_crop: int = 0  # > 0: training items (resize the shorter side, random square crop, flip); 0: evaluation
    random_flip: bool = True  # with training_crop: flip horizontally with probability 1/2
    depth_cap: float = 0.0  # evaluation: depths at or beyond this are invalid and clamp the prediction; 0: none
    eval_metric: str = choice_field("absrel", EVAL_METRICS)  # delta1.25 (% with max(d/d*, d*/d) > 1.25), absrel or whdr

    def __post_init__(self) -> None:
        check_choices(self)  # the fields declared with choice_field, here and in the subclass
        if self.training_crop < 0 or self.max_images < 0:
            raise ConfigError(f"{type(self).__name__}: training_crop and max_images must be >= 0")
        records = self.list_samples()
        if not records:
            raise ConfigError(f"{type(self).__name__}: no images found for split={self.split!r} under {self.root!r}")
        self._records = records[: self.max_images] if self.max_images > 0 else records

    @abc.abstractmethod
    def list_samples(self) -> List[object]:
        """The split's records (whatever load_sample needs), sorted; raises ConfigError naming the
        missing file or folder when the layout is not there."""

    @abc.abstractmethod
    def load_sample(self, record: object) -> DepthSample:
        """Read one record from disk; a malformed file raises DataFileError naming it."""

    def record_files(self, record: object) -> Sequence[DataFile]:
        """The files load_sample reads for `record`; the default () leaves the items unchecked."""
        return ()

    def item_files(self, index: int) -> Sequence[DataFile]:
        """The files item `index` reads (CheckableDataset)."""
        return self.record_files(self._records[index])

    def drop_items(self, indices: Collection[int]) -> None:
        """Remove these items (CheckableDataset)."""
        self._records = without(self._records, indices)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> FrameData:
        sample = self.load_sample(self._records[index])
        image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).float() / 255.0
        disparity, depth, valid = self._targets(sample)
        if self.training_crop > 0:
            if disparity is None:
                raise ConfigError(f"{self.label()}: has no dense ground truth to train on (training_crop > 0)")
            image, disparity, valid = self._random_crop(image, disparity, valid)
            return FrameData(
                image_rgb=image, disparity_map=disparity, depth_mask=valid.float(), meta={"dataset": self.label()}
            )
        meta = {"dataset": self.label(), "eval_metric": self.eval_metric, "depth_cap": float(self.depth_cap)}
        if sample.ordinal_pairs is not None:
            meta["ordinal_pairs"] = torch.as_tensor(sample.ordinal_pairs, dtype=torch.int64)
        return FrameData(
            image_rgb=image,
            depth_map=depth,
            disparity_map=disparity,
            depth_mask=None if valid is None else valid.float(),
            image_size_hw=torch.tensor(image.shape[1:]),
            image_path=sample.path,
            sequence_name=sample.sequence,
            meta=meta,
        )

    def _targets(
        self, sample: DepthSample
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(disparity, depth, valid), each (1, H, W) or None; 0 outside `valid`."""
        if sample.depth is None and sample.disparity is None:
            return None, None, None
        source = sample.depth if sample.depth is not None else sample.disparity
        values = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))[None]
        valid = torch.isfinite(values) & (values > 0)
        if sample.depth is not None and self.depth_cap > 0:
            valid &= values < self.depth_cap
        if sample.mask is not None:
            valid &= torch.from_numpy(np.ascontiguousarray(sample.mask, dtype=bool))[None]
        values = torch.where(valid, values, torch.zeros_like(values))
        if sample.depth is None:
            return values, None, valid
        disparity = torch.where(valid, 1.0 / values.clamp(min=1e-12), torch.zeros_like(values))
        return disparity, values, valid

    def _random_crop(
        self, image: torch.Tensor, disparity: torch.Tensor, valid: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shorter side to training_crop (image bilinear, targets nearest), a random square crop,
        a random horizontal flip; global torch RNG (seeded per epoch by the trainer)."""
        size = self.training_crop
        h, w = image.shape[1:]
        scale = size / min(h, w)
        new_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
        image = F.interpolate(image[None], size=new_hw, mode="bilinear", align_corners=False, antialias=True)[0]
        disparity = F.interpolate(disparity[None], size=new_hw, mode="nearest")[0]
        valid = F.interpolate(valid[None].float(), size=new_hw, mode="nearest")[0] > 0.5
        top = int(torch.randint(0, new_hw[0] - size + 1, ()))
        left = int(torch.randint(0, new_hw[1] - size + 1, ()))
        crop = (slice(None), slice(top, top + size), slice(left, left + size))
        image, disparity, valid = image[crop], disparity[crop], valid[crop]
        if self.random_flip and bool(torch.rand(()) < 0.5):
            image, disparity, valid = image.flip(-1), disparity.flip(-1), valid.flip(-1)
        return image.clamp(0, 1), disparity, valid
