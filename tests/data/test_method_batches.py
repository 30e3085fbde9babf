"""From tiny copies of the original on-disk layouts, through MixtureDataSource and DataLoaders with two
worker processes, to each method's batch: a MoGe instance (log-encoded depth PNG with sky and
unknown pixels), Spann3R sequences of views with the frame-gap curriculum changing between epochs,
and a Symphonies NYU sample with its label volume."""
import collections
import os
from typing import Collection, List, Sequence

import numpy as np
import pytest
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.epoch_hooks import start_epoch
from recon_trainer.data.file_check import DataFile, without
from recon_trainer.data.formats import moge, nyu_ssc, scannet
from recon_trainer.data.frame_data import FrameData
from recon_trainer.data.mixing import MixableDataset
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.records import ViewRecord, VoxelRecord, invert_pose, pixel_centres
from recon_trainer.data.sampling.sequences import SequenceDataset, SequenceEntry

WORKERS = 2


# ------------------------------------------------------------------------------------------ readers


@registry.register
class MethodBatchMoGe(MixableDataset):
    """A MoGe-layout dataset: the instances listed in <root>/.index.txt."""

    PATH_FIELDS = ("root",)

    root: str = ""  # the dataset folder (holds .index.txt)
    depth_kind: str = "metric"  # what depth.png holds
    label_type: str = "synthetic"  # MoGe's label type of the dataset

    def __post_init__(self) -> None:
        self._instances = moge.read_index(self.root)

    def __len__(self) -> int:
        return len(self._instances)

    def __getitem__(self, index: int) -> ViewRecord:
        return moge.read_instance(self._instances[index], depth_kind=self.depth_kind, label_type=self.label_type,
                                  dataset=self.label())

    def item_files(self, index: int) -> Sequence[DataFile]:
        folder = self._instances[index]
        return [DataFile(os.path.join(folder, name)) for name in ("image.jpg", "depth.png", "meta.json")]

    def drop_items(self, indices: Collection[int]) -> None:
        self._instances = without(self._instances, indices)


@registry.register
class MethodBatchScanNet(SequenceDataset):
    """ScanNet in SimpleRecon's layout (Spann3R's), as sequences of views."""

    PATH_FIELDS = ("ROOT",)

    ROOT: str = ""  # dataset folder
    split: str = "train"  # train, val or test

    def list_sequences(self) -> List[SequenceEntry]:
        return [SequenceEntry(scene, tuple(scannet.list_frames(self.ROOT, self.split, scene)))
                for scene in scannet.read_split(self.ROOT, self.split)]

    def load_frame(self, sequence: SequenceEntry, frame: int) -> ViewRecord:
        return scannet.read_frame(self.ROOT, self.split, sequence.name, frame, dataset=self.label())

    def frame_files(self, sequence: SequenceEntry, frame: int) -> Sequence[DataFile]:
        paths = scannet.frame_paths(self.ROOT, self.split, sequence.name, frame)
        return [DataFile(paths["color"]), DataFile(paths["depth"]), DataFile(paths["pose"], "file")]


@registry.register
class MethodBatchNYU(MixableDataset):
    """NYUv2 SSC as MonoScene pre-processes it (Symphonies' NYU data)."""

    PATH_FIELDS = ("data_root", "label_root")

    data_root: str = ""  # NYU{split}/<name>_color.jpg and <name>.png
    label_root: str = ""  # NYU{split}/<name>.pkl
    split: str = "train"  # train or test

    def __post_init__(self) -> None:
        self._names = nyu_ssc.list_samples(self.label_root, self.split)
        if not self._names:
            raise ConfigError(f"{self.label()}: no samples under {self.label_root!r}")

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int) -> ViewRecord:
        return nyu_ssc.read_sample(self.data_root, self.label_root, self.split, self._names[index], dataset=self.label())


def _loader_items(loader, epochs=1):
    return [batch for _ in range(epochs) for batch in loader]


# ------------------------------------------------------------------------------------------ MoGe


H, W = 24, 32
NORMALISED_K = np.array([[0.8, 0.0, 0.5], [0.0, 1.0, 0.48], [0.0, 0.0, 1.0]])


