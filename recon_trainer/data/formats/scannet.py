"""ScanNet as SimpleRecon's export lays it out (the layout Spann3R trains on).

    ROOT/splits/scannetv2_{train,val,test}.txt      one scene id a line
    ROOT/{scans,scans_test}/<scene>/intrinsic/intrinsic_depth.txt   4x4 (K in the top-left 3x3)
    ROOT/{scans,scans_test}/<scene>/sensor_data/frame-<6 digits>.color.jpg
                                                   frame-<6 digits>.depth.png   uint16 millimetres, 0 unknown
                                                   frame-<6 digits>.pose.txt    4x4 camera-to-world (OpenCV)

The colour image is resized to the depth map's size (the depth intrinsics hold for both), as
Spann3R does. ScanNet's K has integer pixel centres; records use centres at + 0.5
(data/records.py), so the principal point moves by half a pixel. Poses that are not finite
(ScanNet marks failed tracking with -inf) are kept as read; readers decide what to skip.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.formats.poses import read_matrix_file
from recon_trainer.data.formats.scene_files import list_folder, read_list_file, write_depth_png
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

SPLIT_FOLDERS = {"train": "scans", "val": "scans", "test": "scans_test"}
DEPTH_SCALE = 1000.0  # depth PNG units per metre


def scene_folder(root: str, split: str, scene: str) -> str:
    """ROOT/{scans,scans_test}/<scene>."""
    return os.path.join(root, SPLIT_FOLDERS[split], scene)


def frame_paths(root: str, split: str, scene: str, frame: int) -> dict:
    """The color, depth and pose files of one frame."""
    base = os.path.join(scene_folder(root, split, scene), "sensor_data", f"frame-{frame:06d}")
    return {"color": base + ".color.jpg", "depth": base + ".depth.png", "pose": base + ".pose.txt"}


def read_split(root: str, split: str) -> List[str]:
    """The scene ids of ROOT/splits/scannetv2_<split>.txt; DataFileError naming it when missing."""
    return read_list_file(os.path.join(root, "splits", f"scannetv2_{split}.txt"), "ScanNet split list")


def list_frames(root: str, split: str, scene: str) -> List[int]:
    """The frame numbers of a scene that have a colour image, sorted."""
    names = list_folder(os.path.join(scene_folder(root, split, scene), "sensor_data"), "scene's frames")
    return sorted(int(name[len("frame-"):-len(".color.jpg")]) for name in names
                  if name.startswith("frame-") and name.endswith(".color.jpg"))


def read_intrinsics(root: str, split: str, scene: str) -> torch.Tensor:
    """(3, 3) float32 depth-camera K in the records' pixel convention."""
    matrix = read_matrix_file(os.path.join(scene_folder(root, split, scene), "intrinsic", "intrinsic_depth.txt"))
    return intrinsics_centre_to_corner(torch.tensor(matrix[:3, :3], dtype=torch.float32))


def read_frame(root: str, split: str, scene: str, frame: int, intrinsics: Optional[torch.Tensor] = None,
               dataset: str = "") -> ViewRecord:
    """One frame as a ViewRecord: image resized to the depth size, metric depth (0 unknown),
    K (read when not given), camera-to-world pose."""
    paths = frame_paths(root, split, scene, frame)
    try:
        with Image.open(paths["depth"]) as file:
            depth_mm = np.array(file)
        with Image.open(paths["color"]) as file:
            color = file.convert("RGB")
            if color.size != (depth_mm.shape[1], depth_mm.shape[0]):
                color = color.resize((depth_mm.shape[1], depth_mm.shape[0]), Image.BILINEAR)
            rgb = np.array(color)
    except OSError as error:
        raise DataFileError(f"{paths['color']}: cannot read the frame: {error}") from None
    if depth_mm.ndim != 2:
        raise DataFileError(f"{paths['depth']}: expected a single-channel 16-bit depth PNG, got {depth_mm.shape}")
    pose = read_matrix_file(paths["pose"])
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth_mm.astype(np.float32) / DEPTH_SCALE),
        depth_kind="metric",
        intrinsics=read_intrinsics(root, split, scene) if intrinsics is None else intrinsics,
        camera_to_world=torch.tensor(pose, dtype=torch.float32),
        sequence=scene,
        frame=int(frame),
        dataset=dataset,
        label_type="sensor",
        path=paths["color"],
    )


def write_frame(root: str, split: str, scene: str, frame: int, rgb: np.ndarray, depth_m: np.ndarray,
                camera_to_world: np.ndarray) -> None:
    """Write one frame (tests, tiny synthetic copies): rgb (H, W, 3) uint8 as JPEG (4:4:4), depth (H, W)
    metres as uint16 millimetres (0 unknown), the 4x4 pose as text."""
    paths = frame_paths(root, split, scene, frame)
    os.makedirs(os.path.dirname(paths["color"]), exist_ok=True)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(paths["color"], quality=95, subsampling=0)
    write_depth_png(paths["depth"], depth_m, DEPTH_SCALE)
    np.savetxt(paths["pose"], np.asarray(camera_to_world, dtype=np.float64))


def write_scene(root: str, split: str, scene: str, intrinsics_opencv: np.ndarray) -> None:
    """Write a scene's intrinsic_depth.txt (4x4, K (3, 3) with integer pixel centres in the top
    left) and add the scene to the split list."""
    folder = os.path.join(scene_folder(root, split, scene), "intrinsic")
    os.makedirs(folder, exist_ok=True)
    matrix = np.eye(4)
    matrix[:3, :3] = intrinsics_opencv
    np.savetxt(os.path.join(folder, "intrinsic_depth.txt"), matrix)
    os.makedirs(os.path.join(root, "splits"), exist_ok=True)
    with open(os.path.join(root, "splits", f"scannetv2_{split}.txt"), "a", encoding="utf-8") as file:
        file.write(scene + "\n")


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny ScanNet copy under out_dir: n_scenes rendered room sequences of n_frames each
    (multiview/synthetic_views.py), scenes scene0000_00.. in the train split and one more in val.
    Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_room_walk  # imported here: slow to import

    splits = ["train"] * n_scenes + ["val"]
    for index, split in enumerate(splits):
        scene = f"scene{index:04d}_00"
        sequence = render_room_walk(n_frames, image_size_hw, seed=seed * 1000, scene_index=index)
        write_scene(out_dir, split, scene, sequence.intrinsics_opencv())
        for frame in range(n_frames):
            write_frame(out_dir, split, scene, frame, sequence.rgb[frame], sequence.depth[frame],
                        sequence.camera_to_world[frame])
    return out_dir
