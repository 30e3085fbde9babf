"""DepthDataset: images with dense depth, disparity or ordinal ground truth, read from disk.

Each dataset module reads one original layout into ViewRecords (data/records.py: the image, its
depth or disparity with `depth_kind`, intrinsics and pose where the format has them, the sequence
and frame, the dataset's label and label type; `read_record`); this base turns a record into a
FrameData item (`frame_data`, the one converter). Two kinds of item:

- evaluation (training_crop = 0): the full image with `depth_map` (records with metric or relative
  depth), `disparity_map` (the relative inverse depth: 1 / depth, or the record's disparity) and
  `depth_mask`, plus meta {"dataset", "eval_metric", "depth_cap"} and, for ordinal datasets,
  "ordinal_pairs" (the record's extras["ordinal_pairs"]);
- training (training_crop > 0): the shorter side resized to training_crop, a random square crop
  of that size and a random horizontal flip; only `image_rgb`, `disparity_map` and `depth_mask`
  (so that datasets of different kinds batch together), plus meta {"dataset"}.

With item_type="record" the items are the ViewRecords themselves (for record batch builders, and
to mix with the NVS formats' records); training_crop must then be 0.

Valid pixels: finite ground truth > 0 (the record's `depth_valid()`), below `depth_cap` when the
record's depth is metric and the dataset has a cap, and inside the record's extras["eval_mask"]
when it has one (the pixels the dataset's protocol evaluates, e.g. Sintel's non-occluded pixels).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Collection, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from recon_trainer.config import ConfigError
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.file_check import DataFile, without
from recon_trainer.data.frame_data import FrameData
from recon_trainer.data.mixing.base import MixableDataset
from recon_trainer.data.records import ViewRecord, image_tensor  # noqa: F401 (image_tensor: for the readers)

EVAL_METRICS = ("delta1.25", "absrel", "whdr")
ITEM_TYPES = ("frame_data", "record")


def depth_tensor(depth: np.ndarray) -> torch.Tensor:
    """(H, W) depth (any float dtype) as the records' float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))


