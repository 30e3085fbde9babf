"""Neural RGB-D (NRGBD) scenes, the layout Spann3R's NRGBD evaluates on.

    ROOT/<scene>/images/img<i>.png       i = 0..N-1, N = the number of files in images/
    ROOT/<scene>/depth/depth<i>.png      uint16 millimetres
    ROOT/<scene>/poses.txt               N camera-to-world matrices, 4 lines each, OpenGL axes
                                         (x right, y up, z backward); a matrix whose first line
                                         holds 'nan' is an invalid pose

Depth reads as metres with values outside [1e-3, 10] m -> 0; the colour image is resized to the
depth map's size. Poses turn into OpenCV axes by negating their columns 1 and 2; an invalid pose
reads, as Spann3R's loader, as the identity (so diag(1, -1, -1, 1) in OpenCV axes) with
extras["pose_valid"] False. The intrinsics are the fixed K = (554.2562584220408, 554.2562584220408,
320, 240) (integer pixel centres) of the 640x480 renderings, rescaled for other sizes as
formats/seven_scenes.py does.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.depth.image_files import read_uint16_png
from recon_trainer.data.formats.scene_files import list_folder, list_subfolders
from recon_trainer.data.formats.seven_scenes import fixed_intrinsics, millimetre_depth, millimetre_png, read_rgb_resized
from recon_trainer.data.records import ViewRecord, image_tensor
from recon_trainer.errors import DataFileError

INTRINSICS = (554.2562584220408, 554.2562584220408, 320.0, 240.0)  # fx, fy, cx, cy (integer pixel centres)
INTRINSICS_SIZE_HW = (480, 640)  # the image size INTRINSICS belong to
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # right-multiplied: negates columns 1 and 2 of a camera-to-world


def list_scenes(root: str) -> List[str]:
    """The scene folders under ROOT, sorted."""
    return list_subfolders(root, "NRGBD scenes")


def count_frames(root: str, scene: str) -> int:
    """The number of files in ROOT/<scene>/images."""
    return len(list_folder(os.path.join(root, scene, "images"), "scene's images"))


def frame_paths(root: str, scene: str, frame: int) -> Dict[str, str]:
    """The image and depth files of one frame."""
    return {"image": os.path.join(root, scene, "images", f"img{frame}.png"),
            "depth": os.path.join(root, scene, "depth", f"depth{frame}.png")}


def poses_path(root: str, scene: str) -> str:
    """ROOT/<scene>/poses.txt."""
    return os.path.join(root, scene, "poses.txt")


def read_poses(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(N, 4, 4) float64 camera-to-world poses in OpenCV axes and (N,) bool validity of poses.txt
    (module doc: invalid poses are the identity before the axis change)."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
        poses, valid = [], []
        for start in range(0, len(lines), 4):
            if "nan" in lines[start]:
                poses.append(np.eye(4))
                valid.append(False)
            else:
                matrix = np.array([[float(x) for x in line.split()] for line in lines[start:start + 4]])
                if matrix.shape != (4, 4):
                    raise ValueError(f"lines {start + 1}-{start + 4} are not a 4x4 matrix")
                poses.append(matrix)
                valid.append(True)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the NRGBD poses: {error}") from None
    return np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4) @ GL_TO_CV, np.asarray(valid, dtype=bool)


def read_frame(root: str, scene: str, frame: int, poses: Optional[Tuple[np.ndarray, np.ndarray]] = None,
               dataset: str = "") -> ViewRecord:
    """One frame: image at the depth's size, metric depth, fixed K, OpenCV pose (`poses`: read_poses'
    result, read when not given), extras["pose_valid"] (bool)."""
    paths = frame_paths(root, scene, frame)
    camera_to_world, valid = read_poses(poses_path(root, scene)) if poses is None else poses
    if not 0 <= frame < len(camera_to_world):
        raise DataFileError(f"{poses_path(root, scene)}: no pose for frame {frame} ({len(camera_to_world)} poses)")
    depth = millimetre_depth(read_uint16_png(paths["depth"]))
    rgb = read_rgb_resized(paths["image"], depth.shape)
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth),
        depth_kind="metric",
        intrinsics=fixed_intrinsics(INTRINSICS, INTRINSICS_SIZE_HW, depth.shape),
        camera_to_world=torch.tensor(camera_to_world[frame], dtype=torch.float32),
        sequence=scene,
        frame=int(frame),
        dataset=dataset,
        label_type="synthetic",
        path=paths["image"],
        extras={"pose_valid": bool(valid[frame])},
    )


def write_scene(root: str, scene: str, rgb: np.ndarray, depth: np.ndarray, camera_to_world: np.ndarray,
                invalid_poses: Sequence[int] = ()) -> None:
    """Write N frames (rgb (N, H, W, 3) uint8, depth (N, H, W) metres, camera_to_world (N, 4, 4)
    OpenCV) with poses.txt in OpenGL axes; frames in invalid_poses get a 'nan' matrix. The images
    must follow the fixed K (`fixed_intrinsics(INTRINSICS, INTRINSICS_SIZE_HW, (H, W))`)."""
    for folder in ("images", "depth"):
        os.makedirs(os.path.join(root, scene, folder), exist_ok=True)
    lines = []
    for frame in range(len(rgb)):
        paths = frame_paths(root, scene, frame)
        Image.fromarray(np.asarray(rgb[frame], dtype=np.uint8)).save(paths["image"])
        Image.fromarray(millimetre_png(depth[frame])).save(paths["depth"])
        matrix = np.asarray(camera_to_world[frame], dtype=np.float64) @ GL_TO_CV
        if frame in invalid_poses:
            matrix = np.full((4, 4), np.nan)
        lines += [" ".join(f"{v:.10g}" for v in row) for row in matrix]
    with open(poses_path(root, scene), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny copy under out_dir: n_scenes scenes scene_<i>, room walks of n_frames
    (multiview/synthetic_views.py) rendered with the fixed K at this size. Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_room_walk  # imported here: slow to import

    k = fixed_intrinsics(INTRINSICS, INTRINSICS_SIZE_HW, image_size_hw).double().numpy()
    for index in range(n_scenes):
        views = render_room_walk(n_frames, image_size_hw, seed, index, intrinsics=k)
        write_scene(out_dir, f"scene_{index}", views.rgb, views.depth, views.camera_to_world)
    return out_dir