def _moge_depth(k):
    rows = np.arange(H, dtype=np.float32)[:, None]
    depth = np.broadcast_to(1.0 + 0.2 * k + rows / 10, (H, W)).copy()
    depth[:4] = np.inf  # sky
    depth[10, 5:9] = np.nan  # unknown
    return depth


@pytest.fixture()
def moge_root(tmp_path):
    root = tmp_path / "data" / "moge_set"
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    instances = []
    for k in range(3):
        rgb = np.stack([rows * 8, cols * 6 + k * 10, np.full_like(rows, 90)], axis=-1).astype(np.uint8)
        instance = str(root / "scenes" / f"{k:04d}")
        moge.write_instance(instance, rgb, _moge_depth(k), NORMALISED_K)
        instances.append(instance)
    moge.write_index(str(root), instances)
    return tmp_path / "data"


def test_moge_instances_as_records(moge_root):
    source = MixtureDataSource(data_root=str(moge_root), train="6 @ MethodBatchMoGe(root='moge_set')", batch_size=3,
                               num_workers=WORKERS, batch_builder_class_type="RecordBatch")
    datasets, loaders = source.get_datasets_and_dataloaders()
    torch.manual_seed(0)
    batches = _loader_items(loaders.train)
    assert len(batches) == 2
    for batch in batches:
        assert isinstance(batch, ViewRecord) and batch.batch_shape == (3,)
        assert batch.image.shape == (3, 3, H, W) and batch.depth.shape == (3, H, W)
        assert bool(torch.isposinf(batch.depth[:, :4]).all()) and bool(torch.isnan(batch.depth[:, 10, 5:9]).all())
        assert int(batch.depth_valid()[0].sum()) == H * W - 4 * W - 4
        expected_k = torch.tensor([[0.8 * W, 0, 0.5 * W], [0, 1.0 * H, 0.48 * H], [0, 0, 1]])
        assert torch.allclose(batch.intrinsics, expected_k.expand(3, 3, 3))
        assert batch.label_type == ["synthetic"] * 3 and batch.dataset == ["MethodBatchMoGe"] * 3
        for depth, path in zip(batch.depth, batch.path):
            k = int(os.path.basename(os.path.dirname(path)))
            finite = torch.isfinite(depth)
            assert torch.allclose(depth[finite], torch.from_numpy(_moge_depth(k))[finite], rtol=1e-4)
    seen = collections.Counter(path for batch in batches for path in batch.path)
    assert sorted(seen.values()) == [2, 2, 2]  # 6 @ three instances: each twice


def test_moge_instances_as_frame_data(moge_root):
    source = MixtureDataSource(data_root=str(moge_root), train="MethodBatchMoGe(root='moge_set')",
                               test="MethodBatchMoGe(root='moge_set')", batch_size=3, num_workers=WORKERS)
    _, loaders = source.get_datasets_and_dataloaders()
    torch.manual_seed(0)
    (batch,) = _loader_items(loaders.train)
    assert isinstance(batch, FrameData) and batch.image_rgb.shape == (3, 3, H, W)
    assert batch.depth_map.shape == (3, 1, H, W) and batch.camera is None  # MoGe has no poses
    assert bool((batch.depth_map[:, :, :4] == 0).all()) and bool((batch.depth_mask[:, :, :4] == 0).all())
    assert bool(batch.meta["frames"][0]["depth_infinite"][0, :4].all())
    assert list(loaders.test_sets) == ["MethodBatchMoGe"] and len(loaders.test_sets["MethodBatchMoGe"]) == 3


# ------------------------------------------------------------------------------------------ Spann3R

FRAMES = 40
K_OPENCV = np.array([[20.0, 0.0, 15.5], [0.0, 20.0, 11.5], [0.0, 0.0, 1.0]])


def _pose(frame):
    """Camera-to-world of a camera moving along +x and turning slowly about +y."""
    angle = 0.01 * frame
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    pose[:3, 3] = [0.05 * frame, 0.0, 0.0]
    return pose


