"""NYUv2SSC: NYUv2 semantic scene completion in SSCNet's / MonoScene's layout (formats/nyu_ssc.py),
with the grid variants of Symphonies' NYU usage guide.

    data_root/NYU{train,test}/<name>_color.jpg   640 x 480 RGB (name = NYU<id>_0000)
    data_root/NYU{train,test}/<name>.png         sensor depth, uint16 / 8000 = metres
    data_root/NYU{train,test}/<name>.bin         SSCNet volume, 0.02 m (read when voxel_size = 0.04)
    label_root/NYU{train,test}/<name>.pkl        MonoScene's pkl (read when voxel_size = 0.08)
    depth_root/NYU{train,test}/<name><depth_suffix>.png   another depth (e.g. "_pred": the guide's
                                                 DepthAnything maps), uint16 / 8000; depth_root ""
                                                 reads the sensor depth of data_root

voxel_size 0.08 lists the split from label_root's pkl files and uses target_1_4; 0.04 lists it from
data_root's .bin files and downsamples the 0.02 m labels by 2 (MonoScene's rule) to (120, 120, 72);
0.16 (CPU runs, extent full only) downsamples target_1_4 by 2 by the same rule to (30, 30, 18).
extent, in world axes (x, y, z up):

    full   4.8 x 4.8 x 2.88 m: (60, 60, 36) at 0.08 m, (120, 120, 72) at 0.04 m
    crop   4 x 4 x 2 m: (50, 50, 25) / (100, 100, 50), centred in x and y (start index
           (n_full - n_crop) // 2) and from the volume's bottom in z (the floor, 5 cm above
           voxel_origin, and the 2 m above it: furniture, walls; the ceiling above 2 m is left out);
           voxel_origin moved by start * voxel_size. The guide does not say where its crop sits:
           this placement is ours.
    scale  the full volume resampled to the crop's counts by nearest neighbour; voxel_size per axis,
           e.g. (0.048, 0.048, 0.0576) at 0.04 m

Items are ViewRecords (data/records.py): image (3, H, W), metric depth (H, W) (with_depth), K
(records' convention, scaled with image_scale), camera_to_world = the file's pose (SSCNet world,
OpenCV camera axes), sequence = name, extras["voxels"] = VoxelRecord(labels (X, Y, Z) uint8, 255
ignored, voxel_size, voxel_origin) whose extras hold "class_weights" (12,) float32 and, for extent
"full", "target_1_16" (a (15, 15, 9) VoxelRecord at 0.32 m). When depth_root names another
depth (e.g. predicted maps), extras["label_depth"] holds the sensor depth (H, W) as well, for
aligning relative predictions per scene.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.file_check import DataFile, FileItems
from recon_trainer.data.formats import nyu_ssc
from recon_trainer.data.mixing.base import ListedDataset
from recon_trainer.data.records import (
    ViewRecord,
    VoxelRecord,
    image_tensor,
    intrinsics_centre_to_corner,
    rescale_intrinsics,
)
from recon_trainer.data.ssc.geometry import EXTENTS, grid_variant
from recon_trainer.errors import DataFileError

# metres: the pkl's target_1_4, the .bin's 0.02 m labels downsampled by 2, or target_1_4 downsampled by 2
# (0.16: (30, 30, 18) over the full volume, for CPU runs; not one of the guide's grids)
VOXEL_SIZES = (0.08, 0.04, 0.16)
CAMERA_HW = (480, 640)


@registry.register
class NYUv2SSC(ListedDataset):
    """NYUv2 SSC samples of one split as ViewRecords with their voxel labels (module doc), e.g.
    `NYUv2SSC(data_root='NYU/depthbin', label_root='NYU/preprocess/base', split='test')`."""

    PATH_FIELDS = ("data_root", "label_root", "depth_root")

    data_root: str = ""  # SSCNet's depthbin root: NYU{split}/<name>_color.jpg, <name>.png, <name>.bin
    label_root: str = ""  # MonoScene's preprocess/base: NYU{split}/<name>.pkl (needed for voxel_size 0.08)
    depth_root: str = ""  # "": the sensor depth of data_root; else NYU{split}/<name><depth_suffix>.png
    depth_suffix: str = ""  # e.g. "_pred" for the usage guide's precomputed DepthAnything maps
    split: str = choice_field("train", ("train", "test"))
    voxel_size: float = 0.08  # metres: 0.08 (pkl target_1_4), 0.04 (the .bin downsampled by 2) or 0.16 (CPU runs)
    extent: str = choice_field("full", EXTENTS)  # full (4.8 x 4.8 x 2.88 m), crop (centred 4 x 4 x 2 m) or scale
    image_scale: float = 1.0  # in (0, 1]: image, depth and K resized by this (e.g. 0.25 on CPU)
    with_depth: bool = True  # read the depth map

    def list_items(self) -> FileItems:
        check_choices(self)
        name = self.label()
        if not any(math.isclose(self.voxel_size, size) for size in VOXEL_SIZES):
            raise ConfigError(f"{name}.voxel_size={self.voxel_size}: expected 0.08 (the pkl's target_1_4), 0.04 "
                              f"(the .bin labels downsampled by 2) or 0.16 (target_1_4 downsampled by 2)")
        if math.isclose(self.voxel_size, 0.16) and self.extent != "full":
            raise ConfigError(f"{name}: voxel_size 0.16 comes with extent 'full' only (the 4 x 4 x 2 m crop is not a "
                              f"whole number of 0.16 m voxels); got extent={self.extent!r}")
        if not 0.0 < self.image_scale <= 1.0:
            raise ConfigError(f"{name}.image_scale={self.image_scale}: expected a factor in (0, 1]")
        if not self.data_root:
            raise ConfigError(f"{name}.data_root is empty: set it to the depthbin folder holding NYU{self.split}/")
        if self._from_bin:
            names = nyu_ssc.list_depthbins(self.data_root, self.split)
            where = f"{os.path.join(self.data_root, 'NYU' + self.split)} has no SSCNet volumes (<name>.bin)"
        else:
            if not self.label_root:
                raise ConfigError(f"{name}.label_root is empty: voxel_size 0.08 reads MonoScene's pkl labels "
                                  f"(label_root/NYU{self.split}/<name>.pkl)")
            names = nyu_ssc.list_samples(self.label_root, self.split)
            where = f"{os.path.join(self.label_root, 'NYU' + self.split)} has no MonoScene labels (<name>.pkl)"
        if not names:
            raise ConfigError(f"{name}: {where}; voxel_size={self.voxel_size} needs them")
        depth_files = [self._depth_path, self._sensor_depth_path] if self.with_depth else []
        files = [(DataFile(self._image_path(n)), *(DataFile(f(n)) for f in depth_files if f(n) is not None),
                  DataFile(self._label_path(n), "file")) for n in names]
        return FileItems(names, files)

    @property
    def _from_bin(self) -> bool:
        return math.isclose(self.voxel_size, 0.04)

    def _image_path(self, name: str) -> str:
        return os.path.join(self.data_root, f"NYU{self.split}", f"{name}_color.jpg")

    def _depth_path(self, name: str) -> str:
        if not self.depth_root:
            return os.path.join(self.data_root, f"NYU{self.split}", f"{name}.png")
        return os.path.join(self.depth_root, f"NYU{self.split}", f"{name}{self.depth_suffix}.png")

    def _label_path(self, name: str) -> str:
        if self._from_bin:
            return nyu_ssc.depthbin_path(self.data_root, self.split, name)
        return os.path.join(self.label_root, f"NYU{self.split}", f"{name}.pkl")

    def read_item(self, index: int) -> ViewRecord:
        name = self._listing.items[index]
        labels, coarse, origin, pose = self._read_volume(name)
        labels, origin, size = grid_variant(labels, origin, self.voxel_size, self.extent)
        extras: Dict[str, Any] = {"class_weights": torch.tensor(nyu_ssc.CLASS_WEIGHTS, dtype=torch.float32)}
        if self.extent == "full" and coarse is not None:
            extras["target_1_16"] = VoxelRecord(torch.from_numpy(coarse), nyu_ssc.VOXEL_SIZE_1_16,
                                                torch.from_numpy(origin.copy()))
        voxels = VoxelRecord(torch.from_numpy(labels), size, torch.from_numpy(origin), extras)
        image, depth, sensor_depth = self._read_images(name)
        h, w = image.shape[:2]
        nyu_k = intrinsics_centre_to_corner(torch.tensor(nyu_ssc.NYU_INTRINSICS, dtype=torch.float64))
        intrinsics = rescale_intrinsics(nyu_k, CAMERA_HW, (h, w))  # the fixed 640 x 480 camera, resized
        return ViewRecord(
            image=image_tensor(image),
            depth=None if depth is None else torch.from_numpy(depth),
            depth_kind="metric",
            intrinsics=intrinsics.float(),
            camera_to_world=torch.from_numpy(pose),
            sequence=name,
            dataset=self.label(),
            label_type="sensor",
            path=self._image_path(name),
            extras={"voxels": voxels} if sensor_depth is None else {"voxels": voxels,
                                                                   "label_depth": torch.from_numpy(sensor_depth)},
        )

    def _read_volume(self, name: str) -> Tuple[np.ndarray, Any, np.ndarray, np.ndarray]:
        """(labels (X, Y, Z) uint8 world axes at voxel_size over the full volume, target_1_16
        (15, 15, 9) or None, voxel_origin (3,) float32, camera_to_world (4, 4) float32)."""
        path = self._label_path(name)
        if self._from_bin:
            origin, pose, raw = nyu_ssc.read_depthbin(path)
            classes = nyu_ssc.map_to_12_classes(raw, path)
            fine = nyu_ssc.downsample_labels(classes, 2).transpose(0, 2, 1)
            coarse = nyu_ssc.downsample_labels(classes, 16).transpose(0, 2, 1) if self.extent == "full" else None
            return np.ascontiguousarray(fine), coarse, origin, pose
        content = nyu_ssc.read_pkl(path)
        missing = [key for key in ("cam_pose", "voxel_origin", "target_1_4") if not isinstance(content, dict)
                   or key not in content]
        if missing:
            raise DataFileError(f"{path}: the NYU label pickle has no {', '.join(missing)}")
        target = np.asarray(content["target_1_4"], dtype=np.uint8)
        if target.shape != (60, 36, 60):
            raise DataFileError(f"{path}: target_1_4 has shape {target.shape}, expected (60, 36, 60) (x, height, y)")
        coarse = content.get("target_1_16")
        if coarse is not None:
            coarse = np.ascontiguousarray(np.asarray(coarse, dtype=np.uint8).transpose(0, 2, 1))
        origin = np.asarray(content["voxel_origin"], dtype=np.float32).reshape(3)
        pose = np.asarray(content["cam_pose"], dtype=np.float32).reshape(4, 4)
        target = np.ascontiguousarray(target.transpose(0, 2, 1))
        if math.isclose(self.voxel_size, 0.16):
            target = nyu_ssc.downsample_labels(target, 2)
        return target, coarse, origin, pose

    def _read_images(self, name: str) -> Tuple[np.ndarray, Any, Any]:
        """(rgb (H, W, 3) uint8, depth (H, W) float32 metres or None, the sensor depth (H, W) when
        depth_root names another depth, else None), resized by image_scale."""
        path = self._image_path(name)
        try:
            with Image.open(path) as file:
                rgb = file.convert("RGB")
        except OSError as error:
            raise DataFileError(f"{path}: cannot read the NYU image: {error}") from None
        size = (max(1, round(rgb.width * self.image_scale)), max(1, round(rgb.height * self.image_scale)))
        depths = []
        for depth_path in ((self._depth_path(name), self._sensor_depth_path(name)) if self.with_depth else ()):
            depth = None if depth_path is None else nyu_ssc.read_depth_png(depth_path)
            if depth is not None and depth.shape != (rgb.height, rgb.width):
                raise DataFileError(f"{depth_path}: depth {depth.shape} does not match the image "
                                    f"{(rgb.height, rgb.width)} of {path}")
            if depth is not None and self.image_scale < 1.0:  # nearest: no mixing of depths across edges (nor 0)
                depth = np.array(Image.fromarray(depth).resize(size, Image.NEAREST), dtype=np.float32)
            depths.append(depth)
        if self.image_scale < 1.0:
            rgb = rgb.resize(size, Image.BOX)
        depth, sensor = depths if depths else (None, None)
        return np.array(rgb), depth, sensor

    def _sensor_depth_path(self, name: str) -> Optional[str]:
        """The sensor depth of data_root when depth_root names another depth (per-scene alignment), else None."""
        return os.path.join(self.data_root, f"NYU{self.split}", f"{name}.png") if self.depth_root else None
