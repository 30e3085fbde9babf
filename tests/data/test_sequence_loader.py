"""SequenceDataLoaderMapProvider: same-sequence train batches and conditioned val / test batches."""
import pytest
import torch

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.data.data_loader_map_provider import SequenceDataLoaderMapProvider
from recon_trainer.data.data_source import DatasetMap
from recon_trainer.data.datasets import SingleSceneDataset
from recon_trainer.data.frame_data import FrameData


def _frames(split: str, counts: dict, frame_type: str):
    frames = []
    for name, n in counts.items():
        for k in range(n):
            camera = look_at_cameras(torch.tensor([[0.0, 0.0, 3.0 + k]]), torch.zeros(1, 3),
                                     torch.tensor([[0.0, 1.0, 0.0]]), focal_length=2.0, image_size_hw=(2, 2))
            frames.append(FrameData(image_rgb=torch.full((3, 2, 2), float(k)), camera=camera, frame_number=k,
                                    sequence_name=name, frame_type=frame_type, image_path=f"{split}/{name}/{k}"))
    return frames


@pytest.fixture()
def datasets():
    train = SingleSceneDataset(_frames("train", {"a": 6, "b": 4, "c": 5}, "train_known"))
    val = SingleSceneDataset(_frames("val", {"a": 2, "b": 2}, "test_unseen"))
    test = SingleSceneDataset(_frames("test", {"a": 3, "c": 2}, "test_unseen"))
    return DatasetMap(train=train, val=val, test=test)


def _batches(loader):
    return [batch for batch in loader]


def test_train_batches_hold_one_sequence_and_are_reproducible(datasets):
    provider = SequenceDataLoaderMapProvider(batch_size=3, dataset_length_train=20, images_per_seq_options=(2, 3))
    loader = provider.get_data_loader_map(datasets).train
    torch.manual_seed(0)
    first = _batches(loader)
    assert len(first) == 20
    for batch in first:
        assert len(set(batch.sequence_name)) == 1 and len(batch) in (2, 3)
        assert len(set(batch.image_path)) == len(batch)  # no frame twice
    assert {len(b) for b in first} == {2, 3} and len({b.sequence_name[0] for b in first}) == 3
    torch.manual_seed(0)
    assert [b.image_path for b in _batches(loader)] == [b.image_path for b in first]
    default = SequenceDataLoaderMapProvider(batch_size=4).get_data_loader_map(datasets).train
    assert len(default) == 15 // 4 and all(len(b) == 4 for b in default)


def test_consecutive_frames(datasets):
    provider = SequenceDataLoaderMapProvider(batch_size=3, dataset_length_train=10, sample_consecutive_frames=True,
                                             consecutive_frames_max_gap=2)
    for batch in provider.get_data_loader_map(datasets).train:
        numbers = batch.frame_number.tolist()
        gaps = [b - a for a, b in zip(numbers, numbers[1:])]
        assert len(numbers) == 3 and all(1 <= g <= 2 for g in gaps)


def test_known_conditioning_takes_sources_from_train_of_the_same_sequence(datasets):
    provider = SequenceDataLoaderMapProvider(batch_size=4)
    batches = _batches(provider.get_data_loader_map(datasets).test)
    assert len(batches) == len(datasets.test)
    for batch in batches:
        assert batch.image_path[0].startswith("test/") and batch.frame_type[0] == "test_unseen"
        assert all(p.startswith("train/") for p in batch.image_path[1:]) and len(batch) == 4
        assert len(set(batch.sequence_name)) == 1 and len(set(batch.image_path)) == 4
    again = _batches(provider.get_data_loader_map(datasets).test)
    assert [b.image_path for b in again] == [b.image_path for b in batches]  # deterministic


def test_same_and_train_conditioning(datasets):
    same = SequenceDataLoaderMapProvider(batch_size=3, val_conditioning_type="SAME")
    for batch in same.get_data_loader_map(datasets).val:
        assert all(p.startswith("val/") for p in batch.image_path) and len(batch) == 2  # 2 frames per sequence
        assert len(set(batch.sequence_name)) == 1 and len(set(batch.image_path)) == 2
    train = SequenceDataLoaderMapProvider(batch_size=5, test_conditioning_type="TRAIN")
    batches = _batches(train.get_data_loader_map(datasets).test)
    assert all(len(b) == 5 and all(p.startswith("train/") for p in b.image_path[1:]) for b in batches)
    assert any(len(set(b.sequence_name[1:])) > 1 for b in batches)


def test_eval_batches_and_dataset_lengths(datasets):
    datasets.test.eval_batches = [[0, 1], [4, 3, 2], [2]]
    provider = SequenceDataLoaderMapProvider(batch_size=4)
    batches = _batches(provider.get_data_loader_map(datasets).test)
    assert [b.image_path for b in batches] == [["test/a/0", "test/a/1"], ["test/c/1", "test/c/0", "test/a/2"],
                                               ["test/a/2"]]
    short = SequenceDataLoaderMapProvider(batch_size=2, dataset_length_test=2, dataset_length_val=1)
    loaders = short.get_data_loader_map(datasets)
    assert len(_batches(loaders.test)) == 2 and len(_batches(loaders.val)) == 1
    assert SequenceDataLoaderMapProvider().get_data_loader_map(DatasetMap(train=datasets.train)).test is None


def test_config_fields_and_errors():
    args = get_default_args(SequenceDataLoaderMapProvider)
    assert list(args) == ["batch_size", "num_workers", "dataset_length_train", "dataset_length_val",
                          "dataset_length_test", "images_per_seq_options", "sample_consecutive_frames",
                          "consecutive_frames_max_gap", "train_conditioning_type", "val_conditioning_type",
                          "test_conditioning_type"]
    assert args.test_conditioning_type == "KNOWN" and args.val_conditioning_type == "SAME"
    with pytest.raises(ConfigError, match="test_conditioning_type"):
        SequenceDataLoaderMapProvider(test_conditioning_type="OTHER")
    with pytest.raises(ConfigError, match="images_per_seq_options"):
        SequenceDataLoaderMapProvider(images_per_seq_options=(0,))
