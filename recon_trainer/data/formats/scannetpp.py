"""ScanNet++ DSLR frames as SplaTAM's pre-processing leaves them (the layout Spann3R trains on).

    ROOT/splits/nvs_sem_{train,val}.txt                     one scene id a line
    ROOT/data/<scene>/dslr/undistorted_images/<name>.JPG
    ROOT/data/<scene>/dslr/undistorted_depths/<name>.png     uint16 millimetres, 0 unknown
    ROOT/data/<scene>/dslr/nerfstudio/transforms_undistorted.json
        {"fl_x", "fl_y", "cx", "cy", "frames": [{"file_path": "<name>.JPG", "transform_matrix": 4x4}, ...]}
    ROOT/data/<scene>/dslr/train_test_lists.json              {"train": ["<name>.JPG", ...], ...}

The frames used are the `train` list, sorted by name. transform_matrix is camera-to-world with
OpenGL camera axes (y up, z backward): columns 1 and 2 are negated for OpenCV. cx, cy have integer
pixel centres (OpenCV, as the undistortion writes them; records add + 0.5).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.formats.scene_files import read_list_file, read_rgb_and_depth, write_depth_png
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

DEPTH_SCALE = 1000.0  # depth PNG units per metre


def dslr_folder(root: str, scene: str) -> str:
    """ROOT/data/<scene>/dslr."""
    return os.path.join(root, "data", scene, "dslr")


def frame_paths(root: str, scene: str, name: str) -> Dict[str, str]:
    """The image and depth files of frame `name` (e.g. DSC01752.JPG)."""
    folder = dslr_folder(root, scene)
    return {"image": os.path.join(folder, "undistorted_images", name),
            "depth": os.path.join(folder, "undistorted_depths", os.path.splitext(name)[0] + ".png")}


def read_split(root: str, split: str) -> List[str]:
    """The scene ids of ROOT/splits/nvs_sem_<split>.txt; DataFileError naming it when missing."""
    return read_list_file(os.path.join(root, "splits", f"nvs_sem_{split}.txt"), "ScanNet++ split list")


def _json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the JSON file: {error}") from None


def read_train_frames(root: str, scene: str) -> List[str]:
    """The sorted `train` frame names of dslr/train_test_lists.json."""
    path = os.path.join(dslr_folder(root, scene), "train_test_lists.json")
    names = _json(path)
    if not isinstance(names, dict) or not isinstance(names.get("train"), list):
        raise DataFileError(f"{path}: expected an object with a 'train' list of image names")
    return sorted(str(name) for name in names["train"])


def read_cameras(root: str, scene: str) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The scene's K (3, 3) (records' convention) and {frame name: (4, 4) OpenCV camera-to-world}
    from transforms_undistorted.json."""
    path = os.path.join(dslr_folder(root, scene), "nerfstudio", "transforms_undistorted.json")
    meta = _json(path)
    try:
        fx, fy, cx, cy = (float(meta[key]) for key in ("fl_x", "fl_y", "cx", "cy"))
        poses = {}
        for frame in meta["frames"]:
            pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
            if pose.shape != (4, 4):
                raise ValueError(f"transform_matrix of {frame['file_path']!r} has shape {pose.shape}")
            pose[:, 1:3] *= -1.0  # OpenGL to OpenCV camera axes
            poses[str(frame["file_path"])] = torch.tensor(pose, dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise DataFileError(f"{path}: expected fl_x, fl_y, cx, cy and frames with file_path and a 4x4 "
                            f"transform_matrix: {error!r}") from None
    intrinsics = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return intrinsics_centre_to_corner(intrinsics), poses


def read_frame(root: str, scene: str, name: str, intrinsics: torch.Tensor, camera_to_world: torch.Tensor,
               dataset: str = "") -> ViewRecord:
    """One frame: image, metric depth (0 unknown) of the same size, the given K and pose."""
    paths = frame_paths(root, scene, name)
    rgb, depth = read_rgb_and_depth(paths["image"], paths["depth"], DEPTH_SCALE)
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth),
        intrinsics=intrinsics.clone(),
        camera_to_world=camera_to_world.clone(),
        sequence=scene,
        dataset=dataset,
        label_type="lidar",
        path=paths["image"],
    )


def write_scene(root: str, split: str, scene: str, names: List[str], rgb: np.ndarray, depth_m: np.ndarray,
                intrinsics_opencv: np.ndarray, camera_to_world: np.ndarray) -> None:
    """Write one scene (tests, tiny copies): rgb (N, H, W, 3) uint8 as JPEG, depth (N, H, W)
    metres as uint16 millimetres, K (3, 3) with integer pixel centres, camera_to_world (N, 4, 4)
    OpenCV (stored with OpenGL axes); every frame in the train list; the scene added to the split."""
    folder = dslr_folder(root, scene)
    for sub in ("undistorted_images", "undistorted_depths", "nerfstudio"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    frames = []
    for i, name in enumerate(names):
        paths = frame_paths(root, scene, name)
        image = Image.fromarray(np.asarray(rgb[i], dtype=np.uint8))
        image.save(paths["image"], format="JPEG", quality=95, subsampling=0)
        write_depth_png(paths["depth"], depth_m[i], DEPTH_SCALE)
        pose = np.asarray(camera_to_world[i], dtype=np.float64).copy()
        pose[:, 1:3] *= -1.0
        frames.append({"file_path": name, "transform_matrix": pose.tolist()})
    k = np.asarray(intrinsics_opencv, dtype=np.float64)
    meta = {"fl_x": k[0, 0], "fl_y": k[1, 1], "cx": k[0, 2], "cy": k[1, 2], "w": int(rgb.shape[2]),
            "h": int(rgb.shape[1]), "frames": frames}
    with open(os.path.join(folder, "nerfstudio", "transforms_undistorted.json"), "w", encoding="utf-8") as file:
        json.dump(meta, file)
    with open(os.path.join(folder, "train_test_lists.json"), "w", encoding="utf-8") as file:
        json.dump({"train": list(names), "test": []}, file)
    os.makedirs(os.path.join(root, "splits"), exist_ok=True)
    with open(os.path.join(root, "splits", f"nvs_sem_{split}.txt"), "a", encoding="utf-8") as file:
        file.write(scene + "\n")


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny ScanNet++ copy under out_dir: n_scenes rendered sequences in the train split and one in
    val, frames DSC00000.JPG.. (multiview/synthetic_views.py). Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_room_walk  # imported here: slow to import

    for index, split in enumerate(["train"] * n_scenes + ["val"]):
        sequence = render_room_walk(n_frames, image_size_hw, seed=seed * 1000 + 100, scene_index=index)
        write_scene(out_dir, split, f"{index:02d}a{index:07d}", [f"DSC{i:05d}.JPG" for i in range(n_frames)],
                    sequence.rgb, sequence.depth, sequence.intrinsics_opencv(), sequence.camera_to_world)
    return out_dir
