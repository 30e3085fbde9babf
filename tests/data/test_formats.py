"""Format modules: MoGe's log-encoded depth PNG and instances, ScanNet (SimpleRecon layout), the
NYU SSC pkl through the restricted unpickler."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from recon_trainer.data.formats import moge, nyu_ssc, scannet
from recon_trainer.data.records import intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError


def _depth(seed=0, shape=(12, 16), low=0.5, high=40.0):
    rng = np.random.default_rng(seed)
    depth = np.exp(rng.uniform(np.log(low), np.log(high), shape)).astype(np.float32)
    depth[:2] = np.inf  # sky
    depth[5, 3:7] = np.nan  # unknown
    return depth


def test_moge_depth_round_trip(tmp_path):
    depth = _depth()
    path = str(tmp_path / "depth.png")
    moge.write_depth(path, depth)
    with Image.open(path) as image:
        assert image.text["near"] == str(float(np.nanmin(depth[np.isfinite(depth)])))
        codes = np.array(image)
    assert codes.dtype == np.uint16 and (codes[:2] == 65535).all() and (codes[5, 3:7] == 0).all()
    assert codes[np.isfinite(depth)].min() == 1 and codes[np.isfinite(depth)].max() == 65534
    back = moge.read_depth(path)
    assert back.dtype == np.float32 and np.isposinf(back[:2]).all() and np.isnan(back[5, 3:7]).all()
    finite = np.isfinite(depth)
    relative = np.abs(back[finite] / depth[finite] - 1)
    far_near = depth[finite].max() / depth[finite].min()
    assert relative.max() <= 0.5 * (far_near ** (1 / 65533) - 1) + 1e-6  # half a code step


def test_moge_depth_range_is_capped_and_legacy_unit(tmp_path):
    depth = np.array([[1e-3, 1.0], [1e4, 5.0]], dtype=np.float32)
    path = str(tmp_path / "d.png")
    moge.write_depth(path, depth, max_range=100.0)
    back = moge.read_depth(path)
    assert back[0, 0] == pytest.approx(1e-3, rel=1e-4) and back[1, 0] == pytest.approx(0.1, rel=1e-4)  # clipped to far
    info = PngImagePlugin.PngInfo()
    for key, value in (("near", "1.0"), ("far", "10.0"), ("unit", "0.001")):
        info.add_text(key, value)
    Image.fromarray(np.array([[1, 65534]], dtype=np.uint16)).save(path, pnginfo=info)
    assert moge.read_depth(path)[0].tolist() == pytest.approx([0.001, 0.01])


def test_moge_bad_files(tmp_path):
    path = str(tmp_path / "plain.png")
    Image.fromarray(np.zeros((2, 2), dtype=np.uint16)).save(path)
    with pytest.raises(DataFileError, match=r"plain.png: the depth PNG has no numeric 'near' and 'far' text fields"):
        moge.read_depth(path)
    with pytest.raises(DataFileError, match=r"missing.png: cannot read the depth PNG"):
        moge.read_depth(str(tmp_path / "missing.png"))
    meta = tmp_path / "meta.json"
    meta.write_text('{"intrinsics": [1, 2]}')
    with pytest.raises(DataFileError, match=r"meta.json: expected \{\"intrinsics\": 3x3 normalised\}"):
        moge.read_meta(str(meta))


def test_moge_instance_and_index(tmp_path):
    root = tmp_path / "dataset"
    rows, cols = np.meshgrid(np.arange(12), np.arange(16), indexing="ij")
    rgb = np.stack([rows * 20, cols * 15, np.full_like(rows, 128)], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it
    normalised = np.array([[0.9, 0, 0.5], [0, 1.2, 0.45], [0, 0, 1]])
    instances = [str(root / "scene" / f"{k:03d}") for k in range(2)]
    for instance in instances:
        moge.write_instance(instance, rgb, _depth(), normalised)
    moge.write_index(str(root), instances)
    assert (root / ".index.txt").read_text() == "scene/000\nscene/001\n"
    listed = moge.read_index(str(root))
    assert listed == instances
    view = moge.read_instance(listed[1], depth_kind="relative", label_type="synthetic", dataset="toy")
    assert view.image.shape == (3, 12, 16) and view.depth_kind == "relative" and view.label_type == "synthetic"
    assert torch.allclose(view.intrinsics, torch.tensor([[0.9 * 16, 0, 8.0], [0, 1.2 * 12, 0.45 * 12], [0, 0, 1]]))
    assert torch.allclose(view.normalized_intrinsics().double(), torch.from_numpy(normalised))
    assert bool(view.depth_infinite()[:2].all()) and int(view.depth_valid().sum()) == 12 * 16 - 32 - 4
    assert float((view.image * 255 - torch.from_numpy(rgb).permute(2, 0, 1)).abs().mean()) < 8  # JPEG q95


def test_scannet_frame_round_trip(tmp_path):
    root = str(tmp_path)
    K = np.array([[30.0, 0, 7.5], [0, 30.0, 5.5], [0, 0, 1]])
    scannet.write_scene(root, "train", "scene0000_00", K)
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    depth = np.full((12, 16), 2.5)
    depth[0, 0] = 0.0
    scannet.write_frame(root, "train", "scene0000_00", 7, np.zeros((24, 32, 3), np.uint8), depth, pose)
    assert scannet.read_split(root, "train") == ["scene0000_00"]
    assert scannet.list_frames(root, "train", "scene0000_00") == [7]
    view = scannet.read_frame(root, "train", "scene0000_00", 7)
    assert view.image.shape == (3, 12, 16)  # resized to the depth map's size
    assert view.depth[0, 0] == 0 and torch.allclose(view.depth[1:], torch.tensor(2.5))
    assert not bool(view.depth_valid()[0, 0]) and view.frame == 7 and view.sequence == "scene0000_00"
    assert torch.allclose(view.intrinsics, intrinsics_centre_to_corner(torch.tensor(K, dtype=torch.float32)))
    assert torch.equal(view.camera_to_world, torch.tensor(pose, dtype=torch.float32))
    with pytest.raises(DataFileError, match=r"scannetv2_val.txt: cannot read the ScanNet split list"):
        scannet.read_split(root, "val")


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_reads_arrays_and_refuses_code(tmp_path):
    safe = tmp_path / "safe.pkl"
    content = {"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "s": np.float32(1.5), "name": "x", "t": (1, [2.0])}
    for protocol in (2, 4, 5):
        safe.write_bytes(pickle.dumps(content, protocol=protocol))
        loaded = nyu_ssc.read_pkl(str(safe))
        assert np.array_equal(loaded["a"], content["a"]) and loaded["s"] == 1.5 and loaded["t"] == (1, [2.0])
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"cam_pose": _Boom()}))
    with pytest.raises(DataFileError, match=r"evil.pkl: cannot read the pickle: refusing to load \w+\.system: only numpy arrays"):
        nyu_ssc.read_pkl(str(evil))


def test_nyu_sample_round_trip(tmp_path):
    data_root, label_root = str(tmp_path / "depthbin"), str(tmp_path / "labels")
    target = np.random.default_rng(0).integers(0, 12, (60, 36, 60), dtype=np.uint8)
    target[0] = 255
    coarse = np.random.default_rng(1).integers(0, 12, (15, 9, 15), dtype=np.uint8)
    pose = np.eye(4, dtype=np.float32)
    pose[:3, 3] = [0.5, 1.0, 1.5]
    origin = np.array([-1.0, 0.2, -0.1], dtype=np.float32)
    nyu_ssc.write_sample(data_root, label_root, "train", "NYU0003_0000", np.zeros((48, 64, 3), np.uint8),
                         np.full((48, 64), 2.0), pose, origin, target, coarse)
    assert nyu_ssc.list_samples(label_root, "train") == ["NYU0003_0000"]
    view = nyu_ssc.read_sample(data_root, label_root, "train", "NYU0003_0000")
    voxels = view.extras["voxels"]
    assert voxels.grid_shape == (60, 60, 36) and voxels.voxel_size == nyu_ssc.VOXEL_SIZE_1_4
    assert torch.equal(voxels.labels, torch.from_numpy(target.transpose(0, 2, 1).copy()))
    assert torch.equal(voxels.voxel_origin, torch.from_numpy(origin))
    assert voxels.extras["target_1_16"].grid_shape == (15, 15, 9)
    assert torch.equal(view.camera_to_world, torch.from_numpy(pose)) and view.sequence == "NYU0003_0000"
    assert torch.allclose(view.depth, torch.tensor(2.0)) and view.intrinsics[0, 2] == pytest.approx(320.5)
