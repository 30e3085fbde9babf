"""The built-in scene: procedural mesh, cache reuse, atomic rendering, viewpoint splits, frames."""
import json
import os

import numpy as np
import pytest
import torch

from recon_trainer.data import scene_rendering
from recon_trainer.data.providers.builtin_scene import (
    BuiltinScene,
    BuiltinSceneDatasetMapProvider,
    split_view_indices,
)
from recon_trainer.data.providers.scene_meshes import load_scene_mesh

TINY = {"n_views": 8, "holdout_every": 4, "resolution": 24}


def _files_and_mtimes(folder):
    return {
        os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
        for root, _, names in os.walk(folder)
        for name in names
    }


def test_procedural_scene_is_coloured_and_inside_the_unit_sphere():
    mesh = load_scene_mesh("builtin")
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert radii.max() == pytest.approx(1.0)
    assert np.allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9)
    assert mesh.visual.kind == "face"
    assert len(np.unique(mesh.visual.face_colors, axis=0)) > 100


def test_split_rule_interleaves_disjoint_views():
    splits = split_view_indices(20, 5)
    assert splits == {
        "train": [k for k in range(20) if k % 5 != 2],
        "val": [2, 12],
        "test": [7, 17],
    }


def test_rendered_once_then_reused_from_the_cache(tmp_path, monkeypatch):
    scene = BuiltinScene(cache_dir=str(tmp_path), **TINY)
    folder = scene.cache_folder()
    assert folder.startswith(str(tmp_path)) and os.path.basename(folder).startswith("builtin-")
    first = scene.get_dataset_map()
    files = _files_and_mtimes(folder)
    assert os.path.join(folder, "transforms_train.json") in files
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tmp")] == []

    def no_rendering(*args, **kwargs):
        raise AssertionError("the cached scene was rendered again")

    monkeypatch.setattr(scene_rendering, "render_mesh", no_rendering)
    again = BuiltinScene(cache_dir=str(tmp_path), **TINY)
    assert again.cache_folder() == folder
    second = again.get_dataset_map()
    assert _files_and_mtimes(folder) == files
    assert torch.equal(first.train[0].image_rgb, second.train[0].image_rgb)
    # Any setting that changes the images changes the folder.
    assert BuiltinScene(cache_dir=str(tmp_path), **{**TINY, "seed": 1}).cache_folder() != folder
    assert BuiltinScene(cache_dir=str(tmp_path), **{**TINY, "resolution": 16}).cache_folder() != folder


def test_a_failed_render_leaves_no_cache_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(scene_rendering, "render_mesh", broken)
    scene = BuiltinScene(cache_dir=str(tmp_path), **TINY)
    with pytest.raises(RuntimeError, match="renderer broke"):
        scene.get_dataset_map()
    assert os.listdir(tmp_path) == []


def test_default_cache_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path / "env_cache"))
    assert BuiltinScene(**TINY).cache_folder().startswith(str(tmp_path / "env_cache") + os.sep)


