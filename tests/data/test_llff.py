"""LlffDatasetMapProvider: LLFF's axes on a hand-written file, and a rendered set written by the tool."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.data.frame_data import collate
from recon_trainer.data.providers.llff import (
    LlffDatasetMapProvider,
    LlffFormatError,
    average_pose,
    forward_facing_cameras,
)
from recon_trainer.data.providers.scene_meshes import load_scene_mesh
from recon_trainer.data.scene_rendering import render_mesh
from tests.data.conftest import REPO_ROOT

# The tool's settings (render_llff_dataset's defaults): 3 x 3 views of 48 x 64, images_2 written.
GRID, SIZE_HW = 3, (48, 64)
TRUTH_SETTINGS = {"spacing": 0.5, "distance": 3.0, "fov_degrees": 50.0}


def _write_single_view(base, pose, hwf=(4.0, 6.0, 3.0), bounds=(2.0, 6.0), n_images=1):
    """An LLFF folder with one poses_bounds row repeated `n_images` times and 4 x 6 grey images."""
    os.makedirs(base / "images", exist_ok=True)
    for k in range(n_images):
        Image.fromarray(np.full((4, 6, 3), 100, dtype=np.uint8)).save(base / "images" / f"IMG_{k}.JPG")
    row = np.concatenate([np.concatenate([pose, np.asarray(hwf)[:, None]], axis=1).reshape(15), bounds])
    np.save(base / "poses_bounds.npy", np.tile(row, (n_images, 1)))


def test_llff_axes_down_right_back_become_pytorch3d_cameras(tmp_path):
    # Camera at (0, 0, 4) looking down -z with +y up: down = -y, right = +x, back = +z.
    pose = np.array([[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 4.0]])
    _write_single_view(tmp_path / "fern", pose)
    provider = LlffDatasetMapProvider(base_dir=str(tmp_path / "fern"), downscale_factor=1, bd_factor=None,
                                      recenter=False)
    assert provider.data_path() == str(tmp_path / "fern")
    frame = provider.get_dataset_map().test[0]
    assert torch.allclose(frame.camera.R, torch.diag(torch.tensor([-1.0, 1.0, -1.0]))[None])
    assert torch.allclose(frame.camera.T, torch.tensor([[0.0, 0.0, 4.0]]))
    # focal 3 pixels; half the shorter side (4) is 2 pixels -> 1.5 in NDC
    assert torch.allclose(frame.camera.focal_length, torch.tensor([[1.5, 1.5]]))
    assert frame.camera.image_size.tolist() == [[4, 6]] and frame.image_rgb.shape == (3, 4, 6)
    assert frame.fg_probability is None and frame.depth_map is None and frame.mask_crop.shape == (1, 4, 6)
    assert (frame.sequence_name, frame.frame_type, frame.frame_number) == ("fern", "test_unseen", 0)
    assert torch.allclose(frame.image_rgb, torch.full((3, 4, 6), 100 / 255))
    # A point 1 right, 0.5 up and 2 in front of the camera lands right of and above the centre:
    # pytorch3d NDC x points left, so x < 0, y > 0.
    ndc = frame.camera.transform_points_ndc(torch.tensor([[[1.0, 0.5, 2.0]]]))
    assert torch.allclose(ndc, torch.tensor([[[-0.75, 0.375, 2.0]]]))
    # The default bd_factor scales the nearest bound to 1 / 0.75.
    scaled = LlffDatasetMapProvider(base_dir=str(tmp_path / "fern"), downscale_factor=1, recenter=False)
    frame = scaled.get_dataset_map().test[0]
    assert torch.allclose(frame.meta["depth_bounds"], torch.tensor([4 / 3, 4.0]))
    assert torch.allclose(frame.camera.T, torch.tensor([[0.0, 0.0, 4 / 3 * 4 / 2]]))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda base: np.save(base / "poses_bounds.npy", np.zeros((1, 15))), r"poses_bounds\.npy: expected a finite"),
        (lambda base: os.remove(base / "poses_bounds.npy"), r"poses_bounds\.npy not found"),
        (lambda base: os.remove(base / "images" / "IMG_1.JPG"), r"images: 1 images but .*poses_bounds\.npy has 2"),
        (lambda base: Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(base / "images" / "IMG_1.JPG"),
         r"images: the images have different sizes"),
    ],
)
def test_malformed_folders_name_the_file(tmp_path, change, message):
    _write_single_view(tmp_path, np.eye(3, 4), n_images=2)
    change(tmp_path)
    with pytest.raises(LlffFormatError, match=message) as error:
        LlffDatasetMapProvider(base_dir=str(tmp_path), downscale_factor=1).get_dataset_map()
    assert str(tmp_path) in str(error.value)


def test_images_that_do_not_match_the_poses_size_are_reported(tmp_path):
    _write_single_view(tmp_path, np.eye(3, 4), hwf=(40.0, 60.0, 30.0))
    with pytest.raises(LlffFormatError, match=r"images are 4x6 but poses_bounds\.npy gives 40x60"):
        LlffDatasetMapProvider(base_dir=str(tmp_path), downscale_factor=1).get_dataset_map()


def test_no_base_dir_means_no_data_path():
    assert LlffDatasetMapProvider().data_path() is None


@pytest.fixture(scope="module")
def rendered_llff(tmp_path_factory):
    """A folder written by tools/make_llff_dataset.py (subprocess) and the ground truth recomputed here."""
    out = tmp_path_factory.mktemp("llff") / "builtin"
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", "make_llff_dataset.py"), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    cameras = forward_facing_cameras(GRID, **TRUTH_SETTINGS, image_size_hw=SIZE_HW)
    return str(out), cameras, render_mesh(load_scene_mesh("builtin"), cameras, SIZE_HW)


def _all_frames(datasets):
    """Train and test frames sorted by frame number (the image index)."""
    return sorted(list(datasets.train) + list(datasets.test), key=lambda f: f.frame_number)


def test_round_trip_in_the_original_units(rendered_llff):
    folder, cameras, rendering = rendered_llff
    datasets = LlffDatasetMapProvider(base_dir=folder, downscale_factor=1, bd_factor=None, recenter=False
                                      ).get_dataset_map()
    # every 8th image (0 and 8) is held out; val = test; train is the rest
    assert [f.frame_number for f in datasets.test] == [0, 8] and [f.frame_number for f in datasets.val] == [0, 8]
    assert [f.frame_number for f in datasets.train] == [1, 2, 3, 4, 5, 6, 7]
    assert {f.frame_type for f in datasets.train} == {"train_known"}
    assert {f.frame_type for f in datasets.test} == {"test_unseen"}
    batch = collate(_all_frames(datasets))
    assert torch.allclose(batch.camera.R, cameras.R, atol=1e-5)
    assert torch.allclose(batch.camera.T, cameras.T, atol=1e-5)
    assert torch.allclose(batch.camera.focal_length, cameras.focal_length, rtol=1e-6)
    assert torch.allclose(batch.camera.principal_point, torch.zeros(9, 2), atol=1e-6)
    assert batch.camera.image_size.tolist() == [list(SIZE_HW)] * 9
    assert torch.allclose(batch.image_rgb, rendering.rgb.permute(0, 3, 1, 2), atol=0.5 / 255 + 1e-6)
    # the bounds are the exact depth range each view sees
    hit = rendering.mask > 0
    bounds = torch.stack([f.meta["depth_bounds"] for f in _all_frames(datasets)])
    assert torch.allclose(bounds[:, 0], torch.stack([d[m].min() for d, m in zip(rendering.depth, hit)]))
    assert torch.allclose(bounds[:, 1], torch.stack([d[m].max() for d, m in zip(rendering.depth, hit)]))


def _pixel_points(cameras, rendering, view, scale):
    """NDC xy + depth * scale of the hit pixels of one view, (1, P, 3)."""
    from recon_trainer.data.scene_rendering import pixel_center_ndc

    hit = rendering.mask[view] > 0
    xy = pixel_center_ndc(SIZE_HW).float()[hit]
    return torch.cat([xy, rendering.depth[view][hit][:, None] * scale], dim=1)[None]


def test_rescaled_and_recentred_cameras_reproject_known_points(rendered_llff):
    folder, cameras, rendering = rendered_llff
    frames = _all_frames(LlffDatasetMapProvider(base_dir=folder, downscale_factor=1).get_dataset_map())
    loaded = collate(frames).camera
    bounds = torch.stack([f.meta["depth_bounds"] for f in frames])
    hit = rendering.mask > 0
    near = min(float(d[m].min()) for d, m in zip(rendering.depth, hit))
    scale = 1.0 / (0.75 * near)
    assert float(bounds.min()) == pytest.approx(1 / 0.75, rel=1e-5)
    # The mean pose is now the identity: the mean camera centre is the origin, and the cameras look down -Z.
    assert torch.allclose(loaded.get_camera_center().mean(0), torch.zeros(3), atol=1e-5)
    from recon_trainer.data.cameras import opengl_c2w_from_cameras

    assert np.allclose(average_pose(opengl_c2w_from_cameras(loaded).double().numpy()), np.eye(4), atol=1e-5)
    # Surface points seen by view a land at the same pixels of view b as with the true cameras.
    for a, b in ((0, 8), (4, 2), (7, 3)):
        true_points = cameras[a].unproject_points(_pixel_points(cameras, rendering, a, 1.0))
        loaded_points = loaded[a].unproject_points(_pixel_points(cameras, rendering, a, scale))
        expected = cameras[b].transform_points_ndc(true_points)
        got = loaded[b].transform_points_ndc(loaded_points)
        assert torch.allclose(got[..., :2], expected[..., :2], atol=1e-4)
        assert torch.allclose(got[..., 2], expected[..., 2] * scale, rtol=1e-4)


def test_downscaled_folder_or_in_memory_resizing(rendered_llff, capsys):
    folder, _, _ = rendered_llff
    full = collate(list(LlffDatasetMapProvider(base_dir=folder, downscale_factor=1).get_dataset_map().test))
    half = collate(list(LlffDatasetMapProvider(base_dir=folder, downscale_factor=2).get_dataset_map().test))
    assert "not found" not in capsys.readouterr().out  # images_2 exists
    assert half.image_rgb.shape == (2, 3, 24, 32) and half.image_path[0].split(os.sep)[-2] == "images_2"
    assert torch.allclose(half.image_rgb, torch.nn.functional.avg_pool2d(full.image_rgb, 2), atol=0.5 / 255 + 1e-6)
    assert torch.allclose(half.camera.focal_length, full.camera.focal_length)
    assert torch.equal(half.camera.R, full.camera.R) and half.camera.image_size.tolist() == [[24, 32]] * 2
    quarter = collate(list(LlffDatasetMapProvider(base_dir=folder).get_dataset_map().test))  # default factor 4
    assert "images_4 not found; downscaling" in capsys.readouterr().out
    assert quarter.image_rgb.shape == (2, 3, 12, 16) and quarter.image_path[0].split(os.sep)[-2] == "images"
    assert torch.allclose(quarter.image_rgb, torch.nn.functional.avg_pool2d(full.image_rgb, 4), atol=1e-6)
    assert torch.allclose(quarter.camera.focal_length, full.camera.focal_length)


def test_known_frames_for_test(rendered_llff):
    folder, _, _ = rendered_llff
    datasets = LlffDatasetMapProvider(base_dir=folder, n_known_frames_for_test=3).get_dataset_map()
    test = datasets.test
    assert len(test) == 2 + 7 and len(datasets.val) == 2 and datasets.val.eval_batches is None
    assert [test[i].frame_number for i in range(2)] == [0, 8]
    assert [f.frame_number for f in list(test)[2:]] == [f.frame_number for f in datasets.train]
    assert len(test.eval_batches) == 2
    for i, batch in enumerate(test.eval_batches):
        assert batch[0] == i and len(set(batch[1:])) == 3 and all(2 <= k < 9 for k in batch[1:])
        assert [test[k].frame_type for k in batch[1:]] == ["train_known"] * 3
    again = LlffDatasetMapProvider(base_dir=folder, n_known_frames_for_test=3).get_dataset_map().test
    assert again.eval_batches == test.eval_batches  # seeded
    with pytest.raises(ValueError, match="n_known_frames_for_test=8"):
        LlffDatasetMapProvider(base_dir=folder, n_known_frames_for_test=8).get_dataset_map()
