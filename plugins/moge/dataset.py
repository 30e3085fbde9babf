"""MoGeDataset: one dataset in MoGe's layout (recon_trainer/data/formats/moge.py) for a mixing expression.

    train: "MoGeDataset(root='TartanAir', label_type='synthetic') + MoGeDataset(root='Hypersim', label_type='synthetic',
            depth='depth_completed.png')"
    test:  "MoGeDataset(root='NYUv2', augment=False, eval_size=(640, 480), depth_unit=1.0)"

MoGe's per-dataset keys are its config fields (`name`, `index`, `depth`, `depth_unit`,
`label_type`, `finite_depth_mask` and the augmentation overrides). MoGe mixes datasets by drawing
each sample's dataset with random.choices(weights); here the MixtureDataSource with
`mixing: weighted` and one weight per '+' term gives every batch the exact shares (quota method,
data/mixing/sampler.py) instead, and draws the instance of a dataset from a shuffled pass over it.

An item is a ViewRecord of the whole instance as stored: image, depth (NaN unknown, +inf sky,
times depth_unit when given; NaN outside mask.png when the instance has one, which is also
`mask_valid`), intrinsics in pixels from meta.json's normalised ones, label_type, the dataset's
label and the image path. `extras` carries what MoGeBatchBuilder needs (batch.py):

- "seed": a 64-bit seed of this draw (epoch seed and draw index), for the view's random crop and
  augmentations; "augment": training view (random crop and augmentations) or evaluation view
  (centred crop to eval_size's aspect, FOV kept); "eval_size": (width, height) or ();
- "is_metric", "finite_depth_mask", "has_sharp_boundary";
- "augmentation": the dataset's overrides of the builder's augmentation keys (only those set);
- "normal" (H, W, 3) float32 (NaN unknown) when the instance has normal.png;
- "segmentation" (H, W) int64 and "segmentation_labels" {name: id} or None when it has
  segmentation.png.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.file_check import DataFile, FileItems
from recon_trainer.data.formats import moge as moge_format
from recon_trainer.data.mixing.base import ListedDataset
from recon_trainer.data.mixing.combinators import Index, split_draw
from recon_trainer.data.mixing.permutation import mix64
from recon_trainer.data.records import ViewRecord
from recon_trainer.errors import DataFileError

from .augmentation import AUGMENTATIONS

FINITE_DEPTH_MASKS = ("all", "only_known")
REQUIRED_FILES = ("image.jpg", "meta.json")  # and the dataset's depth file


@registry.register
class MoGeDataset(ListedDataset):
    """The instances listed in <root>/<index> (module doc). Training sets keep augment=True;
    benchmarks set augment=False and usually eval_size."""

    PATH_FIELDS = ("root",)
    TAKES_EPOCH_SEED = True

    root: str = ""  # the dataset folder (holds the index file); relative: joined to the data source's data_root
    index: str = moge_format.INDEX_FILE  # the index file: one instance folder (relative to root) a line
    depth: str = "depth.png"  # the depth file of each instance (e.g. depth_completed.png)
    depth_unit: float = 0.0  # > 0: depth times this is metric (metres) and the dataset is metric; 0: relative
    # all: every non-sky pixel is geometry; only_known: the known ones
    finite_depth_mask: str = choice_field("all", FINITE_DEPTH_MASKS)
    label_type: str = "synthetic"  # which loss terms apply (MoGeModel.losses), e.g. synthetic, sfm, lidar
    augment: bool = True  # training view (random perspective crop, flip, colour); False: evaluation view
    eval_size: Tuple[int, ...] = ()  # augment=False: (width, height) of the centred crop; (): the image's own size
    has_sharp_boundary: bool = False  # benchmark with sharp depth boundaries (the boundary F1 metric)
    normal: str = "normal.png"  # read when the instance has it; "": never (normals then come from the depth)
    mask: str = "mask.png"  # valid-pixel mask, read when the instance has it (depth outside: unknown); "": never
    segmentation: str = "segmentation.png"  # label ids and names (local-points metric), read when present; "": never
    # per-dataset overrides of MoGeBatchBuilder's augmentation keys; () / None: the builder's value
    aspect_ratio_range: Tuple[float, ...] = ()  # (low, high) W / H of the batch's size draw
    center_augmentation: Optional[float] = None  # 0..1: how far the crop's centre may move
    fov_range_absolute: Tuple[float, ...] = ()  # (low, high) horizontal FOV in degrees
    fov_range_relative: Tuple[float, ...] = ()  # (low, high) horizontal FOV relative to the image's
    image_augmentation: Optional[Tuple[str, ...]] = None  # any of jittering, jpeg_loss, blurring, shot_noise, dof

    def __post_init__(self) -> None:
        check_choices(self)
        key = f"MoGeDataset({self.label()})"
        for field, size in (("aspect_ratio_range", 2), ("fov_range_absolute", 2), ("fov_range_relative", 2),
                            ("eval_size", 2)):
            value = tuple(getattr(self, field))
            if value and (len(value) != size or not all(v > 0 for v in value)):
                raise ConfigError(f"{key}.{field}={list(value)}: expected {size} positive numbers or ()")
            setattr(self, field, value)
        for field in ("aspect_ratio_range", "fov_range_absolute", "fov_range_relative"):
            value = getattr(self, field)
            if value and value[0] > value[1]:
                raise ConfigError(f"{key}.{field}={list(value)}: the low end is above the high end")
        if self.center_augmentation is not None and not 0 <= self.center_augmentation <= 1:
            raise ConfigError(f"{key}.center_augmentation={self.center_augmentation}: expected 0..1 or None")
        if self.image_augmentation is not None:
            self.image_augmentation = tuple(self.image_augmentation)
            unknown = [name for name in self.image_augmentation if name not in AUGMENTATIONS]
            if unknown:
                raise ConfigError(f"{key}.image_augmentation: unknown {unknown}; choices: {', '.join(AUGMENTATIONS)}")
        if self.depth_unit < 0:
            raise ConfigError(f"{key}.depth_unit={self.depth_unit}: expected > 0, or 0 for relative depth")
        if not self.root:
            raise ConfigError(f"{key}.root is empty: set it to the dataset folder (holding {self.index})")
        super().__post_init__()

    def label(self) -> str:
        """`name`, else the dataset folder's name (MoGe names datasets in results), else the class name."""
        return self.name or os.path.basename(os.path.normpath(self.root)) or type(self).__name__

    # ----------------------------------------------------------------------------- listing

    def list_items(self) -> FileItems[str]:
        index_path = os.path.join(self.root, self.index)
        if not os.path.isfile(index_path):
            raise ConfigError(f"MoGeDataset({self.label()}): no index file {index_path} (root={self.root!r}, "
                              f"index={self.index!r})")
        instances = moge_format.read_index(self.root, self.index)
        if not instances:
            raise ConfigError(f"MoGeDataset({self.label()}): the index {index_path} lists no instance")
        files = [tuple(DataFile(os.path.join(folder, name)) for name in (*REQUIRED_FILES, self.depth))
                 for folder in instances]
        return FileItems(instances, files)

    def _optional_files(self, folder: str) -> Dict[str, str]:
        """{kind: path} of the optional files this dataset reads that the instance has."""
        names = {"normal": self.normal, "mask": self.mask, "segmentation": self.segmentation}
        paths = {kind: os.path.join(folder, name) for kind, name in names.items() if name}
        return {kind: path for kind, path in paths.items() if os.path.isfile(path)}

    def item_files(self, index: int) -> Sequence[DataFile]:
        """The instance's image, meta.json and depth, and the optional files it has."""
        folder = self._listing.items[index]
        return [*self._listing.item_files(index), *(DataFile(p) for p in self._optional_files(folder).values())]

    # ----------------------------------------------------------------------------- items

    def __getitem__(self, index: Index) -> ViewRecord:
        position, epoch_seed, draw = split_draw(index)
        view = self.read_item(position)
        view.extras["seed"] = mix64(mix64(epoch_seed) ^ draw)
        return view

    def read_item(self, index: int) -> ViewRecord:
        folder = self._listing.items[index]
        view = moge_format.read_instance(folder, depth_file=self.depth, label_type=self.label_type,
                                         depth_kind="metric" if self.depth_unit > 0 else "relative",
                                         dataset=self.label())
        if self.depth_unit > 0:
            view.depth = view.depth * self.depth_unit
        view.extras = {
            "augment": self.augment,
            "eval_size": tuple(int(v) for v in self.eval_size),
            "is_metric": self.depth_unit > 0,
            "finite_depth_mask": self.finite_depth_mask,
            "has_sharp_boundary": self.has_sharp_boundary,
            "augmentation": self._augmentation_overrides(),
        }
        size_hw = view.image_size_hw
        optional = self._optional_files(folder)
        if "mask" in optional:
            mask = torch.from_numpy(_same_size(moge_format.read_mask(optional["mask"]), size_hw, optional["mask"]))
            view.depth = torch.where(mask, view.depth, torch.nan)
            view.mask_valid = mask
        if "normal" in optional:
            normal = _same_size(moge_format.read_normal(optional["normal"]), size_hw, optional["normal"])
            view.extras["normal"] = torch.from_numpy(normal)
        if "segmentation" in optional:
            ids, labels = moge_format.read_segmentation(optional["segmentation"])
            ids = _same_size(ids, size_hw, optional["segmentation"]).astype(np.int64)
            view.extras["segmentation"] = torch.from_numpy(ids)
            view.extras["segmentation_labels"] = labels
        return view

    def _augmentation_overrides(self) -> Dict[str, Any]:
        """The augmentation keys this dataset sets (MoGeBatchBuilder's otherwise)."""
        values = {
            "aspect_ratio_range": self.aspect_ratio_range or None,
            "center_augmentation": self.center_augmentation,
            "fov_range_absolute": self.fov_range_absolute or None,
            "fov_range_relative": self.fov_range_relative or None,
            "image_augmentation": self.image_augmentation,
        }
        return {key: value for key, value in values.items() if value is not None}


def _same_size(values: np.ndarray, size_hw: Tuple[int, int], path: str) -> np.ndarray:
    if values.shape[:2] != tuple(size_hw):
        raise DataFileError(f"{path}: is {values.shape[1]}x{values.shape[0]}, the image {size_hw[1]}x{size_hw[0]}")
    return values

