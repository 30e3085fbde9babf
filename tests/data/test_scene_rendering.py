"""The ray-casting mesh renderer: pixel grid, depth, masks, texture lookup, reference parity."""
import math

import numpy as np
import pytest
import torch
import trimesh

from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras
from recon_trainer.data.providers.scene_meshes import load_scene_mesh
from recon_trainer.data.scene_rendering import (
    camera_rays,
    pixel_center_ndc,
    render_mesh,
    sample_texture_bilinear,
)
from tests.data.conftest import COW_OBJ

FOCAL = 1.0 / math.tan(math.radians(39.6) / 2)


def _cameras(eyes, size=None) -> PerspectiveCameras:
    eye = torch.tensor(eyes, dtype=torch.float32)
    up = torch.tensor([[0.0, 1.0, 0.0]]).expand_as(eye)
    return look_at_cameras(eye, torch.zeros_like(eye), up, FOCAL, size)


@pytest.fixture(scope="module")
def cow():
    return load_scene_mesh(COW_OBJ)


def test_pixel_centres_follow_pytorch3d_ndc():
    square = pixel_center_ndc((4, 4))
    assert torch.allclose(square[0, 0], torch.tensor([0.75, 0.75], dtype=torch.float64))  # 1 - 1/W
    assert torch.allclose(square[3, 1], torch.tensor([0.25, -0.75], dtype=torch.float64))
    wide = pixel_center_ndc((2, 4))  # the longer side spans +-2
    assert torch.allclose(wide[0, 0], torch.tensor([1.5, 0.5], dtype=torch.float64))
    # The camera's own NDC -> pixel conversion puts every centre at (j + 0.5, i + 0.5).
    for h, w in ((4, 4), (2, 4), (5, 3)):
        pixels = _cameras([[0.0, 0.0, 3.0]]).ndc_to_pixel(pixel_center_ndc((h, w)), (h, w))
        i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        assert torch.allclose(pixels, torch.stack([j + 0.5, i + 0.5], dim=-1).double())


def test_rays_have_unit_view_depth_and_project_to_their_pixel():
    cameras = _cameras([[1.0, 2.0, 3.0], [-3.0, 0.5, 0.0]])
    origins, directions = camera_rays(cameras, (3, 5))
    points = (origins + 2.5 * directions).reshape(2, -1, 3).float()
    projected = cameras.transform_points_ndc(points).reshape(2, 3, 5, 3)
    assert torch.allclose(projected[..., 2], torch.full((2, 3, 5), 2.5), atol=1e-5)
    assert torch.allclose(projected[..., :2], pixel_center_ndc((3, 5)).float().expand(2, 3, 5, 2), atol=1e-5)


def test_cow_mask_depth_and_texture(cow):
    cameras = _cameras([[0.0, 1.0, 3.5], [3.5, 0.5, 0.5]])
    rendering = render_mesh(cow, cameras, (33, 33))
    assert rendering.rgb.shape == (2, 33, 33, 3) and rendering.mask.shape == rendering.depth.shape == (2, 33, 33)
    mask, depth, rgb = rendering.mask, rendering.depth, rendering.rgb
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert (mask[:, 16, 16] == 1).all()
    assert (mask[:, [0, 0, -1, -1], [0, -1, 0, -1]] == 0).all()
    assert torch.equal(depth > 0, mask > 0)
    assert (rgb[mask == 0] == 0).all()  # premultiplied on black
    # Texture detail: the foreground has many distinct colours, dark spots and light skin.
    foreground = rgb[mask > 0]
    assert len(torch.unique((foreground * 255).round(), dim=0)) > 50
    assert foreground.std(dim=0).min() > 0.1
    # A hit pixel's depth puts the point on the mesh surface and projects back to that pixel.
    rows, cols = torch.nonzero(mask[0] > 0, as_tuple=True)
    pick = torch.linspace(0, len(rows) - 1, 6).long()
    ndc = pixel_center_ndc((33, 33)).float()[rows[pick], cols[pick]]
    xy_depth = torch.cat([ndc, depth[0, rows[pick], cols[pick], None]], dim=-1)
    points = cameras[0].unproject_points(xy_depth[None])
    assert torch.allclose(cameras[0].transform_points_ndc(points)[0], xy_depth, atol=1e-4)
    triangles = np.asarray(cow.triangles)
    for point in points[0].double().numpy():
        closest = trimesh.triangles.closest_point(triangles, np.repeat(point[None], len(triangles), axis=0))
        assert np.linalg.norm(closest - point, axis=1).min() < 1e-5


