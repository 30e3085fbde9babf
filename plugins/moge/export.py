"""Exporting MoGe predictions: coloured point clouds as binary PLY (the core's writer,
recon_trainer/visualization/point_clouds.py) and the point map's pixel grid as a triangle mesh in a
GLB file (through trimesh). Every file is written
atomically (recon_trainer.fileio.atomic_path: temporary file in the same folder, then rename).

Arrays are NumPy; coordinates are written as given (convert axes before, e.g. with
`opencv_to_opengl`, for viewers that expect y up and z backwards).
"""
from typing import Optional, Tuple

import numpy as np

from recon_trainer.dependencies import require
from recon_trainer.fileio import atomic_path
from recon_trainer.visualization.point_clouds import to_uint8_colors


def grid_mesh(points: np.ndarray, mask: Optional[np.ndarray] = None,
              rtol: Optional[float] = 0.04) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate a point map's pixel grid: (vertices (V, 3) float32, faces (F, 3) int64 indices
    into vertices, pixel (V,) int64 flat index (row · W + col) of each vertex).

    Each 2x2 block of pixels gives two triangles (top-left, bottom-left, top-right) and
    (top-right, bottom-left, bottom-right), which face the camera in OpenCV and OpenGL axes alike.
    A triangle is kept when its three pixels are in `mask` (default all) with finite points and,
    unless rtol is None, its depths |z| differ by at most rtol times the smallest (no triangles
    across depth discontinuities; |z| is the depth in OpenCV and OpenGL axes alike). Only
    pixels used by a face become vertices."""
    points = np.asarray(points, dtype=np.float32)
    height, width = points.shape[:2]
    valid = np.isfinite(points).all(axis=-1)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    index = np.arange(height * width).reshape(height, width)
    top_left, top_right = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    bottom_left, bottom_right = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([
        np.stack([top_left, bottom_left, top_right], axis=-1),
        np.stack([top_right, bottom_left, bottom_right], axis=-1),
    ])
    flat_valid = valid.ravel()
    keep = flat_valid[faces].all(axis=-1)
    if rtol is not None:
        depth = np.abs(np.where(valid, points[..., 2], 0)).ravel()
        corner = depth[faces]
        keep &= corner.max(axis=-1) - corner.min(axis=-1) <= rtol * corner.min(axis=-1)
    faces = faces[keep]
    pixels, faces = np.unique(faces, return_inverse=True)
    return points.reshape(-1, 3)[pixels], faces.reshape(-1, 3).astype(np.int64), pixels.astype(np.int64)


def write_glb(path: str, vertices: np.ndarray, faces: np.ndarray, colors: Optional[np.ndarray] = None,
              normals: Optional[np.ndarray] = None) -> str:
    """Write a triangle mesh (vertices (V, 3), faces (F, 3)) with optional per-vertex colours
    (V, 3) (uint8 or floats in [0, 1]) and normals (V, 3) as a binary glTF file. Returns `path`."""
    trimesh = require("trimesh", "writing GLB meshes")
    mesh = trimesh.Trimesh(
        vertices=np.asarray(vertices, dtype=np.float32),
        faces=np.asarray(faces, dtype=np.int64),
        vertex_colors=None if colors is None else to_uint8_colors(colors),
        vertex_normals=None if normals is None else np.asarray(normals, dtype=np.float32),
        process=False,
    )
    data = mesh.export(file_type="glb")
    with atomic_path(path, suffix=".glb") as tmp, open(tmp, "wb") as file:
        file.write(data)
    return path