@pytest.fixture()
def scannet_root(tmp_path):
    root = str(tmp_path / "scannet")
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    for s, scene in enumerate(("scene0000_00", "scene0001_00")):
        scannet.write_scene(root, "train", scene, K_OPENCV)
        for frame in range(FRAMES + 5 * s):
            rgb = np.stack([rows * 8, cols * 6, np.full_like(rows, frame * 5)], axis=-1).astype(np.uint8)
            depth = np.full((H, W), 1.0 + frame / 100)
            depth[0, :3] = 0.0  # unknown
            scannet.write_frame(root, "train", scene, frame, rgb, depth, _pose(frame))
    return root


def _spann3r_source(root, **kwargs):
    train = f"8 @ MethodBatchScanNet(ROOT='{root}', num_views=4, min_thresh=1, max_thresh=12, transform=ColorJitter)"
    return MixtureDataSource(train=train, batch_size=2, num_workers=WORKERS, **kwargs)


def _gaps(frames):
    ordered = sorted(frames)
    return [b - a for a, b in zip(ordered, ordered[1:])]


def test_spann3r_sequences_with_the_curriculum(scannet_root):
    source = _spann3r_source(scannet_root, batch_builder_class_type="RecordBatch")
    datasets, loaders = source.get_datasets_and_dataloaders()
    loader = loaders.train
    assert len(loader) == 4
    largest, expected_gap = {}, {0: 1, 5: 12, 9: 6}  # Spann3R's schedule over 10 epochs: ratios 0, 1 and 0.5
    for epoch in expected_gap:
        start_epoch(loader, epoch, 10)
        torch.manual_seed(epoch)
        batches = _loader_items(loader, epochs=3)
        largest[epoch] = max(g for batch in batches for frames in batch.frame.tolist() for g in _gaps(frames))
        assert {int(g) for batch in batches for g in batch.extras["sequence"]["max_gap"]} == {expected_gap[epoch]}
    assert largest[0] == 1 and 6 < largest[5] <= 12 and 1 < largest[9] <= 6  # the gap really changes per epoch
    batch = batches[0]
    assert isinstance(batch, ViewRecord) and batch.batch_shape == (2, 4)
    assert batch.image.shape == (2, 4, 3, H, W) and batch.depth.shape == (2, 4, H, W)
    assert batch.intrinsics.shape == (2, 4, 3, 3) and batch.camera_to_world.shape == (2, 4, 4, 4)
    assert batch.depth_kind == [["metric"] * 4] * 2 and len(batch.to_cameras()) == 8
    for b in range(2):
        for v in range(4):
            frame = int(batch.frame[b, v])
            assert torch.allclose(batch.camera_to_world[b, v], torch.tensor(_pose(frame), dtype=torch.float32), atol=1e-6)
            assert batch.depth[b, v, 0, 0] == 0 and float(batch.depth[b, v, 5, 5]) == pytest.approx(1 + frame / 100)
    assert torch.allclose(batch.intrinsics[0, 0], torch.tensor(K_OPENCV, dtype=torch.float32) + torch.tensor(
        [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]))
    # metric depth through K and the pose: a pixel's world point seen from another view of the batch lands
    # where that view's camera projects it (the same convention end to end)
    view = ViewRecord(batch.image[0, 0], depth=batch.depth[0, 0], intrinsics=batch.intrinsics[0, 0],
                      camera_to_world=batch.camera_to_world[0, 0])
    points = view.points_world()
    cameras = view.to_cameras()
    ndc = cameras.transform_points_ndc(points.reshape(1, -1, 3))
    pixels = cameras.ndc_to_pixel(ndc[0, :, :2], (H, W)).reshape(H, W, 2)
    valid = view.depth_valid()
    assert torch.allclose(pixels[valid], pixel_centres((H, W))[valid], atol=1e-3)


