"""CO3D v2 as DUSt3R's datasets_preprocess/preprocess_co3d.py writes it (the layout DUSt3R's and
Spann3R's Co3d read).

    ROOT/selected_seqs_<split>.json        {category: {sequence: [frame numbers]}} (also per category:
                                           ROOT/<category>/selected_seqs_<split>.json)
    ROOT/<category>/<sequence>/images/frame<6 digits>.jpg
    ROOT/<category>/<sequence>/images/frame<6 digits>.npz    camera_pose (4, 4) camera-to-world (OpenCV),
                                                             camera_intrinsics (3, 3) (integer pixel centres),
                                                             maximum_depth (the depth map's largest value)
    ROOT/<category>/<sequence>/depths/frame<6 digits>.jpg.geometric.png   uint16: depth = value / 65535 * maximum_depth
    ROOT/<category>/<sequence>/masks/frame<6 digits>.png     uint8 object mask * 255; foreground where value / 255 > 0.1

The image, depth and mask of a frame have one size (the preprocessing crops around the principal
point and resizes the three together). A NaN maximum_depth reads as 0 (no depth), as the loaders.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.depth.image_files import open_image, read_rgb, read_uint16_png
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

DEPTH_RANGE = 65535.0  # the depth PNG's value of maximum_depth
MASK_THRESHOLD = 0.1  # foreground: mask / 255 above this


def selection_path(root: str, split: str) -> str:
    """ROOT/selected_seqs_<split>.json."""
    return os.path.join(root, f"selected_seqs_{split}.json")


def read_selected_sequences(root: str, split: str) -> Dict[Tuple[str, str], List[int]]:
    """{(category, sequence): [frame numbers]} of ROOT/selected_seqs_<split>.json, in the file's
    order, categories without sequences left out."""
    path = selection_path(root, split)
    try:
        with open(path, encoding="utf-8") as file:
            selection = json.load(file)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the CO3D sequence selection: {error}") from None
    if not isinstance(selection, dict) or not all(isinstance(v, dict) for v in selection.values()):
        raise DataFileError(f"{path}: expected {{category: {{sequence: [frame numbers]}}}}")
    sequences = {}
    for category, entries in selection.items():
        for sequence, frames in entries.items():
            if not isinstance(frames, list) or not all(isinstance(f, int) for f in frames):
                raise DataFileError(f"{path}: {category}/{sequence}: expected a list of frame numbers, got {frames!r}")
            sequences[(category, sequence)] = list(frames)
    return sequences


def frame_paths(root: str, category: str, sequence: str, frame: int) -> Dict[str, str]:
    """The image, metadata, depth and mask files of one frame."""
    folder = os.path.join(root, category, sequence)
    name = f"frame{frame:06d}"
    return {"image": os.path.join(folder, "images", name + ".jpg"),
            "meta": os.path.join(folder, "images", name + ".npz"),
            "depth": os.path.join(folder, "depths", name + ".jpg.geometric.png"),
            "mask": os.path.join(folder, "masks", name + ".png")}


def read_metadata(path: str) -> Tuple[np.ndarray, np.ndarray, float]:
    """(camera_pose (4, 4), camera_intrinsics (3, 3), maximum_depth) of a frame's .npz (NaN depth -> 0)."""
    try:
        with np.load(path) as data:
            pose = np.asarray(data["camera_pose"], dtype=np.float32)
            intrinsics = np.asarray(data["camera_intrinsics"], dtype=np.float32)
            maximum = float(np.nan_to_num(data["maximum_depth"]))
    except (OSError, ValueError, KeyError) as error:
        raise DataFileError(f"{path}: cannot read camera_pose, camera_intrinsics and maximum_depth: {error}") from None
    if pose.shape != (4, 4) or intrinsics.shape != (3, 3):
        raise DataFileError(f"{path}: camera_pose {pose.shape} and camera_intrinsics {intrinsics.shape}, "
                            "expected (4, 4) and (3, 3)")
    return pose, intrinsics, maximum


def read_mask(path: str) -> np.ndarray:
    """(H, W) bool object mask: value / 255 > 0.1."""
    with open_image(path) as image:
        values = np.asarray(image).astype(np.float32)
    if values.ndim != 2:
        raise DataFileError(f"{path}: expected a single-channel mask, got shape {values.shape}")
    return values / 255.0 > MASK_THRESHOLD


