"""Rotations as the formats store them: unit quaternions (w, x, y, z) and 3x3 matrices, in numpy float64.

COLMAP's images.txt writes (QW, QX, QY, QZ); TUM's groundtruth.txt writes (qx, qy, qz, qw): callers
reorder. A quaternion q and -q are the same rotation; `matrix_to_quaternion` returns the one with
w >= 0. `read_matrix_file` reads a 4x4 matrix stored as text (ScanNet's and 7-Scenes' poses).
"""
from __future__ import annotations

import numpy as np

from recon_trainer.errors import DataFileError


def quaternion_to_matrix(wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), normalised here, to (..., 3, 3) rotation matrices."""
    q = np.asarray(wxyz, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix to its unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method:
    the largest of |w|, |x|, |y|, |z| is computed from the trace terms, the others from it)."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    candidates = [trace, m[0, 0], m[1, 1], m[2, 2]]
    largest = int(np.argmax(candidates))
    if largest == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = largest - 1
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def rigid_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(4, 4) float64 [R t; 0 1] of a (3, 3) rotation and a (3,) translation."""
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, translation
    return matrix


def read_matrix_file(path: str) -> np.ndarray:
    """(4, 4) float64 matrix of a text file (4 lines of 4 numbers); DataFileError naming the file
    when it cannot be read or is not 4x4."""
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read a 4x4 matrix: {error}") from None
    if matrix.shape != (4, 4):
        raise DataFileError(f"{path}: expected a 4x4 matrix, got shape {matrix.shape}")
    return matrix
