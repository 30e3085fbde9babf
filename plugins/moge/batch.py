"""MoGe's batches: ViewRecords of the MoGe datasets (dataset.py) made into training or evaluation
views of one size (augmentation.py) and stacked into a MoGeBatch.

MoGeBatchBuilder's config fields are MoGe's global data keys; a dataset's own keys override them
for its items (MoGe's per-dataset entries). Per batch (`collate`):

- training items (extras["augment"] true): ONE image size for the whole batch, drawn from a
  generator seeded by the items' draw seeds (so a batch is reproducible from the sampler's epoch
  seed): a (width, height) of `image_sizes` or, when that is empty, area ~ U(area_range) and aspect
  W / H ~ U(lowest, highest of the items' aspect_ratio_range), W = int(sqrt(area * aspect)),
  H = int(sqrt(area / aspect)) (MoGe's _sample_batch). Each item then gets its own perspective
  crop, flip and colour augmentations of that size, seeded by its draw seed
  (augmentation.training_view); depth beyond clamp_max_depth times its 1 % quantile is clamped.
- evaluation items (augment false, and records of other datasets): the centred crop to the
  dataset's eval_size (or the image's own size), nearest depth, far depth dropped rather than
  clamped, only known depth in depth_mask_fin (MoGe's evaluation loader). Items of one batch must
  come out the same size: use eval_batch_size 1 for datasets of different sizes.

A view with less than 0.1 % finite depth (training) or none (evaluation) is labelled "invalid"
with depth 1 everywhere; the model skips it. Normals: the instance's normal.png when it has one,
else computed from the depth as MoGe's loader does (augmentation.normals_from_depth).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.batching import BatchBuilderBase
from recon_trainer.data.records import ViewRecord
from recon_trainer.errors import UserError

from .augmentation import (
    AUGMENTATIONS,
    AugmentationSettings,
    ViewArrays,
    depth_targets,
    evaluation_view,
    normals_from_depth,
    training_view,
)
from .geometry import depth_to_points

INVALID = "invalid"  # label_type of a view without usable depth


class _Prepared(NamedTuple):
    """One item's view and its depth targets (augmentation.depth_targets)."""

    view: ViewArrays
    depth: np.ndarray
    mask_fin: np.ndarray
    mask_inf: np.ndarray


