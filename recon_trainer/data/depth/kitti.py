"""KITTI: raw camera images with the depth benchmark's projected velodyne depth (MiDaS's KITTI eval).

On-disk layout (two roots, as distributed):

    <raw_root>/<date>/<date>_drive_<NNNN>_sync/image_02/data/<10-digit frame>.png     (raw data, RGB)
    <depth_root>/<split>/<date>_drive_<NNNN>_sync/proj_depth/<kind>/image_02/<frame>.png

`<split>` is a folder of the depth benchmark ("train" or "val"); `<kind>` is "velodyne_raw" (the
projected scans, data_depth_velodyne) or "groundtruth" (the accumulated, cleaned maps,
data_depth_annotated); image_03 is the right camera. Depth PNGs are 16-bit, metres = value / 256,
0 = no measurement, the size of the raw image. The benchmark drops the first and last frames of a
drive, so every depth PNG has a raw image but not the other way round.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, List, Tuple

import numpy as np
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, DepthSample
from recon_trainer.data.depth.image_files import read_rgb, read_uint16_png
from recon_trainer.data.file_check import DataFile
from recon_trainer.errors import DataFileError

if TYPE_CHECKING:
    from recon_trainer.data.depth.synthetic import DepthViews

SPLITS = ("train", "val")
CAMERAS = ("image_02", "image_03")
DEPTH_KINDS = ("velodyne_raw", "groundtruth")
DEPTH_SCALE = 256.0  # PNG value per metre
# Folder names the writer uses under its out_dir for the two roots (the names of the downloads).
RAW_DIR = "raw"
DEPTH_DIRS = {"velodyne_raw": "data_depth_velodyne", "groundtruth": "data_depth_annotated"}


@registry.register
class KITTI(DepthDataset):
    """KITTI raw images with projected velodyne depth; records are (image path, depth path, drive)."""

    PATH_FIELDS = ("raw_root", "depth_root")

    raw_root: str = ""  # KITTI raw data folder holding <date>/<date>_drive_<NNNN>_sync
    depth_root: str = ""  # depth benchmark folder holding train/ and val/
    split: str = choice_field("val", SPLITS)  # depth benchmark folder: val or train
    camera: str = choice_field("image_02", CAMERAS)  # image_02 (left colour) or image_03 (right colour)
    depth_kind: str = choice_field("velodyne_raw", DEPTH_KINDS)  # velodyne_raw (projected scans) or groundtruth
    depth_cap: float = 80.0  # metres
    eval_metric: str = "delta1.25"

    def list_samples(self) -> List[Tuple[str, str, str]]:
        split_dir = os.path.join(self.depth_root, self.split)
        if not os.path.isdir(split_dir):
            raise ConfigError(f"KITTI: depth benchmark folder {split_dir!r} not found (depth_root={self.depth_root!r})")
        records = []
        for drive in sorted(os.listdir(split_dir)):
            depth_dir = os.path.join(split_dir, drive, "proj_depth", self.depth_kind, self.camera)
            if not os.path.isdir(depth_dir):
                raise ConfigError(f"KITTI: depth folder {depth_dir!r} not found")
            image_dir = os.path.join(self.raw_root, drive[:10], drive, self.camera, "data")
            for name in sorted(n for n in os.listdir(depth_dir) if n.endswith(".png")):
                image_path, depth_path = os.path.join(image_dir, name), os.path.join(depth_dir, name)
                if not os.path.isfile(image_path):
                    raise ConfigError(f"KITTI: raw image {image_path!r} not found for {depth_path!r}")
                records.append((image_path, depth_path, drive))
        if not records:
            raise ConfigError(f"KITTI: no depth PNGs under {split_dir!r}/*/proj_depth/{self.depth_kind}/{self.camera}")
        return records

    def record_files(self, record: Tuple[str, str, str]) -> Tuple[DataFile, ...]:
        return DataFile(record[0]), DataFile(record[1])

    def load_sample(self, record: Tuple[str, str, str]) -> DepthSample:
        image_path, depth_path, drive = record
        rgb = read_rgb(image_path)
        depth = read_uint16_png(depth_path) / DEPTH_SCALE
        if depth.shape != rgb.shape[:2]:
            raise DataFileError(
                f"KITTI: depth {depth_path!r} is {depth.shape}, its image {image_path!r} {rgb.shape[:2]}"
            )
        return DepthSample(image=rgb, depth=depth, path=image_path, sequence=drive)



def write_depth_png(path: str, depth: np.ndarray, scale: float) -> None:
    """Write (H, W) depth as a 16-bit PNG of round(depth * scale), clipped to uint16; <= 0 -> 0."""
    values = np.clip(np.round(np.where(depth > 0, depth, 0.0) * scale), 0, np.iinfo(np.uint16).max)
    Image.fromarray(values.astype(np.uint16)).save(path)


def velodyne_like_mask(height: int, width: int, row_step: int, seed: int) -> np.ndarray:
    """(H, W) bool: every `row_step`-th row (scan lines) below the top quarter, with a random
    half of each line's points kept, like a projected laser scan."""
    rows = np.zeros((height, 1), dtype=bool)
    rows[height // 4 :: row_step] = True
    return rows & (np.random.default_rng(seed).random((height, width)) < 0.5)


def write_kitti(
    out_dir: str,
    views: "DepthViews",
    split: str = "val",
    drive: str = "2011_09_26_drive_0002_sync",
    camera: str = "image_02",
    depth_kind: str = "velodyne_raw",
    first_frame: int = 5,
    row_step: int = 3,
    seed: int = 0,
) -> str:
    """Write views as one KITTI drive: raw PNGs under out_dir/raw and sparse 1/256-m depth PNGs under
    out_dir/data_depth_velodyne (or data_depth_annotated for groundtruth). Frames are numbered from
    `first_frame`. Returns out_dir; the reader's roots are out_dir/RAW_DIR and out_dir/DEPTH_DIRS[kind]."""
    image_dir = os.path.join(out_dir, RAW_DIR, drive[:10], drive, camera, "data")
    depth_dir = os.path.join(out_dir, DEPTH_DIRS[depth_kind], split, drive, "proj_depth", depth_kind, camera)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(depth_dir, exist_ok=True)
    height, width = views.depth.shape[1:]
    for i, (rgb, depth) in enumerate(zip(views.rgb, views.depth)):
        name = f"{first_frame + i:010d}.png"
        Image.fromarray(rgb).save(os.path.join(image_dir, name))
        keep = velodyne_like_mask(height, width, row_step, seed + i)
        write_depth_png(os.path.join(depth_dir, name), np.where(keep, depth, 0.0), DEPTH_SCALE)
    return out_dir
