"""Habitat multi-view sets rendered by CroCo's `generate_multiview_images.py` (the layout DUSt3R and
Spann3R train on).

    ROOT/<data>/<scene>/<set:08>_<i>.jpeg                 view i = 1..5 of a set (5 covisible views)
    ROOT/<data>/<scene>/<set:08>_<i>_depth.exr            one channel (half float), metres, 0 unknown
    ROOT/<data>/<scene>/<set:08>_<i>_camera_params.json   {"camera_intrinsics": 3x3, "R_cam2world": 3x3,
                                                            "t_cam2world": 3}
    ROOT/Habitat_<size>_scenes_<split>.txt                DUSt3R's lists: one set a line, "<data>/<scene>/<set:08>"

Spann3R walks ROOT/<data>/<scene> folders; DUSt3R reads a list file. The pose is camera-to-world
with OpenCV axes; K's principal point (W/2, H/2) is in integer-centre pixels (OpenCV, as CroCo's
point maps use it; records add + 0.5).
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.formats.scene_files import read_list_file
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

VIEWS_PER_SET = 5  # CroCo renders sets of 5 views; files count them from 1
_IMAGE_NAME = re.compile(r"^(\d{8})_(\d+)\.jpeg$")


def view_paths(root: str, prefix: str, view: int) -> Dict[str, str]:
    """The image, depth and camera files of view `view` of the set at ROOT/<prefix> (prefix
    "<data>/<scene>/<set:08>")."""
    base = os.path.join(root, f"{prefix}_{view}")
    return {"image": base + ".jpeg", "depth": base + "_depth.exr", "camera": base + "_camera_params.json"}


def list_set_file(root: str, size: int, split: str) -> List[str]:
    """The set prefixes of DUSt3R's ROOT/Habitat_<size>_scenes_<split>.txt."""
    return read_list_file(os.path.join(root, f"Habitat_{size}_scenes_{split}.txt"), "Habitat set list")


def list_sets(root: str) -> Dict[str, List[int]]:
    """{set prefix "<data>/<scene>/<set:08>": sorted view numbers with an image} of every
    ROOT/<data>/<scene> folder (Spann3R's walk), sorted by prefix."""
    sets: Dict[str, List[int]] = {}
    try:
        datas = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        for data in datas:
            folder = os.path.join(root, data)
            scenes = sorted(s for s in os.listdir(folder) if os.path.isdir(os.path.join(folder, s)))
            for scene in scenes:
                for name in os.listdir(os.path.join(root, data, scene)):
                    match = _IMAGE_NAME.match(name)
                    if match:
                        sets.setdefault(f"{data}/{scene}/{match.group(1)}", []).append(int(match.group(2)))
    except OSError as error:
        raise DataFileError(f"{root}: cannot list the Habitat scenes: {error}") from None
    return {prefix: sorted(views) for prefix, views in sorted(sets.items())}


def read_depth_exr(path: str) -> np.ndarray:
    """(H, W) float32 of a one-channel EXR (the channel 'Y' when there are several); non-finite -> 0."""
    try:
        import OpenEXR
    except ImportError:
        raise DataFileError(f"{path}: reading Habitat's EXR depth needs the OpenEXR package (pip install OpenEXR)"
                            ) from None
    try:
        with OpenEXR.File(path) as file:
            channels = file.channels()
            name = "Y" if "Y" in channels else next(iter(channels)) if len(channels) == 1 else None
            if name is None:
                raise DataFileError(f"{path}: expected one depth channel (or 'Y'), got {sorted(channels)}")
            depth = np.asarray(channels[name].pixels, dtype=np.float32)
    except RuntimeError as error:
        raise DataFileError(f"{path}: cannot read the EXR depth: {error}") from None
    if depth.ndim != 2:
        raise DataFileError(f"{path}: expected a one-channel depth map, got shape {depth.shape}")
    return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)