def test_frames_and_disjoint_viewpoint_splits(tmp_path):
    provider = BuiltinSceneDatasetMapProvider(scene_args={"cache_dir": str(tmp_path), "seed": 5, **TINY})
    assert provider.data_path() == provider.scene.cache_folder()
    datasets = provider.get_dataset_map()
    assert [len(d) for d in (datasets.train, datasets.val, datasets.test)] == [6, 1, 1]
    frame = datasets.val[0]
    assert frame.image_rgb.shape == (3, 24, 24) and frame.image_rgb.dtype == torch.float32
    for name in ("fg_probability", "mask_crop", "depth_map", "depth_mask"):
        assert getattr(frame, name).shape == (1, 24, 24), name
    assert len(frame.camera) == 1 and frame.image_size_hw.tolist() == [24, 24]
    assert (frame.frame_type, frame.sequence_name, datasets.train[0].frame_type) == (
        "test_unseen", "builtin", "train_known"
    )
    assert os.path.isfile(frame.image_path)
    assert set(frame.fg_probability.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(frame.depth_mask, frame.fg_probability)
    assert torch.equal(frame.depth_map > 0, frame.fg_probability > 0)
    assert (frame.image_rgb * (1 - frame.fg_probability) == 0).all()
    # Viewpoints: all 8 azimuths used once, on a ring of radius 4; val and test are not train views.
    centres = {
        split: torch.cat([f.camera.get_camera_center() for f in getattr(datasets, split)])
        for split in ("train", "val", "test")
    }
    everything = torch.cat(list(centres.values()))
    assert torch.allclose(everything.norm(dim=-1), torch.full((8,), 4.0), atol=1e-5)
    azimuths = torch.rad2deg(torch.atan2(everything[:, 0], everything[:, 2])).remainder(360).round()
    assert sorted(azimuths.tolist()) == [45.0 * k for k in range(8)]
    for held_out in ("val", "test"):
        assert torch.cdist(centres[held_out], centres["train"]).min() > 1.0
    # Frames are lit consistently and the depth agrees with the cameras: the scene is within the
    # unit sphere, so every hit is between distance - 1 and distance + 1.
    depths = frame.depth_map[frame.depth_mask > 0]
    assert depths.min() > 3.0 and depths.max() < 5.0
    with open(os.path.join(provider.data_path(), "scene.json")) as f:
        scene_json = json.load(f)
    assert [v["view"] for v in scene_json["views"]["val"]] == [2]


def test_mesh_file_scene(tmp_path):
    from tests.data.conftest import COW_OBJ

    scene = BuiltinScene(scene=COW_OBJ, cache_dir=str(tmp_path), **TINY)
    assert os.path.basename(scene.cache_folder()).startswith("cow-")
    assert scene.describe() == f"'{COW_OBJ}' (8 views, 24x24)"
    assert scene.get_dataset_map().train[0].fg_probability.sum() > 20


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"n_views": 3, "holdout_every": 5}, "leaves a split empty"),
        ({"distance": 0.5}, "distance must be > 1"),
        ({"elevation_range": (10.0, 95.0)}, "elevation_range must lie in"),
    ],
)
def test_bad_settings_are_reported(settings, message):
    with pytest.raises(ValueError, match=message):
        BuiltinScene(**settings)


def test_unknown_mesh_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such.obj"):
        BuiltinScene(scene=str(tmp_path / "no_such.obj"), cache_dir=str(tmp_path), **TINY).get_dataset_map()


def test_known_frames_for_test_on_the_scene_and_the_provider(tmp_path):
    scene = BuiltinScene(cache_dir=str(tmp_path), n_known_frames_for_test=2, **TINY)
    folder = scene.cache_folder()
    assert BuiltinScene(cache_dir=str(tmp_path), **TINY).cache_folder() == folder  # not part of the rendering
    datasets = scene.get_dataset_map()
    test = datasets.test
    assert len(test) == 1 + 6 and test[0].frame_type == "test_unseen"
    assert [f.frame_number for f in list(test)[1:]] == [f.frame_number for f in datasets.train]
    (batch,) = test.eval_batches
    assert batch[0] == 0 and len(set(batch[1:])) == 2 and min(batch[1:]) >= 1
    assert datasets.val.eval_batches is None and len(datasets.val) == 1
    scene_args = {"cache_dir": str(tmp_path), **TINY}
    provider = BuiltinSceneDatasetMapProvider(n_known_frames_for_test=2, scene_args=scene_args)
    assert "n_known_frames_for_test" not in provider.scene_args
    assert provider.get_dataset_map().test.eval_batches == test.eval_batches
    assert BuiltinScene(cache_dir=str(tmp_path), **TINY).get_dataset_map().test.eval_batches is None
    with pytest.raises(ValueError, match="n_known_frames_for_test=7: expected between 0 and the 6 train views"):
        BuiltinSceneDatasetMapProvider(n_known_frames_for_test=7, scene_args=TINY)
