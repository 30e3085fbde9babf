"""KITTI: raw camera images with the depth benchmark's projected velodyne depth (MiDaS's KITTI eval).

On-disk layout (two roots, as distributed):

    <raw_root>/<date>/<date>_drive_<NNNN>_sync/image_02/data/<10-digit frame>.png     (raw data, RGB)
    <depth_root>/<split>/<date>_drive_<NNNN>_sync/proj_depth/<kind>/image_02/<frame>.png

    <raw_root>/<date>/calib_cam_to_cam.txt     (the raw data's calibration download, optional)

`<split>` is a folder of the depth benchmark ("train" or "val"); `<kind>` is "velodyne_raw" (the
projected scans, data_depth_velodyne) or "groundtruth" (the accumulated, cleaned maps,
data_depth_annotated); image_03 is the right camera. Depth PNGs are 16-bit, metres = value / 256,
0 = no measurement, the size of the raw image. The benchmark drops the first and last frames of a
drive, so every depth PNG has a raw image but not the other way round.

Records: metric depth (label type "lidar"), sequence = the drive, frame = the frame number. The
intrinsics come from calib_cam_to_cam.txt, lines "key: values": K = the left 3x3 of the camera's
rectified projection P_rect_02 (image_02) or P_rect_03 (image_03), 3x4 row-major, whose pixel
centres are integers (half a pixel is added, data/records.py), for the rectified size S_rect_0x
(width, height; K is rescaled when the image has another size). Without the calibration file the
intrinsics are None. The raw data's poses (OXTS GPS/IMU) are not read: camera_to_world is None.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, depth_tensor, image_tensor
from recon_trainer.data.depth.image_files import read_rgb, read_uint16_png
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.records import (
    ViewRecord,
    intrinsics_centre_to_corner,
    intrinsics_corner_to_centre,
    opencv_view_from_cameras,
    rescale_intrinsics,
)
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
CALIBRATION_FILE = "calib_cam_to_cam.txt"
# Camera centres of the KITTI rig along the rectified x axis, metres from camera 0 (the writer's baselines).
RIG_OFFSETS = {"00": 0.0, "01": -0.54, "02": 0.06, "03": -0.47}


@registry.register
class KITTI(DepthDataset):
    """KITTI raw images with projected velodyne depth; samples are (image path, depth path, drive)."""

    PATH_FIELDS = ("raw_root", "depth_root")
    LABEL_TYPE = "lidar"

    raw_root: str = ""  # KITTI raw data folder holding <date>/<date>_drive_<NNNN>_sync
    depth_root: str = ""  # depth benchmark folder holding train/ and val/
    split: str = choice_field("val", SPLITS)  # depth benchmark folder: val or train
    camera: str = choice_field("image_02", CAMERAS)  # image_02 (left colour) or image_03 (right colour)
    depth_kind: str = choice_field("velodyne_raw", DEPTH_KINDS)  # velodyne_raw (projected scans) or groundtruth
    depth_cap: float = 80.0  # metres
    eval_metric: str = "delta1.25"

    def sample_sequence(self, sample: Tuple[str, str, str]) -> str:
        """The sequence a sample belongs to (DepthSequences groups by it): its drive."""
        return sample[2]

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

    def calibration_path(self, drive: str) -> str:
        """<raw_root>/<date>/calib_cam_to_cam.txt of a drive."""
        return os.path.join(self.raw_root, drive[:10], CALIBRATION_FILE)

    def record_files(self, sample: Tuple[str, str, str]) -> Tuple[DataFile, ...]:
        calibration = self.calibration_path(sample[2])
        return (DataFile(sample[0]), DataFile(sample[1])) + ((DataFile(calibration, "file"),)
                                                             if os.path.isfile(calibration) else ())

    def load_sample(self, sample: Tuple[str, str, str]) -> ViewRecord:
        image_path, depth_path, drive = sample
        rgb = read_rgb(image_path)
        depth = read_uint16_png(depth_path) / DEPTH_SCALE
        if depth.shape != rgb.shape[:2]:
            raise DataFileError(
                f"KITTI: depth {depth_path!r} is {depth.shape}, its image {image_path!r} {rgb.shape[:2]}"
            )
        calibration = self.calibration_path(drive)
        intrinsics = None
        if os.path.isfile(calibration):
            intrinsics = camera_intrinsics(read_calibration(calibration), self.camera[-2:], calibration, rgb.shape[:2])
        return ViewRecord(
            image=image_tensor(rgb),
            depth=depth_tensor(depth),
            depth_kind="metric",
            intrinsics=intrinsics,
            sequence=drive,
            frame=int(os.path.splitext(os.path.basename(image_path))[0]),
            path=image_path,
        )


def read_calibration(path: str) -> Dict[str, str]:
    """{key: value text} of a KITTI calibration file's "key: values" lines."""
    entries = {}
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            key, colon, value = line.partition(":")
            if not colon:
                raise DataFileError(f"KITTI: {path}:{number}: {line.strip()!r}, expected 'key: values'")
            entries[key.strip()] = value.strip()
    return entries


