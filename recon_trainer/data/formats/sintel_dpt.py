"""Sintel's .dpt depth files and .cam camera files.

A .dpt file is little-endian: float32 tag 202021.25, int32 width, int32 height, then
width * height float32 depths (scene units), row-major.

A .cam file (camdata_left/) is little-endian: float32 tag 202021.25, then 9 float64 (the 3x3
intrinsic matrix K, row-major, in pixels with integer pixel centres: cx = 511.5 for the 1024-wide
images) and 12 float64 (the 3x4 world-to-camera matrix [R | t], row-major, OpenCV camera axes),
172 bytes in all (the layout of Sintel's sintel_io.py cam_read / cam_write).
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from recon_trainer.errors import DataFileError

DPT_TAG = 202021.25
DPT_HEADER = np.dtype([("tag", "<f4"), ("width", "<i4"), ("height", "<i4")])


def dpt_shape(header: bytes, n_bytes: int) -> Tuple[int, int]:
    """(height, width) of a .dpt file from its first bytes (at least the 12-byte header) and its
    size in bytes; ValueError saying what is wrong when the tag or the size does not match."""
    if n_bytes < DPT_HEADER.itemsize or len(header) < DPT_HEADER.itemsize:
        raise ValueError(f"{n_bytes} bytes, too short for a .dpt header ({DPT_HEADER.itemsize} bytes)")
    fields = np.frombuffer(header, DPT_HEADER, count=1)[0]
    if fields["tag"] != np.float32(DPT_TAG):
        raise ValueError(f".dpt tag {float(fields['tag'])!r} found, {DPT_TAG} expected")
    width, height = int(fields["width"]), int(fields["height"])
    expected = DPT_HEADER.itemsize + 4 * width * height
    if width <= 0 or height <= 0 or n_bytes != expected:
        raise ValueError(f"{n_bytes} bytes for a {width}x{height} .dpt, expected {expected}")
    return height, width


def read_dpt(path: str) -> np.ndarray:
    """(H, W) float32 depth from a Sintel .dpt file; DataFileError naming the file when malformed."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        height, width = dpt_shape(data, len(data))
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path!r}: {error}") from None
    return np.frombuffer(data, "<f4", offset=DPT_HEADER.itemsize).reshape(height, width).astype(np.float32)


def write_dpt(path: str, depth: np.ndarray) -> None:
    """Write (H, W) depth as a .dpt file (float32, exact)."""
    height, width = depth.shape
    header = np.array([(DPT_TAG, width, height)], dtype=DPT_HEADER)
    with open(path, "wb") as handle:
        handle.write(header.tobytes() + np.ascontiguousarray(depth, dtype="<f4").tobytes())


CAM_BYTES = 4 + 8 * (9 + 12)


@dataclasses.dataclass
class SintelCamera:
    """A .cam file's contents: K (3, 3) float64, integer pixel centres; world_to_camera (3, 4) float64."""

    intrinsics: np.ndarray
    world_to_camera: np.ndarray


def read_cam(path: str) -> SintelCamera:
    """A Sintel .cam file; DataFileError naming the file when the tag or the size is wrong."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise DataFileError(f"{path!r}: {error}") from None
    if len(data) != CAM_BYTES:
        raise DataFileError(f"{path!r}: {len(data)} bytes, expected {CAM_BYTES} for a Sintel .cam file")
    tag = np.frombuffer(data, "<f4", count=1)[0]
    if tag != np.float32(DPT_TAG):
        raise DataFileError(f"{path!r}: .cam tag {float(tag)!r} found, {DPT_TAG} expected")
    values = np.frombuffer(data, "<f8", offset=4)
    return SintelCamera(values[:9].reshape(3, 3).copy(), values[9:].reshape(3, 4).copy())


def write_cam(path: str, intrinsics: np.ndarray, world_to_camera: np.ndarray) -> None:
    """Write a .cam file of K (3, 3) (integer pixel centres) and world_to_camera (3, 4) (or (4, 4))."""
    matrix = np.asarray(world_to_camera, dtype="<f8")[:3]
    with open(path, "wb") as handle:
        handle.write(np.float32(DPT_TAG).astype("<f4").tobytes() + np.asarray(intrinsics, dtype="<f8").tobytes()
                     + np.ascontiguousarray(matrix).tobytes())
