"""SimpleDataLoaderMapProvider batching and ReconDataSource with its built-in-scene fallback."""
import re

import torch

from recon_trainer.config import get_default_args
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.data.data_loader_map_provider import SimpleDataLoaderMapProvider
from recon_trainer.data.data_source import DatasetMap, ReconDataSource
from recon_trainer.data.datasets import SingleSceneDataset
from recon_trainer.data.frame_data import FrameData

TINY_SCENE = {"n_views": 8, "holdout_every": 4, "resolution": 16}


def _frames(n, frame_type="train_known"):
    frames = []
    for k in range(n):
        camera = look_at_cameras(
            torch.tensor([[0.0, 0.0, 3.0 + k]]), torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]), 2.0, (2, 3)
        )
        frames.append(
            FrameData(
                image_rgb=torch.full((3, 2, 3), float(k)),
                fg_probability=torch.ones(1, 2, 3),
                camera=camera,
                image_size_hw=torch.tensor([2, 3]),
                frame_number=k,
                sequence_name="seq",
                frame_type=frame_type,
            )
        )
    return SingleSceneDataset(frames)


def _numbers(loader):
    return [batch.frame_number.tolist() for batch in loader]


def test_batches_are_collated_frames():
    loaders = SimpleDataLoaderMapProvider(batch_size=2).get_data_loader_map(DatasetMap(train=_frames(5)))
    assert loaders.val is None and loaders.test is None
    batches = list(loaders.train)
    assert [len(b) for b in batches] == [2, 2, 1]
    batch = batches[0]
    assert batch.image_rgb.shape == (2, 3, 2, 3) and batch.fg_probability.shape == (2, 1, 2, 3)
    assert len(batch.camera) == 2 and batch.image_size_hw.shape == (2, 2)
    assert batch.sequence_name == ["seq", "seq"] and batch.frame_type == ["train_known"] * 2
    for b in batches:  # each frame's image travels with its camera and number
        assert torch.equal(b.image_rgb[:, 0, 0, 0], b.frame_number.float())
        assert torch.allclose(b.camera.T[:, 2], 3.0 + b.frame_number.float())
    numbers = [k for batch in _numbers(loaders.train) for k in batch]
    assert sorted(numbers) == [0, 1, 2, 3, 4]  # one pass, every frame once


def test_train_length_and_reproducible_shuffling():
    provider = SimpleDataLoaderMapProvider(batch_size=3, dataset_length_train=4)
    train = provider.get_data_loader_map(DatasetMap(train=_frames(5))).train
    assert len(train) == 4
    torch.manual_seed(7)
    first = _numbers(train)
    torch.manual_seed(7)
    assert _numbers(train) == first
    assert [len(b) for b in first] == [3, 3, 3, 3]
    torch.manual_seed(8)
    assert _numbers(train) != first


def test_val_and_test_keep_their_order():
    datasets = DatasetMap(val=_frames(5, "test_unseen"), test=_frames(4, "test_unseen"))
    loaders = SimpleDataLoaderMapProvider(batch_size=2).get_data_loader_map(datasets)
    assert loaders.train is None
    assert _numbers(loaders.val) == [[0, 1], [2, 3], [4]]
    assert _numbers(loaders.test) == [[0], [1], [2], [3]]
    short = SimpleDataLoaderMapProvider(batch_size=1, dataset_length_val=3, dataset_length_test=2)
    loaders = short.get_data_loader_map(datasets)
    assert _numbers(loaders.val) == [[0], [2], [4]]  # evenly spaced, in order
    assert _numbers(loaders.test) == [[0], [3]]


def test_defaults_pick_blender_and_simple_loaders():
    args = get_default_args(ReconDataSource)
    assert args.dataset_map_provider_class_type == "BlenderDatasetMapProvider"
    assert args.data_loader_map_provider_class_type == "SimpleDataLoaderMapProvider"
    assert args.dataset_map_provider_BlenderDatasetMapProvider_args.base_dir == ""
    assert "dataset_map_provider_BuiltinSceneDatasetMapProvider_args" in args


def test_no_data_path_falls_back_to_the_builtin_scene_with_one_line(tmp_path, capsys):
    args = get_default_args(ReconDataSource)
    args.builtin_scene_args.update(cache_dir=str(tmp_path), **TINY_SCENE)
    args.data_loader_map_provider_SimpleDataLoaderMapProvider_args.dataset_length_train = 3
    source = ReconDataSource(**args)
    datasets, loaders = source.get_datasets_and_dataloaders()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"recon_trainer: no dataset path given \(BlenderDatasetMapProvider\.base_dir\); training on the "
        r"built-in scene 'builtin' \(8 views, 16x16\) cached in " + re.escape(source.builtin_scene.cache_folder()),
        lines[0],
    )
    assert source.builtin_scene.cache_folder().startswith(str(tmp_path))
    assert [len(d) for d in (datasets.train, datasets.val, datasets.test)] == [6, 1, 1]
    assert len(loaders.train) == 3
    batch = next(iter(loaders.test))
    assert batch.image_rgb.shape == (1, 3, 16, 16) and batch.frame_type == ["test_unseen"]


def test_a_data_path_is_used_silently(tmp_path, capsys, exported_cow):
    blender = ReconDataSource(dataset_map_provider_BlenderDatasetMapProvider_args={"base_dir": exported_cow})
    datasets, _ = blender.get_datasets_and_dataloaders()
    assert datasets.train[0].sequence_name == "cow" and datasets.train[0].image_rgb.shape == (3, 32, 32)
    builtin = ReconDataSource(
        dataset_map_provider_class_type="BuiltinSceneDatasetMapProvider",
        dataset_map_provider_BuiltinSceneDatasetMapProvider_args={
            "scene_args": {"cache_dir": str(tmp_path), **TINY_SCENE}
        },
    )
    datasets, _ = builtin.get_datasets_and_dataloaders()
    assert len(datasets.train) == 6
    assert capsys.readouterr().out == ""