@dataclasses.dataclass
class MoGeBatch:
    """B views of one size.

    image: (B, 3, H, W) float32 RGB in [0, 1].
    depth: (B, H, W) float32 camera z after the far clamp; +inf sky, NaN unknown.
    depth_mask_fin: (B, H, W) bool pixels of finite geometry (the mask losses' positives).
    depth_mask_inf: (B, H, W) bool pixels infinitely far (sky).
    intrinsics: (B, 3, 3) float32 normalised (fx, cx per width; fy, cy per height).
    is_metric: (B,) bool: the depth is in metres (the dataset has a depth_unit).
    normal: (B, H, W, 3) float32 unit normals (OpenCV axes), NaN unknown; normal_mask (B, H, W) bool.
    label_type: B label types ("invalid": skip the sample). dataset, path: B labels and image files.
    segmentation: (B, H, W) int64 label ids (-1 where an item has none) when some item has one;
        segmentation_labels: B {name: id} or None. sharp_boundary: B flags (boundary F1 metric).
    """

    image: torch.Tensor
    depth: torch.Tensor
    depth_mask_fin: torch.Tensor
    depth_mask_inf: torch.Tensor
    intrinsics: torch.Tensor
    is_metric: torch.Tensor
    normal: Optional[torch.Tensor] = None
    normal_mask: Optional[torch.Tensor] = None
    label_type: List[str] = dataclasses.field(default_factory=list)
    dataset: List[str] = dataclasses.field(default_factory=list)
    path: List[str] = dataclasses.field(default_factory=list)
    segmentation: Optional[torch.Tensor] = None
    segmentation_labels: List[Optional[Dict[str, int]]] = dataclasses.field(default_factory=list)
    sharp_boundary: List[bool] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def to(self, device: Union[str, torch.device]) -> "MoGeBatch":
        """A copy with every tensor on `device`."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return MoGeBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()})

    def select(self, index: int) -> "MoGeBatch":
        """Item `index` as a batch of one."""
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values[f.name] = value[index:index + 1] if isinstance(value, (torch.Tensor, list)) else value
        return MoGeBatch(**values)

    def has_normal(self, index: int) -> bool:
        """Whether item `index` has any known ground-truth normal."""
        return self.normal_mask is not None and bool(self.normal_mask[index].any())

    def points(self) -> torch.Tensor:
        """(B, H, W, 3) ground-truth points in camera space from depth and intrinsics; not finite
        where the depth is not (sky, unknown)."""
        return depth_to_points(self.depth, self.intrinsics)


@registry.register
class MoGeBatchBuilder(BatchBuilderBase):
    """ViewRecords as MoGeBatches (module doc); the fields are MoGe's data keys."""

    aspect_ratio_range: Tuple[float, float] = (0.5, 2.0)  # W / H of the batch's image size (datasets may widen it)
    area_range: Tuple[int, int] = (250000, 1000000)  # pixels of the batch's image size
    # [[W, H], ...] to pick from instead; []: area/aspect
    image_sizes: List[List[int]] = dataclasses.field(default_factory=list)
    clamp_max_depth: float = 1000.0  # far depth limit relative to the 1 % quantile of each view
    center_augmentation: float = 0.5  # 0..1: how far a crop's centre may move within the leftover FOV
    fov_range_absolute: Tuple[float, float] = (1.0, 179.0)  # horizontal FOV of a crop, degrees
    fov_range_relative: Tuple[float, float] = (0.01, 1.0)  # horizontal FOV of a crop relative to the image's
    image_augmentation: Tuple[str, ...] = choice_field(("jittering", "jpeg_loss", "blurring"), AUGMENTATIONS)
    flip: bool = True  # flip training views horizontally with probability 1/2

    def __post_init__(self) -> None:
        check_choices(self)
        key = type(self).__name__
        pairs = {"aspect_ratio_range": self.aspect_ratio_range, "area_range": self.area_range,
                 "fov_range_absolute": self.fov_range_absolute, "fov_range_relative": self.fov_range_relative}
        for name, value in pairs.items():
            value = tuple(value)
            if len(value) != 2 or not 0 < value[0] <= value[1]:
                raise ConfigError(f"{key}.{name}={list(value)}: expected (low, high) with 0 < low <= high")
        self.image_sizes = [list(size) for size in self.image_sizes]
        for size in self.image_sizes:
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                raise ConfigError(f"{key}.image_sizes: {size} is not a [width, height] of positive integers")
        if not 0 <= self.center_augmentation <= 1:
            raise ConfigError(f"{key}.center_augmentation={self.center_augmentation}: expected 0..1")
        if self.clamp_max_depth <= 1:
            raise ConfigError(f"{key}.clamp_max_depth={self.clamp_max_depth}: expected > 1")

    def item(self, record: Any) -> ViewRecord:
        if not isinstance(record, ViewRecord) or record.depth is None or record.intrinsics is None:
            raise TypeError(f"MoGeBatchBuilder: expected ViewRecords with depth and intrinsics (the MoGe "
                            f"dataset's items), got a {type(record).__name__}")
        return record

    def collate(self, items: List[ViewRecord]) -> MoGeBatch:
        training = [bool(item.extras.get("augment", False)) for item in items]
        if any(training) and not all(training):
            raise UserError(f"MoGeBatchBuilder: a batch mixes training items (augment=True) and evaluation items "
                            f"({sorted({str(item.dataset) for item in items})}); keep them in separate splits")
        if all(training):
            size_hw = self.batch_size_hw(items)
            views = [self._training_view(item, size_hw) for item in items]
        else:
            size_hw = self._evaluation_size_hw(items)
            views = [self._evaluation_view(item, size_hw) for item in items]
        return _stack(items, views)

    # ----------------------------------------------------------------------------- sizes

    def batch_size_hw(self, items: List[ViewRecord]) -> Tuple[int, int]:
        """(H, W) of a training batch, drawn from a generator seeded by the items' seeds (module doc)."""
        rng = np.random.default_rng(sorted(_seed(item) for item in items))
        if self.image_sizes:
            width, height = self.image_sizes[int(rng.integers(len(self.image_sizes)))]
            return int(height), int(width)
        area = rng.uniform(*self.area_range)
        ranges = [_overrides(item).get("aspect_ratio_range", self.aspect_ratio_range) for item in items]
        aspect = rng.uniform(min(r[0] for r in ranges), max(r[1] for r in ranges))
        return int(math.sqrt(area / aspect)), int(math.sqrt(area * aspect))

    def _evaluation_size_hw(self, items: List[ViewRecord]) -> Tuple[int, int]:
        sizes = {}
        for item in items:
            eval_size = tuple(item.extras.get("eval_size", ()))
            sizes.setdefault((eval_size[1], eval_size[0]) if eval_size else item.image_size_hw, []).append(item.path)
        if len(sizes) > 1:
            listing = "; ".join(f"{w}x{h}: {paths[0]}" for (h, w), paths in sizes.items())
            raise UserError(f"MoGeBatchBuilder: evaluation items of one batch come out in different sizes ({listing}); "
                            f"set the data source's eval_batch_size=1 or give the datasets one eval_size")
        return next(iter(sizes))

    # ----------------------------------------------------------------------------- views

    def _settings(self, item: ViewRecord) -> AugmentationSettings:
        overrides = _overrides(item)
        return AugmentationSettings(
            center_augmentation=float(overrides.get("center_augmentation", self.center_augmentation)),
            fov_range_absolute=tuple(overrides.get("fov_range_absolute", self.fov_range_absolute)),
            fov_range_relative=tuple(overrides.get("fov_range_relative", self.fov_range_relative)),
            image_augmentation=tuple(overrides.get("image_augmentation", self.image_augmentation)),
            flip=self.flip,
        )

    def _training_view(self, item: ViewRecord, size_hw: Tuple[int, int]) -> _Prepared:
        view = training_view(_arrays(item), size_hw, self._settings(item), np.random.default_rng(_seed(item)))
        only_known = item.extras.get("finite_depth_mask", "all") == "only_known"
        return _Prepared(view, *depth_targets(view.depth, self.clamp_max_depth, only_known))

    def _evaluation_view(self, item: ViewRecord, size_hw: Tuple[int, int]) -> _Prepared:
        view = evaluation_view(_arrays(item), size_hw)
        return _Prepared(view, *depth_targets(view.depth, self.clamp_max_depth, only_known=True, drop_far=True))