def _numbers(entries: Dict[str, str], key: str, count: int, path: str) -> Optional[np.ndarray]:
    """The `count` numbers of entries[key] (None when the key is absent); DataFileError otherwise."""
    if key not in entries:
        return None
    try:
        values = np.array([float(v) for v in entries[key].split()])
        if len(values) != count:
            raise ValueError
    except ValueError:
        raise DataFileError(f"KITTI: {path}: {key}: {entries[key]!r}, expected {count} numbers") from None
    return values


def camera_intrinsics(entries: Dict[str, str], camera: str, path: str, image_hw: Tuple[int, int]) -> torch.Tensor:
    """(3, 3) float32 K (records' convention) of camera "02" or "03" for an image of image_hw (module doc)."""
    projection = _numbers(entries, f"P_rect_{camera}", 12, path)
    if projection is None:
        raise DataFileError(f"KITTI: {path} has no P_rect_{camera} (the rectified projection of image_{camera})")
    intrinsics = intrinsics_centre_to_corner(torch.tensor(projection.reshape(3, 4)[:, :3], dtype=torch.float64))
    size = _numbers(entries, f"S_rect_{camera}", 2, path)
    if size is not None and (round(size[1]), round(size[0])) != tuple(image_hw):
        intrinsics = rescale_intrinsics(intrinsics, (float(size[1]), float(size[0])), image_hw)
    return intrinsics.float()


def write_calibration(path: str, intrinsics_opencv: np.ndarray, image_hw: Tuple[int, int]) -> None:
    """Write a calib_cam_to_cam.txt with the rectified entries of the four cameras: S_rect (width,
    height), R_rect (identity) and P_rect = K [I | t] with t = (-offset, 0, 0) (RIG_OFFSETS); K (3, 3)
    has integer pixel centres, as KITTI's."""
    h, w = image_hw
    lines = ["calib_time: 01-Jan-2011 00:00:00", "corner_dist: 9.950000e-02"]
    for camera, offset in RIG_OFFSETS.items():
        projection = np.asarray(intrinsics_opencv, dtype=np.float64) @ np.hstack([np.eye(3), [[-offset], [0], [0]]])
        lines += [f"S_rect_{camera}: {float(w):e} {float(h):e}",
                  f"R_rect_{camera}: " + " ".join(f"{v:e}" for v in np.eye(3).ravel()),
                  f"P_rect_{camera}: " + " ".join(f"{v:.12e}" for v in projection.ravel())]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


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
    `first_frame`. With views.cameras, raw/<date>/calib_cam_to_cam.txt holds the first view's K
    (write_calibration; the views share one K). Returns out_dir; the reader's roots are
    out_dir/RAW_DIR and out_dir/DEPTH_DIRS[kind]."""
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
    if views.cameras is not None:
        intrinsics = intrinsics_corner_to_centre(opencv_view_from_cameras(views.cameras[0])[0][0].double())
        write_calibration(os.path.join(out_dir, RAW_DIR, drive[:10], CALIBRATION_FILE), intrinsics.numpy(),
                          (height, width))
    return out_dir
