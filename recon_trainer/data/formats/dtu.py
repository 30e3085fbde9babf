"""DTU (MVSNet's test scans with depth rendered from the reference meshes by Spann3R's
tools/render_dtu.py), the layout Spann3R's DTU evaluates on.

    ROOT/<scan>/images/<name>.jpg            (MVSNet's naming: 00000000.jpg, ...)
    ROOT/<scan>/depths/<name>.npy            float depth rendered from the mesh, 0 where it is missed
    ROOT/<scan>/binary_masks/<name>.png      single-channel object mask, 0 or 255
    ROOT/<scan>/cams/<name>_cam.txt          MVSNet camera (formats/blendedmvs.py)
    ROOT/<scan>/pair.txt                     MVSNet view clusters (formats/blendedmvs.py)

Lengths are DTU's millimetres (depth, camera translations); records keep them. The mask reads
as value / 255 > 0.5, is resized to the depth's size by nearest neighbour (OpenCV's rule: source
index floor(i * src / dst)) and eroded by a 10x10 square (OpenCV's erode: the window spans offsets
-5..4, the outside of the image does not erode); the depth is zeroed outside the eroded mask, which
is the record's mask_fg. The pose is the inverse of the camera file's world-to-camera.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.depth.image_files import open_image, read_rgb
from recon_trainer.data.formats.blendedmvs import nearest_clusters, read_mvsnet_cam, write_mvsnet_cam, write_pair_file
from recon_trainer.data.formats.scene_files import list_folder, list_subfolders
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

EROSION = 10  # side of the square the mask is eroded by (pixels)


def list_scans(root: str) -> List[str]:
    """The scan folders under ROOT, sorted."""
    return list_subfolders(root, "DTU scans")


def list_images(root: str, scan: str) -> List[str]:
    """The file names in ROOT/<scan>/images, sorted."""
    return sorted(list_folder(os.path.join(root, scan, "images"), "scan's images"))


def frame_paths(root: str, scan: str, name: str) -> Dict[str, str]:
    """The image, depth, mask and camera files of the image `name` ('00000000.jpg')."""
    folder = os.path.join(root, scan)
    return {"image": os.path.join(folder, "images", name),
            "depth": os.path.join(folder, "depths", name.replace(".jpg", ".npy")),
            "mask": os.path.join(folder, "binary_masks", name.replace(".jpg", ".png")),
            "cam": os.path.join(folder, "cams", name.replace(".jpg", "_cam.txt"))}


def pair_path(root: str, scan: str) -> str:
    """ROOT/<scan>/pair.txt."""
    return os.path.join(root, scan, "pair.txt")


def resize_nearest(array: np.ndarray, size_hw: Sequence[int]) -> np.ndarray:
    """(H, W) array resized to size_hw by OpenCV's nearest rule:
    dst[i, j] = src[floor(i * H / H'), floor(j * W / W')]."""
    h, w = array.shape
    rows = np.minimum(np.floor(np.arange(size_hw[0]) * (h / size_hw[0])).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(size_hw[1]) * (w / size_hw[1])).astype(np.int64), w - 1)
    return array[rows[:, None], cols[None, :]]


def erode_mask(mask: np.ndarray, size: int = EROSION) -> np.ndarray:
    """(H, W) float32 {0, 1} mask eroded by a size x size square as OpenCV's erode (module doc)."""
    from scipy import ndimage  # imported where used: a heavy import

    return ndimage.minimum_filter(mask.astype(np.float32), size=size, mode="constant", cval=1.0)


def read_mask(path: str, size_hw: Sequence[int]) -> np.ndarray:
    """(H, W) float32 {0, 1} mask at size_hw, eroded (module doc)."""
    with open_image(path) as image:
        values = np.asarray(image).astype(np.float32) / 255.0
    if values.ndim != 2:
        raise DataFileError(f"{path}: expected a single-channel mask, got shape {values.shape}")
    binary = np.where(values > 0.5, 1.0, np.where(values < 0.5, 0.0, values)).astype(np.float32)
    if binary.shape != tuple(size_hw):
        binary = resize_nearest(binary, size_hw)
    return erode_mask(binary)


