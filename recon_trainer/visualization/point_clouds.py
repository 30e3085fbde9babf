"""Point clouds on disk: a binary PLY writer (own, no dependency) and the conversions viewers
need (OpenCV to OpenGL axes, colours as uint8). Files are written atomically
(recon_trainer.fileio.atomic_path: temporary file in the same folder, then rename).

Arrays are NumPy; coordinates are written as given (convert axes before, e.g. with
`opencv_to_opengl`, for viewers that expect y up and z backwards).
"""
from typing import Mapping, Optional

import numpy as np

from recon_trainer.fileio import atomic_path

OPENCV_TO_OPENGL = np.array([1.0, -1.0, -1.0], dtype=np.float32)


def opencv_to_opengl(vectors: np.ndarray) -> np.ndarray:
    """(..., 3) points or normals in OpenCV camera axes (x right, y down, z forward) -> OpenGL
    axes (x right, y up, z backward): a rotation by 180° about x."""
    return np.asarray(vectors, dtype=np.float32) * OPENCV_TO_OPENGL


def to_uint8_colors(colors: np.ndarray) -> np.ndarray:
    """Colours (..., 3) as uint8: uint8 as is, floats in [0, 1] scaled and rounded."""
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors
    return np.clip(np.round(colors.astype(np.float32) * 255), 0, 255).astype(np.uint8)


def write_ply(path: str, points: np.ndarray, colors: Optional[np.ndarray] = None,
              properties: Optional[Mapping[str, np.ndarray]] = None) -> str:
    """Write a binary little-endian PLY point cloud: per vertex `x y z` float32, then (if colors
    (N, 3) is given, uint8 or floats in [0, 1]) `red green blue` uint8, then one float32 property
    per entry of `properties` (name -> (N,) values, in order). Returns `path`."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    columns = [points[:, 0], points[:, 1], points[:, 2]]
    if colors is not None:
        colors = to_uint8_colors(colors).reshape(-1, 3)
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        columns += [colors[:, 0], colors[:, 1], colors[:, 2]]
    for name, values in (properties or {}).items():
        if not name.isidentifier():
            raise ValueError(f"PLY property name {name!r}: expected letters, digits and underscores")
        fields.append((name, "<f4"))
        columns.append(np.asarray(values, dtype=np.float32).reshape(-1))
    for (name, _), column in zip(fields, columns):
        if len(column) != len(points):
            raise ValueError(f"PLY property {name}: {len(column)} values for {len(points)} points")
    vertices = np.empty(len(points), dtype=fields)
    for (name, _), column in zip(fields, columns):
        vertices[name] = column
    ply_types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property {ply_types[kind]} {name}" for name, kind in fields]
    header.append("end_header")
    with atomic_path(path, suffix=".ply") as tmp, open(tmp, "wb") as file:
        file.write(("\n".join(header) + "\n").encode("ascii"))
        file.write(vertices.tobytes())
    return path
