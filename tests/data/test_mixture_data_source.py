"""MixtureDataSource: datasets and loaders from mixing expressions, batches of FrameData."""
import glob
import os

import numpy as np
import pytest
import torch
from accelerate import skip_first_batches

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.depth.base import DepthDataset, DepthSample
from recon_trainer.data.frame_data import FrameData
from recon_trainer.data.mixing import MixableDataset
from recon_trainer.data.mixing.data_source import MixtureDataSource, count_labels


@registry.register
class MixToyFrames(MixableDataset):
    """`size` frames; frame i has image_rgb (3, 2, 2) filled with `value` + i / 100."""

    size: int = 4  # number of frames
    value: float = 0.0  # image offset

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> FrameData:
        image = torch.full((3, 2, 2), self.value + index / 100)
        return FrameData(image_rgb=image, meta={"dataset": self.label(), "index": index})


@registry.register
class MixToyDepth(DepthDataset):
    """A depth dataset of root/*.npz files with `image` (H, W, 3) uint8 and `depth` (H, W)."""

    def list_samples(self):
        if not os.path.isdir(self.root):
            raise ConfigError(f"MixToyDepth: no folder {self.root}")
        return sorted(glob.glob(os.path.join(self.root, "*.npz")))

    def load_sample(self, record) -> DepthSample:
        with np.load(record) as data:
            return DepthSample(image=data["image"], depth=data["depth"], path=record)


def _source(**kwargs) -> MixtureDataSource:
    return MixtureDataSource(**kwargs)


def _image_keys(batch):
    return [(frame["dataset"], frame["index"]) for frame in batch.meta["frames"]]


def test_equal_mixing_end_to_end():
    source = _source(
        train="6 @ MixToyFrames(size=3, name='a') + MixToyFrames(size=10, value=1.0, name='b')",
        val="MixToyFrames(size=3, name='a') + 2 * MixToyFrames(size=2, value=1.0, name='b')",
        mixing="equal", batch_size=4, batches_per_epoch=3, eval_batch_size=2,
    )
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert datasets.test is None and loaders.test is None
    assert datasets.train.component_sizes == [6, 10] and datasets.train.labels() == ["a", "b"]
    torch.manual_seed(0)
    batches = list(loaders.train)
    assert len(batches) == len(loaders.train) == 3
    for batch in batches:
        assert isinstance(batch, FrameData) and batch.image_rgb.shape == (4, 3, 2, 2)
        assert sorted(name for name, _ in _image_keys(batch)) == ["a", "a", "b", "b"]
        for (name, index), image in zip(_image_keys(batch), batch.image_rgb):  # images travel with their meta
            assert torch.allclose(image, torch.full_like(image, (name == "b") + index / 100))
    assert count_labels(batches) == {"a": 6, "b": 6}
    val = list(loaders.val)
    assert [_image_keys(b) for b in val] == [[("a", 0), ("a", 1)], [("a", 2), ("b", 0)], [("b", 0), ("b", 1)],
                                             [("b", 1)]]


def test_concat_and_weighted_shares():
    train = "MixToyFrames(size=12, name='a') + MixToyFrames(size=4, name='b')"
    concat = _source(train=train, batch_size=4)
    _, loaders = concat.get_datasets_and_dataloaders()
    assert len(loaders.train) == 4  # len(train) // batch_size
    torch.manual_seed(0)
    assert count_labels(loaders.train) == {"a": 12, "b": 4}
    weighted = _source(train=train, mixing="weighted", weights=(1.0, 3.0), batch_size=4, batches_per_epoch=5)
    _, loaders = weighted.get_datasets_and_dataloaders()
    for batch in loaders.train:
        assert count_labels([batch]) == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mixing": "equl"}, r"bad value 'equl' for 'MixtureDataSource.mixing'; did you mean 'equal'\?"),
        ({"mixing": "weighted", "weights": (1.0,)}, r"weights=\[1.0\].*one positive weight per top-level term.*has 2"),
        ({"mixing": "weighted", "weights": (1.0, 0.0)}, r"one positive weight"),
        ({"weights": (1.0, 2.0)}, r"only used with mixing='weighted'"),
        ({"batch_size": 0}, r"batch_size must be >= 1"),
        ({"val": "MixToyFrames(size=2) +"}, r"mixing expression 'MixToyFrames\(size=2\) \+': invalid syntax"),
    ],
)
def test_config_errors(kwargs, message):
    kwargs = {"train": "MixToyFrames(size=2) + 3 @ MixToyFrames(size=2)", **kwargs}
    with pytest.raises(ConfigError, match=message):
        _source(**kwargs)


def test_epochs_are_reproducible_and_resumable():
    source = _source(train="MixToyFrames(size=5, name='a') + 7 @ MixToyFrames(size=3, name='b')",
                     mixing="equal", batch_size=2, batches_per_epoch=5)
    loader = source.get_datasets_and_dataloaders()[1].train
    torch.manual_seed(3)
    epoch = [_image_keys(b) for b in loader]
    torch.manual_seed(3)
    assert [_image_keys(b) for b in loader] == epoch
    torch.manual_seed(3)
    assert [_image_keys(b) for b in skip_first_batches(loader, 2)] == epoch[2:]  # the trainer's resume
    torch.manual_seed(4)
    assert [_image_keys(b) for b in loader] != epoch


def test_worker_processes_give_the_same_batches():
    train = "4 @ MixToyFrames(size=6, name='a') + MixToyFrames(size=3, name='b')"
    epochs = []
    for workers in (0, 1):
        loader = _source(train=train, batch_size=3, num_workers=workers).get_datasets_and_dataloaders()[1].train
        torch.manual_seed(5)
        epochs.append([(_image_keys(b), b.image_rgb) for b in loader])
    assert [keys for keys, _ in epochs[0]] == [keys for keys, _ in epochs[1]]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(*epochs))


def _write_depth_folder(folder, n, seed):
    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    for k in range(n):
        image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        depth = rng.uniform(1.0, 5.0, (6, 8)).astype(np.float32)
        np.savez(os.path.join(folder, f"{k:02d}.npz"), image=image, depth=depth)


def test_depth_datasets_mix_under_data_root(tmp_path):
    _write_depth_folder(tmp_path / "data" / "first", 3, seed=0)
    _write_depth_folder(tmp_path / "data" / "second", 5, seed=1)
    source = _source(
        data_root=str(tmp_path / "data"),
        train="MixToyDepth(root='first', training_crop=4) + MixToyDepth(root='second', training_crop=4, name='two')",
        test="MixToyDepth(root='second', max_images=2)",
        mixing="equal", batch_size=4, batches_per_epoch=2,
    )
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert [child.root for child in datasets.train.children] == [str(tmp_path / "data" / "first"),
                                                                  str(tmp_path / "data" / "second")]
    torch.manual_seed(0)
    batches = list(loaders.train)
    assert count_labels(batches) == {"MixToyDepth": 4, "two": 4}
    batch = batches[0]
    assert batch.image_rgb.shape == (4, 3, 4, 4) and batch.disparity_map.shape == (4, 1, 4, 4)
    assert bool((batch.disparity_map[batch.depth_mask > 0] >= 1 / 5).all())  # 1 / depth, depth in [1, 5]
    test = list(loaders.test)
    assert len(test) == 2 and test[0].depth_map.shape == (1, 1, 6, 8)
    with np.load(tmp_path / "data" / "second" / "01.npz") as data:
        assert torch.allclose(test[1].depth_map[0, 0], torch.from_numpy(data["depth"]))
