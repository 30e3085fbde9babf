"""The meshes the built-in scene renders: a procedural one shipped as code, or a mesh file.

Every scene mesh is normalised the same way: its bounding-box centre moves to the origin and it is
scaled so that its farthest vertex lies on the unit sphere. World +Y is up.
`normalize_to_unit_cube` is Implicitron's rendered-mesh normalisation (vertex mean, max |coordinate|).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # trimesh takes a second to import: the functions that need it import it
    import trimesh

BUILTIN_SCENE_NAME = "builtin"  # the procedural scene of procedural_scene_mesh

# Size of the cells of the 3D checkerboard painted on the procedural scene, in its own units.
_CHECKER_CELL = 0.16
# Longest triangle edge of the procedural scene: faces are smaller than a checker cell.
_MAX_EDGE = 0.05


def load_scene_mesh(scene: str) -> trimesh.Trimesh:
    """The normalised mesh of `scene`: "builtin" or the path of a mesh file trimesh reads."""
    if scene == BUILTIN_SCENE_NAME:
        return normalize_to_unit_sphere(procedural_scene_mesh())
    if not os.path.isfile(scene):
        raise FileNotFoundError(f"scene {scene!r}: expected {BUILTIN_SCENE_NAME!r} or the path of a mesh file")
    return normalize_to_unit_sphere(load_mesh_file(scene))


def load_mesh_file(path: str) -> trimesh.Trimesh:
    """The triangle mesh (with its colours or texture) of a file trimesh reads, unnormalised."""
    import trimesh

    if not os.path.isfile(path):
        raise FileNotFoundError(f"mesh file {path!r} not found")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as error:
        raise ValueError(f"mesh file {path!r}: trimesh cannot read it as a mesh: {error}") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"mesh file {path!r}: the file holds no triangles")
    return mesh


def normalize_to_unit_sphere(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy of `mesh` centred on its bounding-box centre, its farthest vertex at radius 1."""
    mesh = mesh.copy()
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.apply_scale(1.0 / np.linalg.norm(mesh.vertices, axis=1).max())
    return mesh


def normalize_to_unit_cube(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy of `mesh` centred on the mean of its distinct vertex positions, its largest |coordinate| 1.

    The mesh then fits in [-1, 1]^3 (its farthest vertex may lie up to sqrt(3) from the origin).
    Distinct positions: a file loader may split vertices along texture seams; the mean is over the
    positions the file lists.
    """
    mesh = mesh.copy()
    mesh.apply_translation(-np.unique(mesh.vertices, axis=0).mean(axis=0))
    mesh.apply_scale(1.0 / np.abs(mesh.vertices).max())
    return mesh


def procedural_scene_mesh() -> trimesh.Trimesh:
    """A box, a sphere, a cylinder and a torus with strongly coloured 3D checkerboards (face colours).

    Deterministic; about 20k small faces so the checkerboard edges are sharp enough to learn.
    """
    import trimesh

    parts = [
        # (mesh, centre, base colour, second colour)
        (
            trimesh.creation.box(extents=(0.55, 0.55, 0.55), transform=_rotation(x_deg=20.0, y_deg=35.0)),
            (-0.3, -0.15, 0.1),
            (0.95, 0.55, 0.15),
            (0.15, 0.2, 0.6),
        ),
        (trimesh.creation.icosphere(subdivisions=3, radius=0.3), (0.32, 0.18, -0.15), (0.1, 0.7, 0.6), (0.8, 0.1, 0.5)),
        (
            trimesh.creation.cylinder(radius=0.12, height=0.8, sections=32, transform=_rotation(x_deg=90.0)),
            (0.25, -0.15, 0.45),
            (0.95, 0.85, 0.2),
            (0.3, 0.3, 0.3),
        ),
        (
            trimesh.creation.torus(0.28, 0.07, transform=_rotation(x_deg=60.0, y_deg=-20.0)),
            (-0.2, 0.45, -0.25),
            (0.9, 0.15, 0.1),
            (0.95, 0.95, 0.9),
        ),
    ]
    vertices, faces, colours = [], [], []
    n_vertices = 0
    for mesh, centre, base, second in parts:
        part_vertices, part_faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=_MAX_EDGE)
        part_vertices = part_vertices + np.asarray(centre)
        centroids = part_vertices[part_faces].mean(axis=1)
        vertices.append(part_vertices)
        faces.append(part_faces + n_vertices)
        colours.append(_solid_texture(centroids, np.asarray(base), np.asarray(second)))
        n_vertices += len(part_vertices)
    face_colors = np.concatenate(colours)
    rgba = np.concatenate([np.round(face_colors * 255), np.full((len(face_colors), 1), 255)], axis=1)
    return trimesh.Trimesh(
        np.concatenate(vertices), np.concatenate(faces), face_colors=rgba.astype(np.uint8), process=False
    )


def _solid_texture(points: np.ndarray, base: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(P, 3) colours in [0, 1] at points (P, 3): a 3D checkerboard of two colours with soft stripes."""
    checker = (np.floor(points / _CHECKER_CELL).astype(np.int64).sum(axis=1) % 2)[:, None]
    stripes = 0.8 + 0.2 * np.sin(2 * np.pi * points[:, 1:2] / (3 * _CHECKER_CELL))
    return np.clip(np.where(checker == 1, base, second) * stripes, 0.0, 1.0)


def _rotation(x_deg: float = 0.0, y_deg: float = 0.0) -> np.ndarray:
    """(4, 4) rotation about X by x_deg, then about Y by y_deg."""
    import trimesh

    rx = trimesh.transformations.rotation_matrix(np.radians(x_deg), (1, 0, 0))
    ry = trimesh.transformations.rotation_matrix(np.radians(y_deg), (0, 1, 0))
    return ry @ rx