def read_frame(root: str, category: str, sequence: str, frame: int, with_mask: bool = True,
               dataset: str = "") -> ViewRecord:
    """One frame: image, metric depth of the whole image (0 unknown), K (records' convention),
    camera-to-world pose, mask_fg (bool, when with_mask) and extras["maximum_depth"] (float)."""
    paths = frame_paths(root, category, sequence, frame)
    pose, intrinsics, maximum = read_metadata(paths["meta"])
    rgb = read_rgb(paths["image"])
    depth = read_uint16_png(paths["depth"]) / DEPTH_RANGE * np.float32(maximum)
    mask = read_mask(paths["mask"]) if with_mask else None
    for key, array in (("depth", depth), ("mask", mask)):
        if array is not None and array.shape != rgb.shape[:2]:
            raise DataFileError(f"{paths[key]}: shape {array.shape}, expected the image's {rgb.shape[:2]}")
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth.astype(np.float32)),
        depth_kind="metric",
        intrinsics=intrinsics_centre_to_corner(torch.from_numpy(intrinsics)),
        camera_to_world=torch.from_numpy(pose),
        mask_fg=None if mask is None else torch.from_numpy(mask),
        sequence=f"{category}/{sequence}",
        frame=int(frame),
        dataset=dataset,
        label_type="sfm",
        path=paths["image"],
        extras={"maximum_depth": maximum},
    )


def write_frame(root: str, category: str, sequence: str, frame: int, rgb: np.ndarray, depth: np.ndarray,
                mask: np.ndarray, intrinsics_opencv: np.ndarray, camera_to_world: np.ndarray) -> None:
    """Write one frame as the preprocessing does: rgb (H, W, 3) uint8 JPEG; depth (H, W) (0 unknown)
    as uint16 depth / max * 65535 (truncated) with maximum_depth = max; mask (H, W) bool or [0, 1]
    as uint8 * 255; K (3, 3) with integer pixel centres and the pose in the .npz (float32)."""
    paths = frame_paths(root, category, sequence, frame)
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(paths["image"], quality=95, subsampling=0)
    depth = np.asarray(depth, dtype=np.float32)
    maximum = np.float32(depth.max())
    Image.fromarray((depth / maximum * DEPTH_RANGE).astype(np.uint16)).save(paths["depth"])
    Image.fromarray((np.asarray(mask, dtype=np.float32) * 255).astype(np.uint8)).save(paths["mask"])
    np.savez(paths["meta"], camera_intrinsics=np.asarray(intrinsics_opencv, dtype=np.float32),
             camera_pose=np.asarray(camera_to_world, dtype=np.float32), maximum_depth=maximum)


def write_sequence(root: str, category: str, sequence: str, rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray,
                   intrinsics_opencv: np.ndarray, camera_to_world: np.ndarray,
                   frames: Optional[Sequence[int]] = None) -> List[int]:
    """Write N frames (arrays with a leading N; one K) numbered `frames` (default 1..N, as CO3D
    numbers them). Returns the frame numbers, for write_selected_sequences."""
    numbers = list(range(1, len(rgb) + 1)) if frames is None else [int(f) for f in frames]
    for k, number in enumerate(numbers):
        write_frame(root, category, sequence, number, rgb[k], depth[k], mask[k], intrinsics_opencv,
                    camera_to_world[k])
    return numbers


def write_selected_sequences(root: str, split: str, selection: Mapping[str, Mapping[str, Sequence[int]]]) -> None:
    """Write ROOT/selected_seqs_<split>.json and ROOT/<category>/selected_seqs_<split>.json from
    {category: {sequence: [frame numbers]}}."""
    plain = {category: {name: [int(f) for f in frames] for name, frames in entries.items()}
             for category, entries in selection.items()}
    os.makedirs(root, exist_ok=True)
    with open(selection_path(root, split), "w", encoding="utf-8") as file:
        json.dump(plain, file)
    for category, entries in plain.items():
        os.makedirs(os.path.join(root, category), exist_ok=True)
        with open(os.path.join(root, category, f"selected_seqs_{split}.json"), "w", encoding="utf-8") as file:
            json.dump(entries, file)


SYNTHETIC_CATEGORY = "teddybear"  # the category folder of write_synthetic_copy


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny copy under out_dir: per split (train, test) n_scenes object orbits of n_frames
    (360 degrees, background depth kept, object masks; multiview/synthetic_views.py) in one
    category. Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_object_orbit  # imported here: slow to import

    for offset, split in enumerate(("train", "test")):
        selection = {}
        for k in range(n_scenes):
            name = f"{100 + k}_{offset}_{seed}"
            views = render_object_orbit(n_frames, image_size_hw, seed, offset * n_scenes + k)
            selection[name] = write_sequence(out_dir, SYNTHETIC_CATEGORY, name, views.rgb, views.depth,
                                             views.object_mask, views.intrinsics_opencv(), views.camera_to_world)
        write_selected_sequences(out_dir, split, {SYNTHETIC_CATEGORY: selection})
    return out_dir
