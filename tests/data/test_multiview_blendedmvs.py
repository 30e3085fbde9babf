"""BlendMVS (data/multiview/blendedmvs.py) on a tiny synthetic copy of BlendedMVS's raw layout, and
the MVSNet files it shares with DTU (PFM, camera text, pair.txt) in data/formats/blendedmvs.py."""
import os

import numpy as np
import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.formats import blendedmvs
from recon_trainer.data.mixing import build_mixture
from recon_trainer.data.multiview import synthetic_views
from recon_trainer.data.multiview.blendedmvs import BlendMVS
from recon_trainer.errors import DataFileError
from tests.data.multiview_helpers import depth_agreement

FRAMES = 10
SIZE_HW = (48, 64)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two scenes per split (train, val), FRAMES views each."""
    return blendedmvs.write_synthetic_copy(str(tmp_path_factory.mktemp("bmvs") / "blendedmvs"), 2, FRAMES,
                                                 SIZE_HW, seed=3)


def test_pfm_round_trip_and_byte_order(tmp_path):
    path = str(tmp_path / "d.pfm")
    gray = np.arange(12, dtype=np.float32).reshape(3, 4) - 2.5
    blendedmvs.write_pfm(path, gray)
    with open(path, "rb") as file:
        assert file.read().startswith(b"Pf\n4 3\n-1\n")
    assert np.array_equal(blendedmvs.read_pfm(path), gray)
    colour = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    blendedmvs.write_pfm(path, colour)
    assert np.array_equal(blendedmvs.read_pfm(path), colour)
    with open(path, "wb") as file:  # big endian (positive scale), rows stored bottom to top
        file.write(b"Pf\n2 2\n1.0\n" + np.array([[3, 4], [1, 2]], dtype=">f4").tobytes())
    assert np.array_equal(blendedmvs.read_pfm(path), [[1, 2], [3, 4]])
    with open(path, "wb") as file:
        file.write(b"Pf\n4 3\n-1\n" + gray.tobytes()[:20])
    with pytest.raises(DataFileError, match="d.pfm.*needs 48 bytes"):
        blendedmvs.read_pfm(path)


def test_mvsnet_camera_and_pair_files(tmp_path):
    path = str(tmp_path / "00000003_cam.txt")
    k = np.array([[500.0, 0, 320.5], [0, 501.0, 240.25], [0, 0, 1]])
    w2c = np.eye(4)
    w2c[:3, 3] = [0.5, -1.0, 2.0]
    blendedmvs.write_mvsnet_cam(path, k, w2c, (0.5, 0.01, 192, 2.42))
    camera = blendedmvs.read_mvsnet_cam(path)
    assert np.allclose(camera.intrinsics, k) and np.allclose(camera.world_to_camera, w2c)
    assert camera.depth_range == (0.5, 0.01, 192, 2.42)
    with open(path, "w") as file:
        file.write("extrinsic\n1 0 0 0\n0 1 0 0\n")
    with pytest.raises(DataFileError, match="00000003_cam.txt"):
        blendedmvs.read_mvsnet_cam(path)
    pairs = str(tmp_path / "pair.txt")
    clusters = [(0, [(1, 2.5), (2, 1.0)]), (1, [(0, 2.5)]), (2, [])]
    blendedmvs.write_pair_file(pairs, clusters)
    assert blendedmvs.read_pair_file(pairs) == clusters
    with open(pairs, "w") as file:
        file.write("2\n0\n3 1 2.5\n")
    with pytest.raises(DataFileError, match="pair.txt"):
        blendedmvs.read_pair_file(pairs)


def test_views_read_back_as_rendered(root):
    views = synthetic_views.render_room_walk(FRAMES, SIZE_HW, 3, 0)
    scene = blendedmvs.read_scene_list(root, "train")[0]
    assert blendedmvs.list_views(root, scene) == list(range(FRAMES))
    os.symlink(blendedmvs.view_paths(root, scene, 0)["image"],  # BlendedMVS's masked images are not views
               os.path.join(root, scene, "blended_images", "00000000_masked.jpg"))
    assert blendedmvs.list_views(root, scene) == list(range(FRAMES))
    for index in (0, 7):
        view = blendedmvs.read_view(root, scene, index)
        assert torch.equal(view.depth, torch.from_numpy(views.depth[index]))  # PFM keeps float32 exactly
        assert torch.allclose(view.intrinsics.double(), torch.from_numpy(views.intrinsics), atol=1e-6)
        assert torch.allclose(view.camera_to_world.double(), torch.from_numpy(views.camera_to_world[index]),
                              atol=1e-5)
        assert view.sequence == scene and view.frame == index
    clusters = blendedmvs.read_pair_file(blendedmvs.pair_path(root, scene))
    assert [c[0] for c in clusters] == list(range(FRAMES)) and all(len(c[1]) == FRAMES - 1 for c in clusters)
    assert clusters[3][1][0][0] in (2, 4)  # the nearest camera on the path


def test_items_are_pair_clusters(root, tmp_path):
    dataset = BlendMVS(split="train", ROOT=root, resolution=(32, 24), num_views=4, aug_crop=3)
    assert len(dataset) == 2 * 100
    for index in range(0, 200, 37):
        item = dataset[(index, 1, index)]
        assert len({int(v.frame) for v in item.views}) == 4
        assert all(v.image.shape == (3, 24, 32) for v in item.views)
        assert depth_agreement(item.views[0], item.views[1]) < 0.05
    # two clusters only: the reference comes first, or last when the draw is reversed
    small = blendedmvs.write_synthetic_copy(str(tmp_path / "bmvs"), 1, 8, (24, 32), seed=5)
    scene = blendedmvs.read_scene_list(small, "train")[0]
    clusters = [(0, [(1, 3.0), (2, 2.0), (3, 1.0), (4, 0.5)]), (7, [(6, 3.0), (5, 2.0), (4, 1.0)])]
    blendedmvs.write_pair_file(blendedmvs.pair_path(small, scene), clusters)
    dataset = BlendMVS(split="train", ROOT=small, resolution=(32, 24), num_views=4)
    orders = set()
    for index in range(20):
        frames = [int(v.frame) for v in dataset[(index, 0, index)].views]
        assert frames[0] == 0 or frames[-1] == 0, frames  # cluster 7 has too few neighbours for 4 views
        assert set(frames) - {0} <= {1, 2, 3, 4} and len(set(frames)) == 4
        orders.add(frames[0] == 0)
    assert orders == {True, False}


def test_off_centre_views_are_redrawn(tmp_path):
    root = blendedmvs.write_synthetic_copy(str(tmp_path / "bmvs"), 1, 6, (24, 32), seed=4)
    scene = blendedmvs.read_scene_list(root, "train")[0]
    path = blendedmvs.view_paths(root, scene, 2)["cam"]
    camera = blendedmvs.read_mvsnet_cam(path)
    k = camera.intrinsics.copy()
    k[0, 2] = 5.0  # the principal point within a fifth of the width from the border
    blendedmvs.write_mvsnet_cam(path, k, camera.world_to_camera)
    dataset = BlendMVS(split="train", ROOT=root, resolution=(32, 24), num_views=3)
    assert all(2 not in [int(v.frame) for v in dataset[(i, 0, i)].views] for i in range(30))
    video = BlendMVS(split="train", ROOT=root, resolution=(32, 24), full_video=True, kf_every=1)
    assert [int(v.frame) for v in video[0].views] == [0, 1, 3, 4, 5]


def test_layout_errors_name_the_file(root, tmp_path):
    with pytest.raises(DataFileError, match="test_list.txt"):
        BlendMVS(split="test", ROOT=root)
    dust3r = tmp_path / "processed"
    dust3r.mkdir()
    np.save(str(dust3r / "blendedmvs_pairs.npy"), np.zeros(2))
    with pytest.raises(ConfigError, match="DUSt3R's preprocessed BlendedMVS"):
        BlendMVS(split="train", ROOT=str(dust3r))


@pytest.mark.parametrize("text, label", [
    ("10000 @ BlendMVS(split='train', ROOT='blendedmvs', resolution=224)", "BlendMVS"),  # Spann3R's training term
    ("1_000 @ BlendedMVS(split='val', ROOT='blendedmvs', resolution=224, seed=777, num_frames=2)", "BlendedMVS"),
])
def test_original_expressions_compose(root, text, label):
    mixture = build_mixture(text, data_root=os.path.dirname(root))
    assert mixture.labels() == [label]
    item = mixture[(9, 2)]
    assert len(item) == (2 if "num_frames=2" in text else 5)
    assert all(v.image.shape == (3, 224, 224) and v.depth_valid().any() for v in item.views)
