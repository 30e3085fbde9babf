"""ARKitScenes low-resolution RGB-D frames (the raw download's layout, as Spann3R reads it).

    ROOT/raw/{Training,Validation}/<scene>/lowres_wide/<scene>_<ts>.png                RGB
                                           lowres_depth/<scene>_<ts>.png               uint16 millimetres, 0 unknown
                                           lowres_wide_intrinsics/<scene>_<ts>.pincam  "w h fx fy cx cy"
                                           lowres_wide.traj    lines "ts rx ry rz tx ty tz"

<ts> is the timestamp in seconds with 3 decimals; a frame's frames are those with a depth map.
A .pincam is looked up at <ts>, then at <ts> - 0.001 and <ts> + 0.001 (the files' timestamps are
rounded differently). A .traj line is a world-to-camera transform: axis-angle rotation (radians) and
translation (metres), at a timestamp rounded to 3 decimals for the look-up; a frame without an exact
match takes the nearest trajectory time within 0.1 s (Spann3R takes the last one within 0.1 s), and
has no pose otherwise. The camera-to-world pose is the inverse, with the world axes turned as
Spann3R does (x and y swapped, z negated: a proper rotation of the world frame); its camera axes
are OpenCV's. K has integer pixel centres (records add + 0.5).
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.formats.poses import matrix_to_quaternion, quaternion_to_matrix
from recon_trainer.data.formats.scene_files import list_folder, read_rgb_and_depth, write_depth_png
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

SPLIT_FOLDERS = {"train": "Training", "val": "Validation"}
DEPTH_SCALE = 1000.0  # depth PNG units per metre
POSE_TOLERANCE = 0.1  # seconds: the farthest trajectory time a frame without an exact match takes
# Spann3R's turn of the world frame (rows of the camera-to-world pose: y, x, -z).
WORLD_TURN = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def scene_folder(root: str, split: str, scene: str) -> str:
    """ROOT/raw/{Training,Validation}/<scene>."""
    return os.path.join(root, "raw", SPLIT_FOLDERS[split], scene)


def scene_paths(root: str, split: str, scene: str) -> Dict[str, str]:
    """The scene's image, depth and intrinsics folders and its trajectory file."""
    folder = scene_folder(root, split, scene)
    return {"image": os.path.join(folder, "lowres_wide"), "depth": os.path.join(folder, "lowres_depth"),
            "intrinsics": os.path.join(folder, "lowres_wide_intrinsics"),
            "traj": os.path.join(folder, "lowres_wide.traj")}


def list_scenes(root: str, split: str) -> List[str]:
    """The scenes of a split folder that have the four parts of scene_paths, sorted."""
    names = sorted(list_folder(os.path.join(root, "raw", SPLIT_FOLDERS[split]), "ARKitScenes scenes"))
    return [name for name in names if all(os.path.exists(p) for p in scene_paths(root, split, name).values())]


def list_timestamps(root: str, split: str, scene: str) -> List[str]:
    """The timestamps (strings as in the file names) of the scene's depth maps, in time order."""
    names = list_folder(scene_paths(root, split, scene)["depth"], "depth maps")
    prefix = scene + "_"
    stamps = [name[len(prefix):-len(".png")] for name in names if name.startswith(prefix) and name.endswith(".png")]
    return sorted(stamps, key=float)


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """(3,) rotation vector (radians) to a (3, 3) rotation matrix (Rodrigues)."""
    angle = float(np.linalg.norm(axis_angle))
    if angle < 1e-12:
        return np.eye(3)
    axis = np.asarray(axis_angle, dtype=np.float64) / angle
    return quaternion_to_matrix(np.array([math.cos(angle / 2.0), *(math.sin(angle / 2.0) * axis)]))