def _seed(item: ViewRecord) -> int:
    if "seed" not in item.extras:
        raise ValueError(f"MoGeBatchBuilder: the training item {item.path!r} has no extras['seed'] (the MoGe "
                         f"dataset sets it per draw)")
    return int(item.extras["seed"])


def _overrides(item: ViewRecord) -> Dict[str, Any]:
    return dict(item.extras.get("augmentation", {}))


def _arrays(item: ViewRecord) -> ViewArrays:
    """The record as the arrays augmentation.py works on (depth <= 0 counts as unknown)."""
    image = np.clip(np.round(item.image.permute(1, 2, 0).numpy() * 255.0), 0, 255).astype(np.uint8)
    depth = item.depth.numpy().astype(np.float32)
    depth = np.where(depth > 0, depth, np.float32(np.nan))
    intrinsics = item.normalized_intrinsics().double().numpy()
    normal = item.extras.get("normal")
    normal = normals_from_depth(depth, intrinsics) if normal is None else np.asarray(normal, dtype=np.float32)
    segmentation = item.extras.get("segmentation")
    return ViewArrays(image=image, depth=depth, intrinsics=intrinsics, normal=normal,
                      segmentation=None if segmentation is None else np.asarray(segmentation, dtype=np.int64))


def _stack(items: List[ViewRecord], prepared: List[_Prepared]) -> MoGeBatch:
    arrays = [entry.view for entry in prepared]
    normal = torch.from_numpy(np.stack([view.normal for view in arrays]))
    with_segmentation = any(view.segmentation is not None for view in arrays)
    segmentation = None
    if with_segmentation:
        blank = np.full(arrays[0].depth.shape, -1, dtype=np.int64)
        segmentation = torch.from_numpy(np.stack([blank if v.segmentation is None else v.segmentation for v in arrays]))
    return MoGeBatch(
        image=torch.from_numpy(np.stack([view.image for view in arrays])).permute(0, 3, 1, 2).float() / 255.0,
        depth=torch.from_numpy(np.stack([entry.depth for entry in prepared])),
        depth_mask_fin=torch.from_numpy(np.stack([entry.mask_fin for entry in prepared])),
        depth_mask_inf=torch.from_numpy(np.stack([entry.mask_inf for entry in prepared])),
        intrinsics=torch.from_numpy(np.stack([view.intrinsics for view in arrays])).float(),
        is_metric=torch.tensor([bool(item.extras.get("is_metric", item.depth_kind == "metric")) for item in items]),
        normal=normal,
        normal_mask=torch.isfinite(normal).all(dim=-1),
        label_type=[INVALID if view.invalid else str(item.label_type) for item, view in zip(items, arrays)],
        dataset=[str(item.dataset) for item in items],
        path=[str(item.path) for item in items],
        segmentation=segmentation,
        segmentation_labels=[item.extras.get("segmentation_labels") if with_segmentation else None for item in items],
        sharp_boundary=[bool(item.extras.get("has_sharp_boundary", False)) for item in items],
    )
