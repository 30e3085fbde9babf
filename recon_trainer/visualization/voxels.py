"""Labelled voxel volumes as coloured meshes (PLY) and as images (ray cast from any camera).

A volume is (X, Y, Z) integer labels on a regular grid: voxel (i, j, k) spans origin + [i, i + 1)
x voxel_size along axis 0, and so on (voxel_size per axis, metres). Classes in `hidden` (empty and
unknown by default) are not drawn. The mesh keeps only the faces between a drawn voxel and a
voxel that is not drawn (or the grid's border), each face a quad of two triangles coloured by its
voxel's class; it is what the renders show and what a mesh viewer opens.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

from recon_trainer.fileio import atomic_path

HIDDEN_LABELS = (0, 255)  # empty and unknown
# distinct colours for classes 1..: class 0 (empty) and anything beyond the list cycle through it
_PALETTE = np.array([
    (180, 180, 180), (214, 38, 40), (43, 160, 43), (158, 216, 229), (114, 158, 206), (204, 204, 91),
    (255, 186, 119), (147, 102, 188), (30, 119, 181), (188, 188, 33), (255, 127, 12), (196, 175, 214),
    (153, 153, 153), (245, 150, 100), (245, 230, 100), (150, 60, 30), (180, 30, 80), (255, 0, 255),
    (75, 0, 75), (0, 175, 0), (135, 60, 0), (150, 240, 80), (255, 240, 150),
], dtype=np.uint8)

def _per_axis(voxel_size: Sequence[float]) -> np.ndarray:
    """(3,) float64 voxel edges from one size or three."""
    return np.broadcast_to(np.asarray(voxel_size, dtype=np.float64).reshape(-1), (3,))


# unit-cube corners of the face of each direction (axis, side), counter-clockwise seen from outside
_FACE_CORNERS = {
    (0, 0): ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)), (0, 1): ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)),
    (1, 0): ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)), (1, 1): ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)),
    (2, 0): ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)), (2, 1): ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)),
}


def class_colors(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: class c gets the c-th palette entry (cycling)."""
    return _PALETTE[np.arange(num_classes) % len(_PALETTE)]


