"""KITTI, NYUv2, Sintel and ETH3D readers against their writers, on tiny rendered views."""
import os

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.depth.eth3d import ETH3D, write_eth3d
from recon_trainer.data.depth.kitti import DEPTH_DIRS, KITTI, RAW_DIR, write_kitti
from recon_trainer.data.depth.nyu import NYUv2, write_nyu
from recon_trainer.data.depth.sintel import Sintel, write_sintel
from recon_trainer.data.depth.synthetic import DepthViews, render_depth_views
from recon_trainer.data.formats.sintel_dpt import DPT_HEADER, write_dpt
from recon_trainer.data.mixing.base import MixableDataset

DRIVE = "2011_09_26_drive_0002_sync"


@pytest.fixture(scope="module")
def views():
    """3 views of 24 x 32 pixels, depths about 1..10."""
    return render_depth_views(3, (24, 32), seed=1, depth_range=(1.0, 10.0))


def kitti_dataset(out: str, **kwargs) -> KITTI:
    kind = kwargs.get("depth_kind", "velodyne_raw")
    return KITTI(raw_root=os.path.join(out, RAW_DIR), depth_root=os.path.join(out, DEPTH_DIRS[kind]), **kwargs)


def check_eval_item(item, rgb, gt, valid, dataset, metric, cap):
    """image exact, depth = gt on valid (0 elsewhere), disparity = 1 / depth on valid, meta."""
    assert torch.equal(item.image_rgb, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    valid = torch.from_numpy(valid)[None]
    assert torch.equal(item.depth_mask, valid.float())
    gt = torch.from_numpy(gt.astype(np.float32))[None]
    assert torch.equal(item.depth_map, torch.where(valid, gt, torch.zeros_like(gt)))
    assert torch.allclose(item.disparity_map[valid], 1.0 / gt[valid])
    assert torch.all(item.disparity_map[~valid] == 0)
    assert item.meta == {"dataset": dataset, "eval_metric": metric, "depth_cap": cap}
    assert item.image_size_hw.tolist() == list(rgb.shape[:2])


def test_registered():
    for cls in (KITTI, NYUv2, Sintel, ETH3D):
        assert registry.get(MixableDataset, cls.__name__) is cls
    assert KITTI.PATH_FIELDS == ("raw_root", "depth_root")


def test_kitti_round_trip_sparse_quantised(tmp_path, views):
    write_kitti(str(tmp_path), views, split="val", drive=DRIVE, first_frame=5, row_step=3)
    depth_dir = tmp_path / "data_depth_velodyne" / "val" / DRIVE / "proj_depth" / "velodyne_raw" / "image_02"
    names = sorted(os.listdir(depth_dir))
    assert names == ["0000000005.png", "0000000006.png", "0000000007.png"]
    dataset = kitti_dataset(str(tmp_path))
    assert len(dataset) == 3
    quantised = (np.round(views.depth.astype(np.float64) * 256) / 256).astype(np.float32)
    for i in range(3):
        item = dataset[i]
        measured = item.depth_mask[0].numpy() > 0
        # scan lines: only every 3rd row from the top quarter on, about half of each line's points
        rows = np.nonzero(measured.any(axis=1))[0]
        assert rows.min() >= 6 and np.all((rows - 6) % 3 == 0)
        assert 0.06 < measured.mean() < 0.2
        check_eval_item(item, views.rgb[i], quantised[i], measured, "KITTI", "delta1.25", 80.0)
        assert np.abs(item.depth_map[0].numpy()[measured] - views.depth[i][measured]).max() <= 1 / 512
        assert item.sequence_name == DRIVE
        assert item.image_path.endswith(os.path.join(DRIVE, "image_02", "data", f"{5 + i:010d}.png"))


def test_kitti_splits_kinds_and_missing_folders(tmp_path, views):
    write_kitti(str(tmp_path), views, split="train", depth_kind="groundtruth", camera="image_03")
    assert len(kitti_dataset(str(tmp_path), split="train", depth_kind="groundtruth", camera="image_03")) == 3
    with pytest.raises(ConfigError, match=r"val"):  # only train/ was written
        kitti_dataset(str(tmp_path), depth_kind="groundtruth", camera="image_03")
    with pytest.raises(ConfigError, match=r"proj_depth/groundtruth/image_02"):
        kitti_dataset(str(tmp_path), split="train", depth_kind="groundtruth")
    with pytest.raises(ConfigError, match=r"bad value 'test' for 'KITTI.split'; choices: train, val"):
        kitti_dataset(str(tmp_path), split="test")
    depth_root = str(tmp_path / DEPTH_DIRS["groundtruth"])
    with pytest.raises(ConfigError, match="elsewhere.*not found"):  # the raw images are not there
        KITTI(raw_root=str(tmp_path / "elsewhere"), depth_root=depth_root, split="train", depth_kind="groundtruth",
              camera="image_03")


def test_kitti_depth_cap(tmp_path, views):
    write_kitti(str(tmp_path), views)
    item = kitti_dataset(str(tmp_path), depth_cap=4.0)[0]
    full = kitti_dataset(str(tmp_path))[0]
    expected = (full.depth_mask > 0) & (full.depth_map < 4.0)
    assert torch.equal(item.depth_mask > 0, expected)
    assert 0 < expected.sum() < (full.depth_mask > 0).sum()
    assert item.meta["depth_cap"] == 4.0


def marked_views(n: int = 3, h: int = 6, w: int = 10) -> DepthViews:
    """Random non-square views with a red top-right pixel and a 42 m bottom-left depth."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 200, size=(n, h, w, 3), dtype=np.uint8)
    rgb[:, 0, w - 1] = (255, 0, 0)
    depth = rng.uniform(1.0, 9.0, size=(n, h, w)).astype(np.float32)
    depth[:, h - 1, 0] = 42.0
    return DepthViews(rgb=rgb, depth=depth, cameras=None)


def test_nyu_file_layout_and_orientation(tmp_path):
    marked = marked_views()
    write_nyu(str(tmp_path), marked)
    mat_path = tmp_path / "nyu_depth_v2_labeled.mat"
    with open(mat_path, "rb") as handle:
        header = handle.read(128)
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
    with h5py.File(mat_path, "r") as mat:
        assert mat.userblock_size == 512
        assert mat["images"].shape == (3, 3, 10, 6) and mat["images"].dtype == np.uint8
        assert mat["depths"].shape == mat["rawDepths"].shape == (3, 10, 6)
        assert mat["images"][0, 0, 9, 0] == 255  # MATLAB (row 1, column W, red) read column-major
    splits = scipy.io.loadmat(str(tmp_path / "splits.mat"))
    assert splits["testNdxs"].tolist() == [[1.0], [3.0]] and splits["trainNdxs"].tolist() == [[2.0]]

    test = NYUv2(root=str(tmp_path), depth_key="depths")
    assert len(test) == 2 and NYUv2.depth_cap == 10.0
    for item, i in zip(test, (0, 2)):
        assert item.image_rgb[:, 0, 9].tolist() == [1.0, 0.0, 0.0]
        assert item.image_path.endswith(f"nyu_depth_v2_labeled.mat#{i + 1}")
        cap_valid = marked.depth[i] < 10.0  # the 42 m corner is beyond the cap
        assert not cap_valid[5, 0] and cap_valid.sum() == 59
        check_eval_item(item, marked.rgb[i], marked.depth[i], cap_valid, "NYUv2", "delta1.25", 10.0)
    train = NYUv2(root=str(tmp_path), split="train", depth_key="depths", depth_cap=50.0)
    assert len(train) == 1 and train[0].depth_map[0, 5, 0] == 42.0


def test_nyu_raw_depths_have_holes(tmp_path, views):
    write_nyu(str(tmp_path), views, test_indices=[1], hole_step=7)
    item = NYUv2(root=str(tmp_path))[0]  # rawDepths, image 2 (1-based)
    valid = views.depth[1].reshape(-1).copy() > 0
    valid[::7] = False
    check_eval_item(item, views.rgb[1], views.depth[1], valid.reshape(24, 32), "NYUv2", "delta1.25", 10.0)
    with pytest.raises(ConfigError, match=r"bad value 'depth' for 'NYUv2.depth_key'; did you mean 'depths'\?"):
        NYUv2(root=str(tmp_path), depth_key="depth")
    os.remove(tmp_path / "splits.mat")
    with pytest.raises(ConfigError, match="splits.mat"):
        NYUv2(root=str(tmp_path))


def test_sintel_round_trip_occlusions_and_scenes(tmp_path, views):
    write_sintel(str(tmp_path), views, scenes=("alley_1", "bamboo_2"))
    assert sorted(os.listdir(tmp_path / "depth" / "alley_1")) == ["frame_0001.dpt", "frame_0002.dpt"]
    dataset = Sintel(root=str(tmp_path))
    assert [dataset[i].sequence_name for i in range(3)] == ["alley_1", "alley_1", "bamboo_2"]
    unmasked = Sintel(root=str(tmp_path), use_occlusions=False)
    for i in range(3):
        item, plain = dataset[i], unmasked[i]
        assert torch.all(plain.depth_mask == 1)  # every depth is < 72
        check_eval_item(plain, views.rgb[i], views.depth[i], np.ones((24, 32), bool), "Sintel", "absrel", 72.0)
        occluded = (item.depth_mask[0] == 0).numpy()
        assert occluded.sum() == 6 * 8  # a quarter of each side
        check_eval_item(item, views.rgb[i], views.depth[i], ~occluded, "Sintel", "absrel", 72.0)
    assert len(Sintel(root=str(tmp_path), scenes=("bamboo_2",))) == 1
    with pytest.raises(ConfigError, match="market_5"):
        Sintel(root=str(tmp_path), scenes=("market_5",))


def test_sintel_malformed_files(tmp_path, views):
    write_sintel(str(tmp_path), views)
    dpt = tmp_path / "depth" / "alley_1" / "frame_0002.dpt"
    data = bytearray(dpt.read_bytes())
    data[:4] = np.float32(1.5).tobytes()
    dpt.write_bytes(bytes(data))
    dataset = Sintel(root=str(tmp_path))
    with pytest.raises(ValueError, match=r"frame_0002\.dpt.*tag 1\.5 found, 202021\.25 expected"):
        dataset[1]
    write_dpt(str(dpt), views.depth[1])
    dpt.write_bytes(dpt.read_bytes()[:-4])
    with pytest.raises(ValueError, match=rf"frame_0002\.dpt.*{DPT_HEADER.itemsize + 4 * 24 * 32 - 4} bytes"):
        dataset[1]
    os.rename(tmp_path / "occlusions", tmp_path / "occ")
    with pytest.raises(ConfigError, match="occlusions"):
        Sintel(root=str(tmp_path))
    assert len(Sintel(root=str(tmp_path), use_occlusions=False)) == 3


def test_eth3d_round_trip_and_invalid_depth(tmp_path, views):
    write_eth3d(str(tmp_path), views, scenes=("courtyard", "pipes"))
    depth_file = tmp_path / "pipes" / "ground_truth_depth" / "dslr_images" / "DSC_0001.JPG"
    depth = views.depth[2].copy()
    depth[0, 0], depth[0, 1] = np.inf, 0.0  # no measurement
    depth.astype("<f4").tofile(depth_file)
    dataset = ETH3D(root=str(tmp_path))
    assert len(dataset) == 3 and len(ETH3D(root=str(tmp_path), scenes=("pipes",))) == 1
    for i in range(3):
        item = dataset[i]
        assert item.sequence_name == ("courtyard" if i < 2 else "pipes")
        assert (item.image_rgb - torch.from_numpy(views.rgb[i]).permute(2, 0, 1) / 255).abs().mean() < 0.025
        valid = np.ones((24, 32), bool)
        if i == 2:
            valid[0, :2] = False
        expected = torch.from_numpy(np.where(valid, views.depth[i], 0))[None]
        assert torch.equal(item.depth_map, expected)  # float32 exact
        assert torch.equal(item.depth_mask, torch.from_numpy(valid)[None].float())
        assert item.meta == {"dataset": "ETH3D", "eval_metric": "absrel", "depth_cap": 72.0}
    depth_file.write_bytes(depth_file.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"DSC_0001\.JPG.*100 bytes, expected {4 * 24 * 32}"):
        dataset[2]
    os.remove(depth_file)
    with pytest.raises(ConfigError, match="DSC_0001.JPG.*not found"):
        ETH3D(root=str(tmp_path))


@pytest.mark.parametrize("name", ["KITTI", "NYUv2", "Sintel", "ETH3D"])
def test_training_items(tmp_path, views, name):
    out = str(tmp_path)
    if name == "KITTI":
        write_kitti(out, views)
        dataset = kitti_dataset(out, training_crop=16)
    else:
        writer = {"NYUv2": write_nyu, "Sintel": write_sintel, "ETH3D": write_eth3d}[name]
        writer(out, views)
        dataset = registry.get(MixableDataset, name)(root=out, training_crop=16)
    torch.manual_seed(0)
    item = dataset[0]
    assert item.meta == {"dataset": name} and item.depth_map is None
    assert item.image_rgb.shape == (3, 16, 16) and item.disparity_map.shape == item.depth_mask.shape == (1, 16, 16)
    valid = item.depth_mask[0] > 0
    assert valid.any() and torch.all(item.disparity_map[0][~valid] == 0)
    # nearest resampling: every valid target is 1 / one of the image's depths
    source = torch.from_numpy(1.0 / views.depth[0].astype(np.float64)).reshape(-1)
    values = item.disparity_map[0][valid].double()
    assert torch.all((values[:, None] - source[None]).abs().min(dim=1).values < 3e-3 * values)  # KITTI: 1/256 m steps