def matrix_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix to its (3,) rotation vector (radians, angle in [0, pi])."""
    w, *xyz = matrix_to_quaternion(rotation)
    sine = float(np.linalg.norm(xyz))
    if sine < 1e-12:
        return np.zeros(3)
    return 2.0 * math.atan2(sine, w) * np.asarray(xyz) / sine


def read_trajectory(path: str) -> Dict[str, np.ndarray]:
    """{timestamp rounded to 3 decimals as '%.3f': (4, 4) float64 camera-to-world pose} (module doc)."""
    poses = {}
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.split() for line in file if line.strip()]
    except OSError as error:
        raise DataFileError(f"{path}: cannot read the trajectory: {error}") from None
    for number, tokens in enumerate(lines, 1):
        try:
            if len(tokens) != 7:
                raise ValueError(f"{len(tokens)} values")
            values = [float(token) for token in tokens]
        except ValueError as error:
            raise DataFileError(f"{path}: line {number}: expected 'ts rx ry rz tx ty tz' (7 numbers): {error}"
                                ) from None
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = axis_angle_to_matrix(np.array(values[1:4]))
        world_to_camera[:3, 3] = values[4:7]
        poses[f"{round(values[0], 3):.3f}"] = WORLD_TURN @ np.linalg.inv(world_to_camera)
    return poses


def pose_at(poses: Dict[str, np.ndarray], timestamp: str) -> Optional[np.ndarray]:
    """The pose at `timestamp`, else at the nearest trajectory time within POSE_TOLERANCE, else None."""
    if timestamp in poses:
        return poses[timestamp]
    if not poses:
        return None
    nearest = min(poses, key=lambda key: abs(float(key) - float(timestamp)))
    return poses[nearest] if abs(float(nearest) - float(timestamp)) < POSE_TOLERANCE else None


def read_intrinsics(root: str, split: str, scene: str, timestamp: str) -> torch.Tensor:
    """(3, 3) K (records' convention) of the frame's .pincam (module doc for the fallbacks)."""
    folder = scene_paths(root, split, scene)["intrinsics"]
    candidates = [timestamp, f"{float(timestamp) - 0.001:.3f}", f"{float(timestamp) + 0.001:.3f}"]
    paths = [os.path.join(folder, f"{scene}_{stamp}.pincam") for stamp in candidates]
    path = next((p for p in paths if os.path.exists(p)), paths[0])
    try:
        values = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the intrinsics 'w h fx fy cx cy': {error}") from None
    if values.shape != (6,):
        raise DataFileError(f"{path}: expected 6 numbers 'w h fx fy cx cy', got {values.size}")
    _, _, fx, fy, cx, cy = values
    matrix = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return intrinsics_centre_to_corner(matrix)


def frame_paths(root: str, split: str, scene: str, timestamp: str) -> Dict[str, str]:
    """The image and depth files of one frame."""
    paths = scene_paths(root, split, scene)
    return {kind: os.path.join(paths[kind], f"{scene}_{timestamp}.png") for kind in ("image", "depth")}


def read_frame(root: str, split: str, scene: str, timestamp: str, camera_to_world: Optional[np.ndarray],
               dataset: str = "") -> ViewRecord:
    """One frame: image, metric depth (0 unknown), K, the given pose (None: NaN, no pose)."""
    paths = frame_paths(root, split, scene, timestamp)
    rgb, depth = read_rgb_and_depth(paths["image"], paths["depth"], DEPTH_SCALE)
    pose = torch.full((4, 4), float("nan")) if camera_to_world is None else torch.tensor(camera_to_world).float()
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth),
        intrinsics=read_intrinsics(root, split, scene, timestamp),
        camera_to_world=pose,
        sequence=scene,
        dataset=dataset,
        label_type="lidar",
        path=paths["image"],
    )


def write_scene(root: str, split: str, scene: str, timestamps: List[float], rgb: np.ndarray, depth_m: np.ndarray,
                intrinsics_opencv: np.ndarray, camera_to_world: np.ndarray) -> None:
    """Write one scene (tests, tiny copies): frame i at timestamps[i] (seconds): rgb (N, H, W, 3)
    uint8 PNG, depth (N, H, W) metres as uint16 millimetres, K (3, 3) with integer pixel centres in
    a .pincam per frame (frame 1's at its time + 0.001, to exercise the fallback), camera_to_world
    (N, 4, 4) OpenCV as trajectory lines at each time + 0.0002 s (rounded away on reading)."""
    paths = scene_paths(root, split, scene)
    for kind in ("image", "depth", "intrinsics"):
        os.makedirs(paths[kind], exist_ok=True)
    height, width = rgb.shape[1:3]
    k = np.asarray(intrinsics_opencv, dtype=np.float64)
    lines = []
    for i, time in enumerate(timestamps):
        stamp = f"{time:.3f}"
        files = frame_paths(root, split, scene, stamp)
        Image.fromarray(np.asarray(rgb[i], dtype=np.uint8)).save(files["image"])
        write_depth_png(files["depth"], depth_m[i], DEPTH_SCALE)
        pincam_stamp = f"{time + 0.001:.3f}" if i == 1 else stamp
        with open(os.path.join(paths["intrinsics"], f"{scene}_{pincam_stamp}.pincam"), "w", encoding="utf-8") as file:
            file.write(" ".join(repr(float(v)) for v in (width, height, k[0, 0], k[1, 1], k[0, 2], k[1, 2])) + "\n")
        world_to_camera = np.linalg.inv(np.asarray(camera_to_world[i], dtype=np.float64)) @ WORLD_TURN
        rotation = matrix_to_axis_angle(world_to_camera[:3, :3])
        values = [time + 0.0002, *rotation, *world_to_camera[:3, 3]]
        lines.append(" ".join(repr(float(v)) for v in values))
    with open(paths["traj"], "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny ARKitScenes copy under out_dir: n_scenes rendered sequences in Training and one in
    Validation, 10 frames a second (multiview/synthetic_views.py). Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_room_walk  # imported here: slow to import

    for index, split in enumerate(["train"] * n_scenes + ["val"]):
        sequence = render_room_walk(n_frames, image_size_hw, seed=seed * 1000 + 200, scene_index=index)
        times = [6800.0 + 0.1 * i for i in range(n_frames)]
        write_scene(out_dir, split, f"{41069020 + index}", times, sequence.rgb, sequence.depth,
                    sequence.intrinsics_opencv(), sequence.camera_to_world)
    return out_dir
