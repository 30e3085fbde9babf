"""7-Scenes with SimpleRecon's projected depth, the layout Spann3R's SevenScenes evaluates on.

    ROOT/<scene>/TrainSplit.txt, TestSplit.txt        sequence names a line ("sequence2"; the digits count)
    ROOT/<scene>/seq-<2 digits>/frame-<6 digits>.color.png
                                 frame-<6 digits>.depth.proj.png   uint16 millimetres, 65535 unknown
                                 frame-<6 digits>.pose.txt         4x4 camera-to-world (OpenCV)

Frames are numbered 0..N-1 where N is the number of files with 'color' in their name. Depth reads
as metres with 65535 -> 0 and values outside [1e-3, 10] m -> 0; the colour image is resized to
the depth map's size. The intrinsics are SimpleRecon's fixed K = (fx, fy, cx, cy) = (525, 525,
320, 240) (integer pixel centres) for 640x480 images; for another size (tiny copies) it is
scaled by (W / 640, H / 480) in the records' pixel convention, which leaves 640x480 unchanged.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.depth.image_files import open_image, read_uint16_png
from recon_trainer.data.formats.poses import read_matrix_file
from recon_trainer.data.formats.scene_files import list_folder, list_subfolders, read_list_file
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner, rescale_intrinsics

SPLIT_FILES = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}
INTRINSICS = (525.0, 525.0, 320.0, 240.0)  # SimpleRecon's fx, fy, cx, cy (integer pixel centres)
INTRINSICS_SIZE_HW = (480, 640)  # the image size INTRINSICS belong to
DEPTH_SCALE = 1000.0  # depth PNG units per metre
INVALID_DEPTH = 65535  # the depth PNG's value of unknown depth
DEPTH_LIMITS = (1e-3, 10.0)  # metres; depth outside reads as 0


def fixed_intrinsics(values: Tuple[float, float, float, float], values_size_hw: Tuple[int, int],
                     image_size_hw: Tuple[int, int]) -> torch.Tensor:
    """(3, 3) float32 K (records' convention) of (fx, fy, cx, cy) given with integer pixel centres for
    an image of values_size_hw, rescaled to image_size_hw (module doc). Shared with formats/nrgbd.py."""
    fx, fy, cx, cy = values
    k = intrinsics_centre_to_corner(torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]))
    return rescale_intrinsics(k, values_size_hw, image_size_hw) if image_size_hw != values_size_hw else k


def read_split(root: str, scene: str, split: str) -> List[str]:
    """The sequence folders (seq-XX) of a scene's Train/TestSplit.txt: the digits of each line, two wide."""
    lines = read_list_file(os.path.join(root, scene, SPLIT_FILES[split]), "7-Scenes split file")
    return [f"seq-{''.join(filter(str.isdigit, line)).zfill(2)}" for line in lines]


def list_scenes(root: str) -> List[str]:
    """The scene folders under ROOT, sorted."""
    return list_subfolders(root, "7-Scenes scenes")


def count_frames(root: str, sequence: str) -> int:
    """The number of files with 'color' in their name in ROOT/<scene>/seq-XX (`sequence` is 'scene/seq-XX')."""
    return sum("color" in name for name in list_folder(os.path.join(root, sequence), "sequence's frames"))


def frame_paths(root: str, sequence: str, frame: int) -> Dict[str, str]:
    """The colour, depth and pose files of one frame of 'scene/seq-XX'."""
    base = os.path.join(root, sequence, f"frame-{frame:06d}")
    return {"color": base + ".color.png", "depth": base + ".depth.proj.png", "pose": base + ".pose.txt"}


def millimetre_depth(depth_mm: np.ndarray, limits: Tuple[float, float] = DEPTH_LIMITS) -> np.ndarray:
    """(H, W) float32 metres of a millimetre depth map: / 1000, outside (limits[0], limits[1]) -> 0
    (the loaders zero > 10 m and < 1e-3 m). Shared with formats/nrgbd.py."""
    depth = np.nan_to_num(depth_mm.astype(np.float32), nan=0.0) / np.float32(DEPTH_SCALE)
    depth[(depth > limits[1]) | (depth < limits[0])] = 0.0
    return depth


def read_rgb_resized(path: str, size_hw: Tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image, bilinearly resized to size_hw when it differs."""
    with open_image(path) as image:
        rgb = image.convert("RGB")
        if rgb.size != (size_hw[1], size_hw[0]):
            rgb = rgb.resize((size_hw[1], size_hw[0]), Image.BILINEAR)
        return np.array(rgb)


def read_frame(root: str, sequence: str, frame: int, dataset: str = "") -> ViewRecord:
    """One frame of 'scene/seq-XX': image at the depth's size, metric depth, fixed K, pose."""
    paths = frame_paths(root, sequence, frame)
    depth_mm = read_uint16_png(paths["depth"])
    depth_mm[depth_mm == INVALID_DEPTH] = 0
    depth = millimetre_depth(depth_mm)
    rgb = read_rgb_resized(paths["color"], depth.shape)
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth),
        depth_kind="metric",
        intrinsics=fixed_intrinsics(INTRINSICS, INTRINSICS_SIZE_HW, depth.shape),
        camera_to_world=torch.tensor(read_matrix_file(paths["pose"]), dtype=torch.float32),
        sequence=sequence,
        frame=int(frame),
        dataset=dataset,
        label_type="sensor",
        path=paths["color"],
    )