def test_spann3r_sequences_as_frame_data(scannet_root):
    _, loaders = _spann3r_source(scannet_root).get_datasets_and_dataloaders()
    start_epoch(loaders.train, 3, 10)
    torch.manual_seed(0)
    batch = next(iter(loaders.train))
    assert isinstance(batch, FrameData) and batch.image_rgb.shape == (8, 3, H, W)  # 2 sequences x 4 views
    assert len(batch.camera) == 8 and batch.depth_map.shape == (8, 1, H, W)
    assert [batch.sequence_name[0]] * 4 == batch.sequence_name[:4] and [batch.sequence_name[4]] * 4 == batch.sequence_name[4:]
    R, T = batch.camera.R[0], batch.camera.T[0]
    world_to_camera = invert_pose(torch.tensor(_pose(int(batch.frame_number[0])), dtype=torch.float32))
    flip = torch.tensor([-1.0, -1.0, 1.0])  # OpenCV to pytorch3d view axes
    assert torch.allclose(R, (flip[:, None] * world_to_camera[:3, :3]).T, atol=1e-6)
    assert torch.allclose(T, flip * world_to_camera[:3, 3], atol=1e-6)


# ------------------------------------------------------------------------------------------ Symphonies


def _nyu_volume(seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 12, (60, 36, 60), dtype=np.uint8)  # stored axes (x, height, z)
    target[:, 30:] = 255  # unknown above 2.4 m
    return target, rng.integers(0, 12, (15, 9, 15), dtype=np.uint8)


@pytest.fixture()
def nyu_roots(tmp_path):
    data_root, label_root = str(tmp_path / "NYU" / "depthbin"), str(tmp_path / "NYU" / "preprocess")
    for k in range(2):
        target, coarse = _nyu_volume(k)
        rgb = np.full((480, 640, 3), 60 + 40 * k, dtype=np.uint8)
        depth = np.full((480, 640), 2.0 + k)
        pose = np.eye(4)
        pose[:3, 3] = [0.1 * k, 0.0, 0.0]
        nyu_ssc.write_sample(data_root, label_root, "train", f"NYU{k:04d}_0000", rgb, depth, pose,
                             np.array([-2.4 + 0.1 * k, -2.4, 1.0]), target, coarse)
    return data_root, label_root


def test_symphonies_nyu_samples(nyu_roots):
    data_root, label_root = nyu_roots
    source = MixtureDataSource(train=f"4 @ MethodBatchNYU(data_root='{data_root}', label_root='{label_root}')",
                               batch_size=2, num_workers=WORKERS, batch_builder_class_type="RecordBatch")
    _, loaders = source.get_datasets_and_dataloaders()
    torch.manual_seed(0)
    batches = _loader_items(loaders.train)
    assert len(batches) == 2
    for batch in batches:
        assert batch.image.shape == (2, 3, 480, 640) and batch.depth.shape == (2, 480, 640)
        voxels = batch.extras["voxels"]
        assert isinstance(voxels, VoxelRecord) and voxels.labels.shape == (2, 60, 60, 36)
        assert voxels.labels.dtype == torch.uint8 and voxels.voxel_origin.shape == (2, 3)
        assert voxels.extras["target_1_16"].labels.shape == (2, 15, 15, 9)
        for b, name in enumerate(batch.sequence):
            k = int(name[3:7])
            target, coarse = _nyu_volume(k)
            assert torch.equal(voxels.labels[b], torch.from_numpy(target.transpose(0, 2, 1).copy()))
            assert bool((voxels.labels[b][:, :, 30:] == 255).all())  # height is the last axis
            assert torch.allclose(voxels.voxel_origin[b], torch.tensor([-2.4 + 0.1 * k, -2.4, 1.0]))
            assert float(batch.depth[b, 0, 0]) == pytest.approx(2.0 + k)
            assert float(batch.camera_to_world[b, 0, 3]) == pytest.approx(0.1 * k)
    # the volume seen from its camera: MonoScene's projected pixels and field-of-view mask
    view = ViewRecord(batch.image[0], depth=batch.depth[0], intrinsics=batch.intrinsics[0],
                      camera_to_world=batch.camera_to_world[0])
    volume = VoxelRecord(voxels.labels[0], float(voxels.voxel_size[0]), voxels.voxel_origin[0])
    projection = volume.project(view)
    assert projection.pixels.shape == (60, 60, 36, 2)
    assert 0 < int(projection.in_view.sum()) < 60 * 60 * 36