def read_depth(path: str) -> np.ndarray:
    """(H, W) float32 depth of a .npy (NaN -> 0)."""
    try:
        depth = np.load(path)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read a depth array: {error}") from None
    if depth.ndim != 2:
        raise DataFileError(f"{path}: expected an (H, W) depth array, got shape {depth.shape}")
    return np.nan_to_num(depth.astype(np.float32), nan=0.0)


def read_frame(root: str, scan: str, name: str, dataset: str = "") -> ViewRecord:
    """One view: image, depth zeroed outside the eroded mask, that mask as mask_fg (bool), K
    (records' convention), camera-to-world pose; frame = the image's number, path = its file."""
    paths = frame_paths(root, scan, name)
    rgb = read_rgb(paths["image"])
    depth = read_depth(paths["depth"])
    mask = read_mask(paths["mask"], depth.shape)
    if depth.shape != rgb.shape[:2]:
        raise DataFileError(f"{paths['depth']}: shape {depth.shape}, expected the image's {rgb.shape[:2]}")
    camera = read_mvsnet_cam(paths["cam"])
    stem = os.path.splitext(name)[0]
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth * mask),
        depth_kind="metric",
        intrinsics=intrinsics_centre_to_corner(torch.tensor(camera.intrinsics, dtype=torch.float32)),
        camera_to_world=torch.tensor(np.linalg.inv(camera.world_to_camera), dtype=torch.float32),
        mask_fg=torch.from_numpy(mask > 0.5),
        sequence=scan,
        frame=int(stem) if stem.isdigit() else 0,
        dataset=dataset,
        label_type="lidar",
        path=paths["image"],
    )


def write_scan(root: str, scan: str, rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray,
               intrinsics_opencv: np.ndarray, camera_to_world: np.ndarray, neighbours: int = 10) -> List[str]:
    """Write N views (rgb (N, H, W, 3) uint8, depth (N, H, W) with 0 off the object, mask (N, H, W)
    bool, K (3, 3) with integer pixel centres, camera_to_world (N, 4, 4)) as <8 digits>.jpg and
    the rest, with pair.txt (nearest cameras). Returns the image names."""
    names = [f"{k:08d}.jpg" for k in range(len(rgb))]
    for k, name in enumerate(names):
        paths = frame_paths(root, scan, name)
        for path in paths.values():
            os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(np.asarray(rgb[k], dtype=np.uint8)).save(paths["image"], quality=95, subsampling=0)
        np.save(paths["depth"], np.asarray(depth[k], dtype=np.float32))
        Image.fromarray(np.asarray(mask[k], dtype=np.uint8) * 255).save(paths["mask"])
        valid = np.asarray(depth[k])[np.asarray(depth[k]) > 0]
        low = float(valid.min()) if valid.size else 1.0
        write_mvsnet_cam(paths["cam"], intrinsics_opencv, np.linalg.inv(camera_to_world[k]),
                         (low, (float(valid.max()) - low) / 191.0 if valid.size else 1.0))
    write_pair_file(pair_path(root, scan), nearest_clusters(list(range(len(rgb))), camera_to_world, neighbours))
    return names


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny copy under out_dir: n_scenes scans scan<i> (from 1), near object orbits in millimetres
    (multiview/synthetic_views.py DTU_ORBIT) with depth on the object only, as the rendered mesh
    gives it, and the object masks. Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import DTU_ORBIT, render_object_orbit  # slow to import

    for index in range(n_scenes):
        views = render_object_orbit(n_frames, image_size_hw, seed, index, **DTU_ORBIT)
        write_scan(out_dir, f"scan{index + 1}", views.rgb, views.depth * views.object_mask, views.object_mask,
                   views.intrinsics_opencv(), views.camera_to_world)
    return out_dir
