"""The evaluation sets of Spann3R: SevenScenes, NRGBD and DTU (data/multiview/, data/formats/) on
tiny synthetic copies: values read back, the fixed intrinsics, pose conventions, DTU's mask
erosion and frame order, malformed files and the expressions of Spann3R's eval.py."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.config import ConfigError
from recon_trainer.data.formats import dtu, nrgbd, seven_scenes
from recon_trainer.data.formats.blendedmvs import read_pair_file
from recon_trainer.data.mixing import build_mixture
from recon_trainer.data.multiview import synthetic_views
from recon_trainer.data.multiview.dtu import DTU
from recon_trainer.data.multiview.nrgbd import NRGBD
from recon_trainer.data.multiview.seven_scenes import SevenScenes
from recon_trainer.data.records import intrinsics_corner_to_centre
from recon_trainer.errors import DataFileError
from tests.data.multiview_helpers import depth_agreement

FRAMES = 8
SIZE_HW = (48, 64)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_sets")
    return {"7scenes": seven_scenes.write_synthetic_copy(str(base / "7scenes"), 2, FRAMES, SIZE_HW, seed=6),
            "nrgbd": nrgbd.write_synthetic_copy(str(base / "nrgbd"), 2, FRAMES, SIZE_HW, seed=7),
            "dtu": dtu.write_synthetic_copy(str(base / "dtu"), 1, FRAMES, (72, 96), seed=8)}


# ------------------------------------------------------------------------------------ 7-Scenes


def test_fixed_intrinsics():
    k = seven_scenes.fixed_intrinsics(seven_scenes.INTRINSICS, (480, 640), (480, 640))
    assert torch.allclose(intrinsics_corner_to_centre(k), torch.tensor([[525.0, 0, 320], [0, 525, 240], [0, 0, 1]]))
    small = seven_scenes.fixed_intrinsics(seven_scenes.INTRINSICS, (480, 640), (48, 64))
    assert torch.allclose(small, torch.tensor([[52.5, 0, 32.05], [0, 52.5, 24.05], [0, 0, 1]]))


def test_seven_scenes_values(roots):
    root = roots["7scenes"]
    assert seven_scenes.read_split(root, "chess", "test") == ["seq-02"]
    with open(os.path.join(root, "chess", "TrainSplit.txt")) as file:
        assert file.read().split() == ["sequence1"]
    k = seven_scenes.fixed_intrinsics(seven_scenes.INTRINSICS, (480, 640), SIZE_HW)
    views = synthetic_views.render_room_walk(FRAMES, SIZE_HW, 6, 2, intrinsics=k.double().numpy())
    view = seven_scenes.read_frame(root, "chess/seq-02", 3)
    assert torch.allclose(view.depth, torch.from_numpy(views.depth[3]), atol=5e-4)  # millimetres
    assert torch.equal(view.intrinsics, k)
    assert torch.allclose(view.camera_to_world.double(), torch.from_numpy(views.camera_to_world[3]), atol=1e-6)
    assert np.array_equal(view.image.permute(1, 2, 0).numpy() * 255, views.rgb[3])  # PNG: lossless
    # 65535 and out-of-range millimetres read as unknown
    paths = seven_scenes.frame_paths(root, "chess/seq-02", 3)
    depth = np.full(SIZE_HW, 2500, dtype=np.uint16)
    depth[0, :3] = [65535, 10001, 0]
    Image.fromarray(depth).save(paths["depth"])
    read = seven_scenes.read_frame(root, "chess/seq-02", 3).depth
    assert read[0, :4].tolist() == [0.0, 0.0, 0.0, 2.5]


def test_seven_scenes_dataset(roots):
    root = roots["7scenes"]
    test = SevenScenes(split="test", ROOT=root, resolution=(32, 24), full_video=True, kf_every=2)
    assert [s.name for s in test.sequences] == ["chess/seq-02"] and len(test) == 1
    item = test[0]
    assert [int(v.frame) for v in item.views] == [0, 2, 4, 6]
    assert all(v.image.shape == (3, 24, 32) for v in item.views)
    assert depth_agreement(item.views[0], item.views[1]) < 0.05
    train = SevenScenes(split="train", ROOT=root, resolution=(32, 24), num_views=3, min_thresh=1, max_thresh=2,
                        seq_id="seq-01")
    assert [s.name for s in train.sequences] == ["chess/seq-01"]
    frames = [int(v.frame) for v in train[(0, 1, 0)].views]
    assert len(frames) == 3 and all(0 < abs(a - b) <= 2 for a, b in zip(frames, frames[1:]))
    assert [s.name for s in SevenScenes(split="test", ROOT=root, test_id="chess", full_video=True).sequences] == [
        "chess/seq-02"]
    with pytest.raises(DataFileError, match="office/TestSplit.txt"):
        SevenScenes(split="test", ROOT=root, test_id="office")
    with pytest.raises(ConfigError, match="split='val'"):
        SevenScenes(split="val", ROOT=root)


# ------------------------------------------------------------------------------------ NRGBD


def test_nrgbd_values_and_pose_convention(roots, tmp_path):
    root = roots["nrgbd"]
    k = seven_scenes.fixed_intrinsics(nrgbd.INTRINSICS, (480, 640), SIZE_HW)
    views = synthetic_views.render_room_walk(FRAMES, SIZE_HW, 7, 1, intrinsics=k.double().numpy())
    view = nrgbd.read_frame(root, "scene_1", 5)
    assert torch.allclose(view.depth, torch.from_numpy(views.depth[5]), atol=5e-4)
    assert torch.equal(view.intrinsics, k) and view.extras == {"pose_valid": True}
    assert torch.allclose(view.camera_to_world.double(), torch.from_numpy(views.camera_to_world[5]), atol=1e-6)
    # the file holds OpenGL axes: its y and z columns are the negated OpenCV ones
    with open(nrgbd.poses_path(root, "scene_1")) as file:
        stored = np.array([[float(x) for x in line.split()] for line in file.read().splitlines()[20:24]])
    assert np.allclose(stored[:, 1:3], -views.camera_to_world[5][:, 1:3], atol=1e-6)
    # an invalid pose reads as the identity in OpenGL axes, flagged
    scene = str(tmp_path / "nrgbd")
    nrgbd.write_scene(scene, "room", views.rgb[:3], views.depth[:3], views.camera_to_world[:3], invalid_poses=(1,))
    poses, valid = nrgbd.read_poses(nrgbd.poses_path(scene, "room"))
    assert valid.tolist() == [True, False, True] and np.array_equal(poses[1], np.diag([1.0, -1, -1, 1]))
    assert nrgbd.read_frame(scene, "room", 1).extras == {"pose_valid": False}


def test_nrgbd_dataset_and_errors(roots, tmp_path):
    root = roots["nrgbd"]
    dataset = NRGBD(split="test", ROOT=root, resolution=(32, 24), full_video=True, kf_every=3)
    assert [s.name for s in dataset.sequences] == ["scene_0", "scene_1"]
    item = dataset[1]
    assert [int(v.frame) for v in item.views] == [0, 3, 6] and item.sequence == "scene_1"
    assert depth_agreement(item.views[0], item.views[1]) < 0.05
    only = NRGBD(split="test", ROOT=root, test_id="scene_1", full_video=True)
    assert [s.name for s in only.sequences] == ["scene_1"]
    bad = tmp_path / "bad" / "room"
    (bad / "images").mkdir(parents=True)
    (bad / "poses.txt").write_text("1 0 0\n0 1 0\n0 0 1\n0 0 0\n")
    with pytest.raises(DataFileError, match="poses.txt"):
        nrgbd.read_poses(str(bad / "poses.txt"))


# ------------------------------------------------------------------------------------ DTU


def test_dtu_mask_erosion_and_resize_follow_opencv():
    mask = np.ones((16, 16), dtype=np.float32)
    mask[8, 8] = 0.0
    eroded = dtu.erode_mask(mask)
    rows, cols = np.nonzero(eroded == 0)  # OpenCV's 10x10 window spans offsets -5..4: the hole grows to 4..13
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 13, 4, 13)
    assert dtu.erode_mask(np.ones((6, 6), dtype=np.float32)).all()  # the image border does not erode
    grid = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(dtu.resize_nearest(grid, (6, 8)), np.repeat(np.repeat(grid, 2, 0), 2, 1))
    assert np.array_equal(dtu.resize_nearest(grid, (2, 3)), grid[[0, 1]][:, [0, 1, 2]])


def test_dtu_values(roots):
    root = roots["dtu"]
    views = synthetic_views.render_object_orbit(FRAMES, (72, 96), 8, 0, **synthetic_views.DTU_ORBIT)
    names = dtu.list_images(root, "scan1")
    assert names == [f"{k:08d}.jpg" for k in range(FRAMES)]
    view = dtu.read_frame(root, "scan1", names[2])
    eroded = dtu.erode_mask(views.object_mask[2].astype(np.float32)) > 0
    assert torch.equal(view.mask_fg, torch.from_numpy(eroded)) and eroded.sum() > 50
    expected = views.depth[2] * eroded
    assert torch.allclose(view.depth, torch.from_numpy(expected), rtol=1e-6)
    assert view.depth.max() > 100  # millimetres
    assert torch.allclose(view.camera_to_world.double(), torch.from_numpy(views.camera_to_world[2]), atol=1e-3)
    assert torch.allclose(view.intrinsics.double(), torch.from_numpy(views.intrinsics), atol=1e-6)
    assert view.frame == 2 and view.sequence == "scan1"


def test_dtu_dataset_orders(roots):
    root = roots["dtu"]
    video = DTU(split="test", ROOT=root, resolution=(32, 24), full_video=True, kf_every=3)
    item = video[0]
    assert [int(v.frame) for v in item.views] == [6, 3, 0]  # the original pops from the end
    every = DTU(split="test", ROOT=root, resolution=(48, 36), full_video=True)[0].views
    assert depth_agreement(every[4], every[5]) < 0.05
    pairs = DTU(split="test", ROOT=root, resolution=(32, 24), num_views=3)
    assert len(pairs) == 49
    clusters = dict(read_pair_file(dtu.pair_path(root, "scan1")))
    for index in (0, 11):
        frames = [int(v.frame) for v in pairs[(index, 0, index)].views]
        assert frames[1:] == [n for n, _ in clusters[frames[0]][:2]]


def test_dtu_malformed_files(roots, tmp_path):
    scan = tmp_path / "dtu" / "scan9"
    for folder in ("images", "depths", "binary_masks", "cams"):
        (scan / folder).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(str(scan / "images" / "00000000.jpg"))
    np.save(str(scan / "depths" / "00000000.npy"), np.zeros((8, 8, 2), dtype=np.float32))
    with pytest.raises(DataFileError, match="00000000.npy"):
        dtu.read_frame(str(tmp_path / "dtu"), "scan9", "00000000.jpg")
    np.save(str(scan / "depths" / "00000000.npy"), np.zeros((8, 8), dtype=np.float32))
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(str(scan / "binary_masks" / "00000000.png"))
    with pytest.raises(DataFileError, match="binary_masks/00000000.png.*single-channel"):
        dtu.read_frame(str(tmp_path / "dtu"), "scan9", "00000000.jpg")


# ------------------------------------------------------------------------------------ eval.py


@pytest.mark.parametrize("text, key, kf_every", [
    ("SevenScenes(split='test', ROOT='7scenes', resolution=224, num_seq=1, full_video=True, kf_every=20)",
     "7scenes", 20),
    ("NRGBD(split='test', ROOT='nrgbd', resolution=224, num_seq=1, full_video=True, kf_every=40)", "nrgbd", 40),
    ("DTU(split='test', ROOT='dtu', resolution=224, num_seq=1, full_video=True, kf_every=5)", "dtu", 5),
])
def test_eval_expressions_compose(roots, text, key, kf_every):
    """Spann3R's eval.py datasets, as mixing expressions."""
    mixture = build_mixture(text, data_root=os.path.dirname(roots[key]))
    leaf = mixture.children[0]
    assert (leaf.items_per_sequence, leaf.full_video, leaf.kf_every) == (1, True, kf_every)
    item = mixture[(0, 0)]
    assert len(item) == len(range(0, FRAMES, kf_every))
    assert all(v.image.shape == (3, 224, 224) for v in item.views)
