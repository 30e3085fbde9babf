"""BlenderDatasetMapProvider: NeRF's layout read from hand-written files and from the export tool."""
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.data.frame_data import collate
from recon_trainer.data.providers.blender import BlenderDatasetMapProvider, BlenderFormatError
from recon_trainer.data.providers.builtin_scene import (
    export_blender_dataset,
    ring_cameras,
    ring_view_angles,
    split_view_indices,
)
from recon_trainer.data.providers.scene_meshes import load_scene_mesh
from recon_trainer.data.scene_rendering import render_mesh
from tests.data.conftest import EXPORT_SETTINGS

# A camera at (0, 0, 4) looking down -z (OpenGL identity rotation), 2 * atan(0.5) wide.
C2W = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 4.0], [0.0, 0.0, 0.0, 1.0]]
ANGLE = 2.0 * math.atan(0.5)


def _write_dataset(base, frames_per_split=None, rgba=None):
    """A hand-written 4x4 dataset; `frames_per_split` maps a split to its frames list."""
    os.makedirs(base / "train", exist_ok=True)
    if rgba is None:
        rgba = np.zeros((4, 4, 4), dtype=np.uint8)
        rgba[1:3, 1:3] = [200, 100, 50, 255]
        rgba[0, 0] = [255, 255, 255, 128]
    Image.fromarray(rgba).save(base / "train" / "r_0.png")
    for split in ("train", "val", "test"):
        default = [{"file_path": "./train/r_0", "rotation": 0.1, "transform_matrix": C2W}]
        frames = (frames_per_split or {}).get(split, default)
        (base / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": ANGLE, "frames": frames}))


def _provider(base, **kwargs):
    return BlenderDatasetMapProvider(base_dir=str(base), **kwargs)


def test_hand_written_dataset_cameras_images_and_frame_types(tmp_path):
    _write_dataset(tmp_path / "chair")
    provider = _provider(tmp_path / "chair")
    assert provider.data_path() == str(tmp_path / "chair")
    datasets = provider.get_dataset_map()
    assert [len(d) for d in (datasets.train, datasets.val, datasets.test)] == [1, 1, 1]
    frame = datasets.train[0]
    # pytorch3d: view = world @ R + T with x left, z forward: the OpenGL x and z axes flip.
    assert torch.allclose(frame.camera.R, torch.diag(torch.tensor([-1.0, 1.0, -1.0]))[None])
    assert torch.allclose(frame.camera.T, torch.tensor([[0.0, 0.0, 4.0]]))
    # focal = 0.5 * W / tan(angle / 2) = W pixels = 2 in NDC (half the short side is 2 pixels)
    assert torch.allclose(frame.camera.focal_length, torch.tensor([[2.0, 2.0]]))
    assert torch.allclose(frame.camera.principal_point, torch.zeros(1, 2))
    assert frame.camera.image_size.tolist() == [[4, 4]]
    assert frame.image_rgb.shape == (3, 4, 4) and frame.fg_probability.shape == frame.mask_crop.shape == (1, 4, 4)
    assert torch.allclose(frame.image_rgb[:, 1, 1], torch.tensor([200.0, 100.0, 50.0]) / 255)
    assert frame.fg_probability[0, 1, 1] == 1 and frame.fg_probability[0, 3, 3] == 0
    # straight alpha 128/255 over the default black background: premultiplied colour
    assert torch.allclose(frame.image_rgb[:, 0, 0], torch.full((3,), 128 / 255), atol=1e-6)
    assert frame.depth_map is None and frame.depth_mask is None
    assert (frame.frame_type, datasets.val[0].frame_type, datasets.test[0].frame_type) == (
        "train_known", "test_unseen", "test_unseen"
    )
    assert [d[0].frame_number for d in (datasets.train, datasets.val, datasets.test)] == [0, 1, 2]
    assert frame.sequence_name == "chair"
    assert frame.image_path == str(tmp_path / "chair" / "train" / "r_0.png")
    # the scene origin is 4 units in front of the camera, at the image centre
    assert torch.allclose(frame.camera.transform_points_ndc(torch.zeros(1, 1, 3)), torch.tensor([[[0.0, 0.0, 4.0]]]))


def test_background_colour_and_images_without_alpha(tmp_path):
    _write_dataset(tmp_path / "a")
    white = _provider(tmp_path / "a", bg_color=(1.0, 1.0, 1.0), object_name="named").get_dataset_map().train[0]
    assert torch.allclose(white.image_rgb[:, 3, 3], torch.ones(3))
    assert torch.allclose(white.image_rgb[:, 0, 0], torch.ones(3))  # white over white
    assert white.sequence_name == "named"
    _write_dataset(tmp_path / "b", rgba=np.full((4, 4, 4), 90, dtype=np.uint8)[..., :3].copy())
    opaque = _provider(tmp_path / "b").get_dataset_map().train[0]
    assert (opaque.fg_probability == 1).all()
    assert torch.allclose(opaque.image_rgb, torch.full((3, 4, 4), 90 / 255))


def test_missing_transforms_file_names_the_path(tmp_path):
    _write_dataset(tmp_path)
    os.remove(tmp_path / "transforms_val.json")
    with pytest.raises(BlenderFormatError, match=r"transforms_val\.json not found"):
        _provider(tmp_path).get_dataset_map()


@pytest.mark.parametrize(
    "frames, message",
    [
        ([{"file_path": "./train/r_0", "transform_matrix": C2W}, {"file_path": "./train/r_0",
          "transform_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}], r"frames\[1\]: 'transform_matrix' must be a 4x4"),
        ([{"transform_matrix": C2W}], r"frames\[0\]: 'file_path' must be a non-empty string"),
        ([{"file_path": "./train/r_9", "transform_matrix": C2W}], r"frames\[0\]: image .*r_9\.png not found"),
        ([], r"'frames' must be a non-empty list"),
    ],
)
def test_bad_frame_entries_name_file_and_index(tmp_path, frames, message):
    _write_dataset(tmp_path, {"test": frames})
    with pytest.raises(BlenderFormatError, match=message) as error:
        _provider(tmp_path).get_dataset_map()
    assert str(tmp_path / "transforms_test.json") in str(error.value)


def test_bad_camera_angle_and_json(tmp_path):
    _write_dataset(tmp_path)
    (tmp_path / "transforms_train.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(BlenderFormatError, match=r"transforms_train\.json: 'camera_angle_x' must be"):
        _provider(tmp_path).get_dataset_map()
    (tmp_path / "transforms_train.json").write_text("{not json")
    with pytest.raises(BlenderFormatError, match=r"transforms_train\.json: not valid JSON"):
        _provider(tmp_path).get_dataset_map()


def test_no_base_dir_means_no_data_path():
    assert BlenderDatasetMapProvider().data_path() is None


@pytest.fixture(scope="module")
def cow_truth():
    """The exported cow's cameras and renders, recomputed here per split."""
    s = EXPORT_SETTINGS
    angles = ring_view_angles(s["n_views"], (-20.0, 60.0), s["seed"])
    mesh = load_scene_mesh(s["scene"])
    truth = {}
    for split, views in split_view_indices(s["n_views"], s["holdout_every"]).items():
        cameras = ring_cameras(angles[views], 4.0, 39.6, s["resolution"])
        truth[split] = (cameras, render_mesh(mesh, cameras, (s["resolution"], s["resolution"])))
    return truth


def test_export_tool_round_trip(exported_cow, cow_truth):
    datasets = _provider(exported_cow).get_dataset_map()
    for split in ("train", "val", "test"):
        batch = collate(list(getattr(datasets, split)))
        cameras, rendering = cow_truth[split]
        assert torch.allclose(batch.camera.R, cameras.R, atol=1e-5)
        assert torch.allclose(batch.camera.T, cameras.T, atol=1e-5)
        assert torch.allclose(batch.camera.focal_length, cameras.focal_length, rtol=1e-6)
        assert torch.allclose(batch.camera.principal_point, torch.zeros_like(cameras.principal_point), atol=1e-6)
        assert torch.equal(batch.fg_probability[:, 0], rendering.mask)
        assert torch.allclose(batch.image_rgb, rendering.rgb.permute(0, 3, 1, 2), atol=0.5 / 255 + 1e-6)
        assert torch.equal(batch.depth_map[:, 0], rendering.depth)
        assert torch.equal(batch.depth_mask[:, 0], rendering.mask)
    assert len(datasets.train) == 6 and len(datasets.val) == len(datasets.test) == 1


def test_downscale_averages_areas(exported_cow, cow_truth):
    full = collate(list(_provider(exported_cow).get_dataset_map().val))
    half = collate(list(_provider(exported_cow, downscale_factor=2).get_dataset_map().val))
    assert half.image_rgb.shape == (1, 3, 16, 16) and half.image_size_hw.tolist() == [[16, 16]]

    def pool(t):
        return torch.nn.functional.avg_pool2d(t, 2)

    assert torch.allclose(half.fg_probability, pool(full.fg_probability), atol=1e-6)
    assert torch.allclose(half.image_rgb, pool(full.image_rgb), atol=1e-6)  # premultiplied on black
    assert torch.allclose(half.camera.focal_length, full.camera.focal_length)
    assert torch.equal(half.camera.R, full.camera.R)
    full_inside = pool(full.depth_mask) == 1
    assert torch.equal(half.depth_mask.bool(), full_inside)
    assert torch.allclose(half.depth_map[full_inside], pool(full.depth_map)[full_inside], atol=1e-5)
    assert (half.depth_map[~full_inside] == 0).all()


def test_export_refuses_a_non_empty_folder(exported_cow):
    with pytest.raises(FileExistsError, match="not empty"):
        export_blender_dataset(exported_cow, n_views=8, holdout_every=4, resolution=8)


def test_known_frames_for_test(exported_cow):
    datasets = _provider(exported_cow, n_known_frames_for_test=4).get_dataset_map()
    test = datasets.test
    assert len(test) == 1 + 6 and test[0].frame_type == "test_unseen"
    assert {test[k].frame_type for k in range(1, 7)} == {"train_known"}
    (batch,) = test.eval_batches
    assert batch[0] == 0 and len(set(batch[1:])) == 4 and all(1 <= k < 7 for k in batch[1:])
    assert len(datasets.val) == 1 and datasets.val.eval_batches is None
    assert _provider(exported_cow).get_dataset_map().test.eval_batches is None
    with pytest.raises(ValueError, match="n_known_frames_for_test=7"):
        _provider(exported_cow, n_known_frames_for_test=7).get_dataset_map()