def millimetre_png(depth_m: np.ndarray, invalid: int = 0) -> np.ndarray:
    """(H, W) uint16 millimetres of depth in metres; unknown (<= 0, non-finite) and too far -> `invalid`."""
    depth = np.asarray(depth_m, dtype=np.float64)
    known = np.isfinite(depth) & (depth > 0)
    millimetres = np.round(np.where(known, depth, 0.0) * DEPTH_SCALE)
    return np.where(known & (millimetres < 65535), millimetres, invalid).astype(np.uint16)


def write_sequence(root: str, scene: str, sequence_number: int, split: str, rgb: np.ndarray, depth: np.ndarray,
                   camera_to_world: np.ndarray) -> str:
    """Write N frames (rgb (N, H, W, 3) uint8, depth (N, H, W) metres, camera_to_world (N, 4, 4)) as
    ROOT/<scene>/seq-XX and add "sequenceX" to the scene's split file. The images must follow the
    fixed K (`fixed_intrinsics(INTRINSICS, INTRINSICS_SIZE_HW, (H, W))`). Returns 'scene/seq-XX'."""
    sequence = f"{scene}/seq-{sequence_number:02d}"
    os.makedirs(os.path.join(root, sequence), exist_ok=True)
    for frame in range(len(rgb)):
        paths = frame_paths(root, sequence, frame)
        Image.fromarray(np.asarray(rgb[frame], dtype=np.uint8)).save(paths["color"])
        Image.fromarray(millimetre_png(depth[frame], INVALID_DEPTH)).save(paths["depth"])
        np.savetxt(paths["pose"], np.asarray(camera_to_world[frame], dtype=np.float64))
    with open(os.path.join(root, scene, SPLIT_FILES[split]), "a", encoding="utf-8") as file:
        file.write(f"sequence{sequence_number}\n")
    return sequence


def sequences_of(root: str, split: str, scenes: Sequence[str]) -> List[str]:
    """'scene/seq-XX' of every scene's split file, scenes in the given order."""
    return [f"{scene}/{folder}" for scene in scenes for folder in read_split(root, scene, split)]


SYNTHETIC_SCENE = "chess"  # the scene folder of write_synthetic_copy


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny copy under out_dir: one scene whose sequences 1..max(n_scenes, 2) (room walks of
    n_frames, multiview/synthetic_views.py, rendered with the fixed K at this size) go alternately
    to TrainSplit.txt (odd) and TestSplit.txt (even). Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_room_walk  # imported here: slow to import

    k = fixed_intrinsics(INTRINSICS, INTRINSICS_SIZE_HW, image_size_hw).double().numpy()
    for number in range(1, max(n_scenes, 2) + 1):
        views = render_room_walk(n_frames, image_size_hw, seed, number, intrinsics=k)
        write_sequence(out_dir, SYNTHETIC_SCENE, number, "test" if number % 2 == 0 else "train", views.rgb,
                       views.depth, views.camera_to_world)
    return out_dir
