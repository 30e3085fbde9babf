"""MoGe export: the binary PLY writer (read back by a small parser here), the grid mesh (faces
only between valid pixels, none across depth jumps, facing the camera) and the GLB file (loaded
back with trimesh); writes leave no temporary files."""
import os

import numpy as np
import pytest
from recon_trainer_plugins.moge.export import grid_mesh, write_glb

from recon_trainer.visualization.point_clouds import opencv_to_opengl, write_ply

PLY_TYPES = {"float": "<f4", "uchar": "u1"}


def read_ply(path: str) -> np.ndarray:
    """The vertex element of a binary little-endian PLY file as a structured array."""
    with open(path, "rb") as file:
        assert file.readline() == b"ply\n"
        assert file.readline() == b"format binary_little_endian 1.0\n"
        count, fields = None, []
        for line in iter(file.readline, b"end_header\n"):
            words = line.decode("ascii").split()
            if words[:2] == ["element", "vertex"]:
                count = int(words[2])
            elif words[0] == "property":
                fields.append((words[2], PLY_TYPES[words[1]]))
        data = file.read()
    vertices = np.frombuffer(data, dtype=fields)
    assert len(vertices) == count
    return vertices


def test_ply_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    colors = rng.random((50, 3))
    normals = rng.normal(size=(50, 3))
    path = str(tmp_path / "cloud.ply")
    extra = {"nx": normals[:, 0], "ny": normals[:, 1], "nz": normals[:, 2]}
    assert write_ply(path, points, colors, extra) == path
    vertices = read_ply(path)
    assert vertices.dtype.names == ("x", "y", "z", "red", "green", "blue", "nx", "ny", "nz")
    np.testing.assert_array_equal(np.stack([vertices[c] for c in "xyz"], -1), points)
    np.testing.assert_array_equal(np.stack([vertices[c] for c in ("red", "green", "blue")], -1),
                                  np.round(colors * 255).astype(np.uint8))
    np.testing.assert_allclose(vertices["nz"], normals[:, 2], rtol=1e-6)
    assert os.listdir(tmp_path) == ["cloud.ply"]

    trimesh = pytest.importorskip("trimesh")
    cloud = trimesh.load(path)
    np.testing.assert_allclose(np.asarray(cloud.vertices), points, rtol=1e-6)


def test_ply_without_colours_and_bad_input(tmp_path):
    path = str(tmp_path / "plain.ply")
    write_ply(path, np.zeros((0, 3)))
    assert read_ply(path).dtype.names == ("x", "y", "z") and len(read_ply(path)) == 0
    with pytest.raises(ValueError, match="2 values for 3 points"):
        write_ply(path, np.zeros((3, 3)), properties={"w": np.zeros(2)})
    with pytest.raises(ValueError, match="property name"):
        write_ply(path, np.zeros((3, 3)), properties={"bad name": np.zeros(3)})


def plane(height: int, width: int, depth: float = 2.0) -> np.ndarray:
    """(H, W, 3) OpenCV-axes points of a fronto-parallel plane."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([(u / width - 0.5) * depth, (v / height - 0.5) * depth, np.full(u.shape, depth)], -1)


def test_grid_mesh_masks_and_discontinuities():
    points = plane(4, 5)
    vertices, faces, pixels = grid_mesh(points)
    assert faces.shape == (2 * 3 * 4, 3) and len(vertices) == 20
    np.testing.assert_array_equal(vertices, points.reshape(-1, 3)[pixels].astype(np.float32))
    # Every face points towards the camera (negative z in OpenCV axes, positive in OpenGL).
    for convention, sign in ((lambda p: p, -1), (opencv_to_opengl, 1)):
        corners = convention(vertices)[faces]
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        assert (np.sign(normal[:, 2]) == sign).all()

    mask = np.ones((4, 5), dtype=bool)
    mask[0, 0] = False
    points_nan = points.copy()
    points_nan[3, 4] = np.nan
    _, faces_masked, _ = grid_mesh(points_nan, mask)
    assert len(faces_masked) == 24 - 1 - 1  # (0,0) is in one triangle, (3,4) in one triangle

    stepped = points.copy()
    stepped[:, 3:] *= 1.5  # a depth jump between columns 2 and 3
    _, faces_cut, _ = grid_mesh(stepped)
    assert len(faces_cut) == 24 - 2 * 3  # the two triangles of each of the 3 quads across the jump
    assert len(grid_mesh(stepped, rtol=None)[1]) == 24


def test_glb_loads_with_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    points = opencv_to_opengl(plane(6, 7))
    vertices, faces, pixels = grid_mesh(points)
    colors = np.random.default_rng(1).random((6 * 7, 3))[pixels]
    path = str(tmp_path / "mesh.glb")
    write_glb(path, vertices, faces, colors)
    scene = trimesh.load(path)
    mesh = next(iter(scene.geometry.values())) if isinstance(scene, trimesh.Scene) else scene
    assert len(mesh.faces) == len(faces) == 2 * 5 * 6
    np.testing.assert_allclose(np.sort(mesh.vertices, axis=0), np.sort(vertices, axis=0), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(mesh.visual.vertex_colors)[:, :3].sum(), np.round(colors * 255).sum())
    assert os.listdir(tmp_path) == ["mesh.glb"]