@dataclasses.dataclass
class DepthSample:
    """One image and its ground truth as numpy arrays: what a simple reader's `load_sample` may
    return instead of a ViewRecord (`to_record` converts it; the built-in readers build records).

    image: (H, W, 3) uint8 RGB.
    depth: (H, W) float32 depth in metres (the dataset's units); <= 0 or non-finite where unknown.
    disparity: (H, W) float32 relative inverse depth, for datasets without metric depth; <= 0 where unknown.
    mask: (H, W) bool, the pixels to evaluate (e.g. non-occluded pixels); None: every pixel.
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

    def to_record(self) -> ViewRecord:
        """The sample as a ViewRecord: depth (metric) or disparity as its depth, the mask as
        extras["eval_mask"], the pairs as extras["ordinal_pairs"]; no intrinsics or pose."""
        values = self.depth if self.depth is not None else self.disparity
        extras = {}
        if self.mask is not None:
            extras["eval_mask"] = torch.from_numpy(np.ascontiguousarray(self.mask, dtype=bool))
        if self.ordinal_pairs is not None:
            extras["ordinal_pairs"] = torch.as_tensor(self.ordinal_pairs, dtype=torch.int64)
        return ViewRecord(
            image=image_tensor(self.image),
            depth=None if values is None else depth_tensor(values),
            depth_kind="disparity" if self.depth is None and self.disparity is not None else "metric",
            sequence=self.sequence,
            path=self.path,
            extras=extras,
        )


class DepthDataset(MixableDataset):
    """Base of the monocular depth datasets (not registered itself; see the module doc).

    Subclasses declare their path fields, defaults for `split`, `depth_cap` and `eval_metric`,
    LABEL_TYPE (the records' label_type), and implement `list_samples` (called once, in
    __post_init__), `load_sample` (one sample as a ViewRecord, or a DepthSample) and `record_files`, through which
    the data check before training (data/file_check.py) sees the files of every item; items
    dropped by the check are not replaced (max_images counts before).
    """

    PATH_FIELDS: ClassVar[Tuple[str, ...]] = ("root",)
    LABEL_TYPE: ClassVar[str] = ""  # what the labels are worth (records' label_type): lidar, sensor, stereo, ...

    root: str = ""  # the dataset's folder as distributed (relative: joined to the data source's data_root)
    split: str = "test"  # which images (each dataset lists its splits)
    max_images: int = 0  # only the first N images of the split (in sorted order); 0: all
    training_crop: int = 0  # > 0: training items (resize the shorter side, random square crop, flip); 0: evaluation
    random_flip: bool = True  # with training_crop: flip horizontally with probability 1/2
    depth_cap: float = 0.0  # evaluation: depths at or beyond this are invalid and clamp the prediction; 0: none
    eval_metric: str = choice_field("absrel", EVAL_METRICS)  # delta1.25 (% with max(d/d*, d*/d) > 1.25), absrel or whdr
    item_type: str = choice_field("frame_data", ITEM_TYPES)  # items: frame_data (FrameData, below) or record

    def __post_init__(self) -> None:
        check_choices(self)  # the fields declared with choice_field, here and in the subclass
        if self.training_crop < 0 or self.max_images < 0:
            raise ConfigError(f"{type(self).__name__}: training_crop and max_images must be >= 0")
        if self.item_type == "record" and self.training_crop > 0:
            raise ConfigError(f"{type(self).__name__}: training_crop={self.training_crop} crops FrameData items; "
                              f"item_type='record' returns the records whole (set training_crop=0)")
        records = self.list_samples()
        if not records:
            raise ConfigError(f"{type(self).__name__}: no images found for split={self.split!r} under {self.root!r}")
        self._records = records[: self.max_images] if self.max_images > 0 else records

    @abc.abstractmethod
    def list_samples(self) -> List[object]:
        """The split's samples (whatever load_sample needs), sorted; raises ConfigError naming the
        missing file or folder when the layout is not there."""

    @abc.abstractmethod
    def load_sample(self, sample: object) -> Union[ViewRecord, DepthSample]:
        """Read one sample from disk as a ViewRecord (or a DepthSample; `read_record` converts it
        and fills in an empty dataset and label_type); a malformed file raises DataFileError naming it."""

    def record_files(self, sample: object) -> Sequence[DataFile]:
        """The files load_sample reads for `sample`; the default () leaves the items unchecked."""
        return ()

    def item_files(self, index: int) -> Sequence[DataFile]:
        """The files item `index` reads (CheckableDataset)."""
        return self.record_files(self._records[index])

    def drop_items(self, indices: Collection[int]) -> None:
        """Remove these items (CheckableDataset)."""
        self._records = without(self._records, indices)

    def __len__(self) -> int:
        return len(self._records)

    def read_record(self, index: int) -> ViewRecord:
        """Item `index` as read: a ViewRecord with the dataset's label and label type."""
        view = self.load_sample(self._records[index])
        if isinstance(view, DepthSample):
            view = view.to_record()
        view.dataset = view.dataset or self.label()
        view.label_type = view.label_type or self.LABEL_TYPE
        return view

    def __getitem__(self, index: int) -> object:
        view = self.read_record(index)
        return view if self.item_type == "record" else self.frame_data(view)

    def frame_data(self, view: ViewRecord) -> FrameData:
        """The evaluation or training FrameData item of a record (module doc)."""
        image = view.image
        disparity, depth, valid = self._targets(view)
        if self.training_crop > 0:
            if disparity is None:
                raise ConfigError(f"{self.label()}: has no dense ground truth to train on (training_crop > 0)")
            image, disparity, valid = self._random_crop(image, disparity, valid)
            return FrameData(
                image_rgb=image, disparity_map=disparity, depth_mask=valid.float(), meta={"dataset": self.label()}
            )
        meta = {"dataset": self.label(), "eval_metric": self.eval_metric, "depth_cap": float(self.depth_cap)}
        if "ordinal_pairs" in view.extras:
            meta["ordinal_pairs"] = view.extras["ordinal_pairs"]
        return FrameData(
            image_rgb=image,
            depth_map=depth,
            disparity_map=disparity,
            depth_mask=None if valid is None else valid.float(),
            image_size_hw=torch.tensor(image.shape[1:]),
            image_path=view.path,
            sequence_name=view.sequence,
            meta=meta,
        )

    def _targets(
        self, view: ViewRecord
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(disparity, depth, valid), each (1, H, W) or None; 0 outside `valid`. Depth is None for a
        record of disparity."""
        if view.depth is None:
            return None, None, None
        values = view.depth[None]
        valid = view.depth_valid()[None]
        if view.depth_kind == "metric" and self.depth_cap > 0:
            valid &= values < self.depth_cap
        if "eval_mask" in view.extras:
            valid &= view.extras["eval_mask"][None]
        values = torch.where(valid, values, torch.zeros_like(values))
        if view.depth_kind == "disparity":
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