def test_unit_sphere_centre_depth_is_exact():
    # subdivisions >= 1 puts a vertex exactly on +Z, where the centre pixel's ray hits.
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    for distance in (4.0, 6.0):  # the silhouette stays inside the image
        rendering = render_mesh(sphere, _cameras([[0.0, 0.0, distance]]), (33, 33))
        assert abs(rendering.depth[0, 16, 16].item() - (distance - 1.0)) < 1e-4
        hits = rendering.depth[rendering.mask > 0]
        assert hits.min() >= distance - 1.0 - 1e-4  # the polyhedron lies inside the sphere
        # Its silhouette is close to the sphere's: radius tan(asin(1 / d)) * focal in NDC.
        radius_ndc = math.tan(math.asin(1.0 / distance)) * FOCAL
        area = (rendering.mask[0].sum().item()) * (2.0 / 33) ** 2
        assert area == pytest.approx(math.pi * radius_ndc**2, rel=0.05)


def test_non_square_image_matches_the_square_crop():
    box = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    cameras = _cameras([[1.5, 1.0, 2.5]])
    square = render_mesh(box, cameras, (8, 8))
    wide = render_mesh(box, cameras, (8, 12))  # the same NDC square in the middle columns
    assert torch.equal(wide.mask[:, :, 2:10], square.mask)
    assert torch.allclose(wide.depth[:, :, 2:10], square.depth, atol=1e-5)


def test_embree_matches_the_reference_intersector():
    mesh = trimesh.util.concatenate(
        [trimesh.creation.icosphere(subdivisions=1, radius=0.5), trimesh.creation.box(extents=(0.4, 1.2, 0.4))]
    )
    mesh.visual.face_colors = np.random.default_rng(0).integers(0, 255, size=(len(mesh.faces), 4), dtype=np.uint8)
    cameras = _cameras([[0.3, 0.7, 2.2], [-2.0, -0.4, 0.9]])
    fast = render_mesh(mesh, cameras, (16, 16))
    reference = render_mesh(mesh, cameras, (16, 16), intersector="reference")
    assert torch.equal(fast.mask, reference.mask)
    assert torch.allclose(fast.depth, reference.depth, atol=1e-6)
    assert torch.allclose(fast.rgb, reference.rgb, atol=1e-6)


def test_face_and_vertex_colours_and_unlit_shading():
    triangle = trimesh.Trimesh([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]], [[0, 1, 2]], process=False)
    triangle.visual.vertex_colors = [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]]
    rendering = render_mesh(triangle, _cameras([[0.0, 0.0, 3.0]]), (9, 9), ambient=1.0)
    centre = rendering.rgb[0, 4, 4]
    assert torch.allclose(centre.sum(), torch.tensor(1.0), atol=1e-5)  # barycentric mix of R, G, B
    assert (centre > 0.1).all()
    triangle.visual.face_colors = [[51, 102, 204, 255]]
    rendering = render_mesh(triangle, _cameras([[0.0, 0.0, 3.0]]), (9, 9), ambient=1.0)
    assert torch.allclose(rendering.rgb[0, 4, 4], torch.tensor([0.2, 0.4, 0.8]), atol=1e-6)
    material = trimesh.visual.material.SimpleMaterial(diffuse=[255, 0, 0, 255])  # no texture image
    triangle.visual = trimesh.visual.texture.TextureVisuals(uv=np.zeros((3, 2)), material=material)
    rendering = render_mesh(triangle, _cameras([[0.0, 0.0, 3.0]]), (9, 9), ambient=1.0)
    assert torch.allclose(rendering.rgb[0, 4, 4], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    triangle.visual = trimesh.visual.ColorVisuals()  # no colours at all: grey
    rendering = render_mesh(triangle, _cameras([[0.0, 0.0, 3.0]]), (9, 9), ambient=1.0)
    assert torch.allclose(rendering.rgb[0, 4, 4], torch.full((3,), 0.7), atol=1e-6)


def test_bilinear_texture_lookup():
    texture = np.array([[[0.0], [1.0]], [[2.0], [3.0]]])  # top row 0, 1; bottom row 2, 3
    uv = np.array([[0.25, 0.75], [0.75, 0.25], [0.5, 0.5], [0.5, 0.75]])
    # texel centres: (u, v) = (0.25, 0.75) is the top-left texel (v goes up)
    expected = np.array([[0.0], [3.0], [1.5], [0.5]])
    assert np.allclose(sample_texture_bilinear(texture, uv), expected)
