"""RenderedMeshDatasetMapProvider: the packaged cow at Implicitron's settings, hold-out, shading."""
import math
import os

import numpy as np
import pytest
import torch
import trimesh

import recon_trainer
from recon_trainer.config import get_default_args
from recon_trainer.data.frame_data import collate
from recon_trainer.data.providers.rendered_mesh import COW_OBJ, RenderedMeshDatasetMapProvider, view_azimuths
from recon_trainer.data.providers.scene_meshes import load_mesh_file, normalize_to_unit_cube
from recon_trainer.data.scene_rendering import lambertian_shading


def test_implicitron_fields_and_defaults():
    args = get_default_args(RenderedMeshDatasetMapProvider)
    assert {k: args[k] for k in ("num_views", "data_file", "azimuth_range", "distance", "resolution",
                                  "use_point_light")} == {
        "num_views": 40, "data_file": None, "azimuth_range": 180, "distance": 2.7, "resolution": 128,
        "use_point_light": True,
    }
    assert args.holdout_every == 0 and args.n_known_frames_for_test is None


def test_cow_is_package_data():
    package_dir = os.path.dirname(os.path.abspath(recon_trainer.__file__))
    assert COW_OBJ.startswith(package_dir + os.sep) and os.path.isfile(COW_OBJ)
    assert {"cow.obj", "cow.mtl", "cow_texture.png"} <= set(os.listdir(os.path.dirname(COW_OBJ)))
    assert RenderedMeshDatasetMapProvider().data_path() == COW_OBJ


@pytest.fixture(scope="module")
def cow_views():
    """Implicitron's test_data_cow setting: 4 views of the default cow."""
    return RenderedMeshDatasetMapProvider(num_views=4).get_dataset_map()


def test_cow_like_implicitron(cow_views):
    assert cow_views.val is None and cow_views.test is None and len(cow_views.train) == 4
    frame = cow_views.train[0]
    assert frame.image_rgb.shape == (3, 128, 128) and frame.fg_probability.shape == (1, 128, 128)
    assert frame.fg_probability[0, 0, 0] == 0 and frame.fg_probability.max() == 1
    assert (frame.frame_type, frame.sequence_name) == ("train_known", "cow")
    # FoVPerspectiveCameras' default 60 degrees: Implicitron's projection matrix diagonal 1.7321
    batch = collate(list(cow_views.train))
    assert torch.allclose(batch.camera.focal_length, torch.full((4, 2), 1.7321), atol=1e-4)
    assert torch.allclose(batch.camera.principal_point, torch.zeros(4, 2))
    # azimuths -180, -60, 60, 180 (+ 180) at elevation 0, distance 2.7, looking at the origin
    centres = batch.camera.get_camera_center()
    azimuths = torch.tensor(np.radians(view_azimuths(4, 180.0)), dtype=torch.float32)
    expected = 2.7 * torch.stack([torch.sin(azimuths), torch.zeros(4), torch.cos(azimuths)], dim=1)
    assert torch.allclose(centres, expected, atol=1e-5)
    assert torch.allclose(batch.camera.transform_points_ndc(torch.zeros(4, 1, 3))[..., :2], torch.zeros(4, 1, 2),
                          atol=1e-6)
    # exact depth comes along: every hit lies within the cow's extent around the origin
    depth = batch.depth_map[batch.depth_mask > 0]
    assert depth.min() > 2.7 - math.sqrt(3) and depth.max() < 2.7 + math.sqrt(3)
    assert torch.equal(batch.depth_mask, batch.fg_probability)


def test_point_light_shades_the_side_facing_it(cow_views):
    unlit = RenderedMeshDatasetMapProvider(num_views=4, use_point_light=False).get_dataset_map().train
    for k in range(4):
        assert torch.equal(unlit[k].fg_probability, cow_views.train[k].fg_probability)
    # lit = albedo * (0.5 + 0.3 cos): between half and 0.8 of the unlit texture
    ratios = []
    for k in (0, 1):  # view 0 from behind (+Z, away from the light at z = -3), view 1 from the front-left
        fg = unlit[k].fg_probability.expand(3, -1, -1) > 0
        lit, albedo = cow_views.train[k].image_rgb[fg], unlit[k].image_rgb[fg]
        bright = albedo > 0.1
        ratio = lit[bright] / albedo[bright]
        assert ratio.min() > 0.5 - 0.02 and ratio.max() < 0.8 + 0.02
        ratios.append(float(ratio.mean()))
    assert ratios[0] < 0.52 < 0.55 < ratios[1]


def test_lambertian_shading_is_ambient_plus_clamped_cosine():
    albedo = np.array([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0], [0.2, 0.4, 0.6]])
    normals = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    to_light = np.array([[0.0, 0.0, 1.0], [0.0, 0.6, 0.8], [-1.0, 0.0, 0.0]])
    shaded = lambertian_shading(albedo, normals, to_light, ambient=0.5, diffuse=0.3)
    assert np.allclose(shaded, albedo * np.array([0.8, 0.5 + 0.3 * 0.8, 0.5])[:, None])
    # one direction for every point broadcasts
    assert np.allclose(lambertian_shading(albedo, normals, to_light[:1], 0.0, 1.0), albedo * [[1.0], [1.0], [0.0]])


def test_hold_out_views_and_known_frames(tmp_path):
    provider = RenderedMeshDatasetMapProvider(num_views=8, resolution=16, holdout_every=4, n_known_frames_for_test=2)
    assert provider.held_out_views() == [2, 6]
    datasets = provider.get_dataset_map()
    assert [f.frame_number for f in datasets.train] == [0, 1, 3, 4, 5, 7]
    assert [f.frame_number for f in datasets.val] == [2, 6]
    assert {f.frame_type for f in datasets.val} == {"test_unseen"}
    assert len(datasets.test) == 2 + 6 and datasets.test.eval_batches[0][0] == 0
    assert all(len(b) == 3 and min(b[1:]) >= 2 for b in datasets.test.eval_batches)
    with pytest.raises(ValueError, match="n_known_frames_for_test needs held-out test views"):
        RenderedMeshDatasetMapProvider(n_known_frames_for_test=2)
    with pytest.raises(ValueError, match="holdout_every must be 0 or >= 2"):
        RenderedMeshDatasetMapProvider(holdout_every=1)


def test_user_mesh_file_is_normalised_like_implicitron(tmp_path):
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    box.apply_translation((10.0, 0.0, 0.0))
    path = str(tmp_path / "box.obj")
    box.export(path)
    normalised = normalize_to_unit_cube(load_mesh_file(path))
    assert np.allclose(normalised.vertices.mean(axis=0), 0.0) and np.abs(normalised.vertices).max() == 1.0
    assert np.allclose(normalised.extents, [2.0, 1.0, 0.5])
    provider = RenderedMeshDatasetMapProvider(data_file=path, num_views=2, azimuth_range=90, resolution=16)
    assert provider.data_path() == path
    frames = provider.get_dataset_map().train
    assert frames[0].sequence_name == "box" and frames[0].fg_probability.sum() > 10
    with pytest.raises(FileNotFoundError, match="no_such.obj"):
        RenderedMeshDatasetMapProvider(data_file=str(tmp_path / "no_such.obj")).get_dataset_map()