def voxel_mesh(labels: np.ndarray, voxel_size: Sequence[float], origin: Sequence[float], colors: np.ndarray,
               hidden: Sequence[int] = HIDDEN_LABELS) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The visible surface of the drawn voxels (module doc).

    labels: (X, Y, Z) ints; voxel_size: 1 or 3 sizes (metres); origin: (3,) min corner of voxel
    (0, 0, 0); colors: (C, 3) uint8 indexed by label. Returns vertices (4 F', 3) float32, faces
    (F, 3) int64 triangles and face colours (F, 3) uint8 (F = 2 F' quads).
    """
    labels = np.asarray(labels)
    drawn = ~np.isin(labels, np.asarray(hidden))
    size = _per_axis(voxel_size)
    base = np.asarray(origin, dtype=np.float64).reshape(3)
    vertices, colours = [], []
    for (axis, side), corners in _FACE_CORNERS.items():
        neighbour = np.zeros_like(drawn)
        src = [slice(None)] * 3
        dst = [slice(None)] * 3
        src[axis] = slice(1, None) if side else slice(None, -1)
        dst[axis] = slice(None, -1) if side else slice(1, None)
        neighbour[tuple(dst)] = drawn[tuple(src)]
        index = np.argwhere(drawn & ~neighbour)  # (Q, 3) voxels with that face showing
        quad = (index[:, None, :] + np.asarray(corners)[None]) * size + base  # (Q, 4, 3)
        vertices.append(quad.reshape(-1, 3))
        colours.append(colors[labels[tuple(index.T)] % len(colors)])
    vertices_all = np.concatenate(vertices).astype(np.float32) if vertices else np.zeros((0, 3), np.float32)
    quad_colors = np.concatenate(colours) if colours else np.zeros((0, 3), np.uint8)
    first = np.arange(len(quad_colors)) * 4
    faces = np.stack([np.stack([first, first + 1, first + 2], 1), np.stack([first, first + 2, first + 3], 1)], 1)
    return vertices_all, faces.reshape(-1, 3).astype(np.int64), np.repeat(quad_colors, 2, axis=0).astype(np.uint8)


def write_mesh_ply(path: str, vertices: np.ndarray, faces: np.ndarray, face_colors: np.ndarray) -> str:
    """A binary little-endian PLY mesh: vertices `x y z` float32, faces (vertex_indices int32 x 3,
    red green blue uint8), written atomically. Returns `path`."""
    vertices = np.asarray(vertices, dtype="<f4").reshape(-1, 3)
    face_rows = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,)), ("rgb", "u1", (3,))])
    face_rows["n"], face_rows["v"], face_rows["rgb"] = 3, np.asarray(faces, dtype=np.int64), face_colors
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}",
                        "property float x", "property float y", "property float z", f"element face {len(faces)}",
                        "property list uchar int vertex_indices", "property uchar red", "property uchar green",
                        "property uchar blue", "end_header"]) + "\n"
    with atomic_path(path, suffix=".ply") as tmp, open(tmp, "wb") as file:
        file.write(header.encode("ascii"))
        file.write(vertices.tobytes())
        file.write(face_rows.tobytes())
    return path


def render_voxels(labels: np.ndarray, voxel_size: Sequence[float], origin: Sequence[float], colors: np.ndarray,
                  intrinsics: torch.Tensor, camera_to_world: torch.Tensor, image_size_hw: Tuple[int, int],
                  hidden: Sequence[int] = HIDDEN_LABELS) -> torch.Tensor:
    """(H, W, 3) float in [0, 1]: the drawn voxels seen by a pinhole camera (K (3, 3) in pixels,
    centres at + 0.5; camera_to_world (4, 4) OpenCV), shaded with one light; white background."""
    import trimesh

    from recon_trainer.data.records import ViewRecord
    from recon_trainer.data.scene_rendering import render_mesh

    vertices, faces, face_colors = voxel_mesh(labels, voxel_size, origin, colors, hidden)
    h, w = image_size_hw
    if len(faces) == 0:
        return torch.ones(h, w, 3)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, face_colors=face_colors, process=False)
    view = ViewRecord(image=torch.zeros(3, h, w), intrinsics=intrinsics.float().cpu(),
                      camera_to_world=camera_to_world.float().cpu())
    rendering = render_mesh(mesh, view.to_cameras(), (h, w), ambient=0.6)
    mask = rendering.mask[0, ..., None]
    return rendering.rgb[0] * mask + (1.0 - mask)


def overview_camera(grid_shape: Sequence[int], voxel_size: Sequence[float], origin: Sequence[float],
                    up: Sequence[float] = (0.0, 0.0, 1.0),
                    image_size_hw: Tuple[int, int] = (240, 320)) -> Tuple[torch.Tensor, torch.Tensor]:
    """(K (3, 3), camera_to_world (4, 4)) of a camera looking down at the volume's centre from
    above one corner (45 degrees), its whole extent in view: a bird's-eye view of a scene.
    `up`: the world's up direction (3,)."""
    size = _per_axis(voxel_size)
    extent = np.asarray(grid_shape, dtype=np.float64) * size
    centre = np.asarray(origin, dtype=np.float64) + extent / 2
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    away = -np.ones(3) + up * up.sum()  # towards the volume's min corner, horizontally
    direction = away / np.linalg.norm(away) + up  # from the centre towards the camera
    direction /= np.linalg.norm(direction)
    eye = centre + direction * 1.1 * np.linalg.norm(extent)
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    h, w = image_size_hw
    focal = 1.2 * max(h, w)
    intrinsics = torch.tensor([[focal, 0.0, w / 2], [0.0, focal, h / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return intrinsics, torch.from_numpy(pose).float()