def read_camera(path: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(K (3, 3) records' convention, camera_to_world (4, 4) OpenCV) of a _camera_params.json."""
    try:
        with open(path, encoding="utf-8") as file:
            params = json.load(file)
        intrinsics = np.asarray(params["camera_intrinsics"], dtype=np.float64)
        rotation = np.asarray(params["R_cam2world"], dtype=np.float64)
        translation = np.asarray(params["t_cam2world"], dtype=np.float64).reshape(-1)
        if intrinsics.shape != (3, 3) or rotation.shape != (3, 3) or translation.shape != (3,):
            raise ValueError(f"shapes {intrinsics.shape}, {rotation.shape}, {translation.shape}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataFileError(f"{path}: expected camera_intrinsics (3x3), R_cam2world (3x3) and t_cam2world (3): "
                            f"{error!r}") from None
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return intrinsics_centre_to_corner(torch.tensor(intrinsics, dtype=torch.float32)), torch.tensor(pose).float()


def read_view(root: str, prefix: str, view: int, dataset: str = "") -> ViewRecord:
    """View `view` of a set: image, metric depth (0 unknown), K and pose."""
    paths = view_paths(root, prefix, view)
    try:
        with Image.open(paths["image"]) as file:
            rgb = np.array(file.convert("RGB"))
    except OSError as error:
        raise DataFileError(f"{paths['image']}: cannot read the image: {error}") from None
    depth = read_depth_exr(paths["depth"])
    if depth.shape != rgb.shape[:2]:
        raise DataFileError(f"{paths['depth']}: expected a depth map of the image's size {rgb.shape[:2]}, "
                            f"got {depth.shape}")
    intrinsics, pose = read_camera(paths["camera"])
    return ViewRecord(image=image_tensor(rgb), depth=torch.from_numpy(depth),
                      intrinsics=intrinsics, camera_to_world=pose, sequence=prefix, frame=view, dataset=dataset,
                      label_type="synthetic", path=paths["image"])


def write_set(root: str, prefix: str, rgb: np.ndarray, depth_m: np.ndarray, intrinsics_opencv: np.ndarray,
              camera_to_world: np.ndarray) -> None:
    """Write one set (tests, tiny copies) as views 1..V: rgb (V, H, W, 3) uint8 JPEG, depth (V, H, W)
    metres as a half-float EXR channel 'Y' (as CroCo's cv2.imwrite), K (3, 3) with integer pixel
    centres and camera_to_world (V, 4, 4) OpenCV in the JSON."""
    import OpenEXR

    os.makedirs(os.path.dirname(os.path.join(root, prefix)), exist_ok=True)
    for i in range(len(rgb)):
        paths = view_paths(root, prefix, i + 1)
        image = Image.fromarray(np.asarray(rgb[i], dtype=np.uint8))
        image.save(paths["image"], format="JPEG", quality=95, subsampling=0)
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"Y": np.asarray(depth_m[i], dtype=np.float16)}) as file:
            file.write(paths["depth"])
        pose = np.asarray(camera_to_world[i], dtype=np.float64)
        params = {"camera_intrinsics": np.asarray(intrinsics_opencv, dtype=np.float64).tolist(),
                  "R_cam2world": pose[:3, :3].tolist(), "t_cam2world": pose[:3, 3].tolist()}
        with open(paths["camera"], "w", encoding="utf-8") as file:
            json.dump(params, file)


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny Habitat copy under out_dir: n_scenes scenes (out_dir/tiny/scene<k>) of
    max(2, n_frames // 5) sets of 5 consecutive views along one rendered path each
    (multiview/synthetic_views.py), and DUSt3R's list Habitat_<n>_scenes_train.txt of all n sets.
    Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_room_walk  # imported here: slow to import

    prefixes = []
    n_sets = max(2, n_frames // VIEWS_PER_SET)
    for scene in range(n_scenes):
        sequence = render_room_walk(n_sets * VIEWS_PER_SET, image_size_hw, seed=seed * 1000 + 300,
                                    scene_index=scene)
        for index in range(n_sets):
            views = slice(index * VIEWS_PER_SET, (index + 1) * VIEWS_PER_SET)
            prefix = f"tiny/scene{scene}/{index:08d}"
            write_set(out_dir, prefix, sequence.rgb[views], sequence.depth[views], sequence.intrinsics_opencv(),
                      sequence.camera_to_world[views])
            prefixes.append(prefix)
    with open(os.path.join(out_dir, f"Habitat_{len(prefixes)}_scenes_train.txt"), "w", encoding="utf-8") as file:
        file.write("\n".join(prefixes) + "\n")
    return out_dir
