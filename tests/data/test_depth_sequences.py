"""Depth datasets sampled by sequence: TUM, Sintel (and KITTI, ETH3D) as N-view items with the
frame-gap curriculum, through the mixing source and 2 DataLoader workers."""
import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.depth.sequences import SintelSequences, TUMSequences
from recon_trainer.data.depth.sintel import write_sintel
from recon_trainer.data.depth.synthetic import render_depth_views, write_tum
from recon_trainer.data.epoch_hooks import start_epoch
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.records import SequenceRecord


@pytest.fixture(scope="module")
def views():
    return render_depth_views(8, (24, 32), seed=3, depth_range=(1.0, 4.0))


def test_a_tum_sequence_gives_n_views_with_poses_within_the_gap(tmp_path, views):
    root = write_tum(str(tmp_path / "tum" / "rgbd_dataset_freiburg2_desk"), views)
    dataset = TUMSequences(root=root, num_views=3, min_thresh=1, max_thresh=2, initial_ratio=1.0)
    assert len(dataset) == 1 and [s.name for s in dataset.sequences] == ["rgbd_dataset_freiburg2_desk"]
    item = dataset[(0, 7, 0)]
    assert isinstance(item, SequenceRecord) and len(item.views) == 3
    frames = [view.frame for view in item.views]
    assert all(1 <= abs(b - a) <= 2 for a, b in zip(frames, frames[1:]))
    assert all(view.depth_kind == "metric" and view.intrinsics is not None and view.camera_to_world is not None
               for view in item.views)


def test_sintel_scenes_are_sequences(tmp_path, views):
    root = write_sintel(str(tmp_path / "sintel"), views, scenes=("alley_1", "bamboo_1"))
    dataset = SintelSequences(root=root, num_views=2, min_thresh=1, max_thresh=1)
    assert [(s.name, len(s.frames)) for s in dataset.sequences] == [("alley_1", 4), ("bamboo_1", 4)]
    item = dataset[1]
    assert item.sequence == "bamboo_1" and {view.sequence for view in item.views} == {"bamboo_1"}
    with pytest.raises(ConfigError, match="training_crop"):
        SintelSequences(root=root, training_crop=16)


def test_mixed_with_the_curriculum_through_two_workers(tmp_path, views):
    write_tum(str(tmp_path / "tum"), views)
    write_sintel(str(tmp_path / "sintel"), views, scenes=("alley_1",))
    source = MixtureDataSource(
        data_root=str(tmp_path),
        train="4 @ TUMSequences(root='tum', num_views=3, min_thresh=1, max_thresh=3) "
              "+ 4 @ SintelSequences(root='sintel', use_occlusions=False, num_views=3, min_thresh=1, max_thresh=3)",
        mixing="equal", batch_size=2, batches_per_epoch=2, num_workers=2, batch_builder_class_type="RecordBatch",
    )
    _, loaders = source.get_datasets_and_dataloaders()
    start_epoch(loaders.train, 0, 10)
    batches = list(loaders.train)
    assert [tuple(batch.image.shape) for batch in batches] == [(2, 3, 3, 24, 32)] * 2
    labels = sorted(row[0] for batch in batches for row in batch.dataset)  # (B, N) labels per batch
    assert labels == ["SintelSequences"] * 2 + ["TUMSequences"] * 2
    assert batches[0].intrinsics.shape == (2, 3, 3, 3) and torch.isfinite(batches[0].intrinsics).all()
