"""The file handling the multi-view scene formats share: list files (one entry a line), folder
listings, and frames stored as an RGB image with a 16-bit depth PNG (integer units, 0 unknown).

Every error is a DataFileError naming the file or folder and what the format expected of it.
"""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np
from PIL import Image

from recon_trainer.errors import DataFileError

MILLIMETRES = 1000.0  # depth PNG units per metre of the formats that store millimetres


def read_list_file(path: str, what: str) -> List[str]:
    """The stripped, non-empty lines of a text file (split lists, set lists); DataFileError
    "<path>: cannot read the <what>: ..." when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as file:
            return [line.strip() for line in file if line.strip()]
    except OSError as error:
        raise DataFileError(f"{path}: cannot read the {what}: {error}") from None


def list_folder(folder: str, what: str) -> List[str]:
    """The entry names of `folder` (unsorted, as os.listdir); DataFileError "<folder>: cannot list
    the <what>: ..." when it cannot be listed."""
    try:
        return os.listdir(folder)
    except OSError as error:
        raise DataFileError(f"{folder}: cannot list the {what}: {error}") from None


def list_subfolders(root: str, what: str) -> List[str]:
    """The names of the folders directly under `root`, sorted (DataFileError as list_folder)."""
    return sorted(name for name in list_folder(root, what) if os.path.isdir(os.path.join(root, name)))


def read_rgb_and_depth(image_path: str, depth_path: str, scale: float = MILLIMETRES) -> Tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB of an image and (H, W) float32 depth (PNG value / scale, 0 unknown) of
    its single-channel depth PNG of the same size; DataFileError naming the image when either file
    cannot be read, naming the depth PNG when its shape is not the image's."""
    try:
        with Image.open(image_path) as file:
            rgb = np.array(file.convert("RGB"))
        with Image.open(depth_path) as file:
            depth = np.array(file)
    except OSError as error:
        raise DataFileError(f"{image_path}: cannot read the frame: {error}") from None
    if depth.shape != rgb.shape[:2]:
        raise DataFileError(f"{depth_path}: expected a single-channel depth PNG of the image's size "
                            f"{rgb.shape[:2]}, got {depth.shape}")
    return rgb, depth.astype(np.float32) / scale


def write_depth_png(path: str, depth_m: np.ndarray, scale: float = MILLIMETRES) -> None:
    """Write (H, W) depth in metres as a uint16 PNG of round(depth * scale), clipped to [0, 65535];
    NaN and +inf are written as 0 (unknown)."""
    units = np.round(np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0) * scale)
    Image.fromarray(np.clip(units, 0, 65535).astype(np.uint16)).save(path)
