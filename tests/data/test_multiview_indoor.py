"""ScanNet, ScanNet++, ARKitScenes and Habitat in Spann3R's / DUSt3R's layouts: tiny rendered copies
written by the format modules, read back by the registered datasets (values, pose conventions, errors
naming the file, the originals' expressions)."""
import os

import numpy as np
import pytest
import torch

from recon_trainer.data.formats import arkitscenes as arkit_format
from recon_trainer.data.formats import habitat as habitat_format
from recon_trainer.data.formats import scannet as scannet_format
from recon_trainer.data.formats import scannetpp as scannetpp_format
from recon_trainer.data.mixing import build_mixture
from recon_trainer.data.multiview.arkitscenes import ArkitScene
from recon_trainer.data.multiview.habitat import Habitat
from recon_trainer.data.multiview.scannet import Scannet
from recon_trainer.data.multiview.scannetpp import Scannetpp
from recon_trainer.data.multiview.synthetic_views import render_room_walk
from recon_trainer.data.records import ViewRecord, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

N_FRAMES = 6
SIZE_HW = (48, 64)


@pytest.fixture(scope="module")
def truth():
    """One rendered walk: rgb, depth (metres), K (OpenCV), camera_to_world."""
    walk = render_room_walk(N_FRAMES, SIZE_HW, seed=5)
    return walk.rgb, walk.depth, walk.intrinsics_opencv(), walk.camera_to_world


@pytest.fixture(scope="module")
def roots(tmp_path_factory, truth):
    """Every layout written from `truth` by the format writers; ScanNet also through write_synthetic_copy."""
    rgb, depth, k, poses = truth
    out = tmp_path_factory.mktemp("multiview")
    roots = {name: str(out / name) for name in ("scannet", "scannetpp", "arkit", "habitat", "scannet_copy")}
    scannet_format.write_scene(roots["scannet"], "train", "scene0000_00", k)
    for frame in range(N_FRAMES):
        scannet_format.write_frame(roots["scannet"], "train", "scene0000_00", frame, rgb[frame], depth[frame],
                                   poses[frame])
    names = [f"DSC{i:05d}.JPG" for i in range(N_FRAMES)]
    scannetpp_format.write_scene(roots["scannetpp"], "train", "0a5c013435", names, rgb, depth, k, poses)
    times = [6845.0 + 0.1 * i for i in range(N_FRAMES)]
    arkit_format.write_scene(roots["arkit"], "train", "41069021", times, rgb, depth, k, poses)
    habitat_format.write_set(roots["habitat"], "data/sceneA/00000000", rgb[:5], depth[:5], k, poses[:5])
    habitat_format.write_set(roots["habitat"], "data/sceneA/00000300", rgb[1:], depth[1:], k, poses[1:])
    with open(os.path.join(roots["habitat"], "Habitat_1_scenes_train.txt"), "w") as file:
        file.write("data/sceneA/00000300\n")
    scannet_format.write_synthetic_copy(roots["scannet_copy"], n_scenes=1, n_frames=5, seed=1)
    return roots


def _datasets(roots, **kwargs):
    return {
        "scannet": Scannet(ROOT=roots["scannet"], **kwargs),
        "scannetpp": Scannetpp(ROOT=roots["scannetpp"], **kwargs),
        "arkit": ArkitScene(ROOT=roots["arkit"], **kwargs),
        "habitat": Habitat(ROOT=roots["habitat"], **kwargs),
    }


def _raw_views(dataset):
    """Every frame of the first sequence, uncropped."""
    sequence = dataset.sequences[0]
    return [dataset.read_view(sequence, frame) for frame in sequence.frames]


@pytest.mark.parametrize("name", ["scannet", "scannetpp", "arkit", "habitat"])
def test_frames_read_back_as_written(roots, truth, name):
    rgb, depth, k, poses = truth
    dataset = _datasets(roots, num_views=2)[name]
    views = _raw_views(dataset)
    assert len(views) == (5 if name == "habitat" else N_FRAMES)
    tolerance = 2e-3 if name == "habitat" else 5e-4  # half-float EXR, else millimetres
    for i, view in enumerate(views):
        assert view.image_size_hw == SIZE_HW and view.depth_kind == "metric"
        assert torch.allclose(view.depth, torch.from_numpy(depth[i]), rtol=tolerance, atol=5e-4)
        assert (view.image - torch.from_numpy(rgb[i]).permute(2, 0, 1) / 255.0).abs().mean() < 0.03
        assert torch.allclose(view.intrinsics, intrinsics_centre_to_corner(torch.tensor(k, dtype=torch.float32)))
        assert torch.allclose(view.camera_to_world, torch.tensor(poses[i], dtype=torch.float32), atol=1e-5)


def _agreement(a: ViewRecord, b: ViewRecord):
    """(fraction of a's points seen by b whose depth b agrees with (5 %), how many b sees)."""
    projection = b.project(a.points_world()[a.depth_valid()])
    pixels = projection.pixels[projection.in_view].long()
    seen = b.depth[pixels[:, 1], pixels[:, 0]]
    agree = ((seen - projection.depth[projection.in_view]).abs() < 0.05 * seen).float()
    return float(agree.mean()) if len(agree) else 0.0, len(agree)


@pytest.mark.parametrize("name", ["scannet", "scannetpp", "arkit", "habitat"])
def test_items_are_cropped_views_that_agree_in_3d(roots, name):
    dataset = _datasets(roots, num_views=3, resolution=(32, 24), min_thresh=1, max_thresh=2, aug_crop=4)[name]
    for draw in range(3):
        item = dataset[(0, 1, draw)]
        assert len(item) == 3 and item.dataset == type(dataset).__name__
        for a in item.views:
            assert a.image_size_hw == (24, 32)
            for b in item.views:
                fraction, count = _agreement(a, b)
                assert count > 100 and fraction > 0.75, (a.frame, b.frame, fraction, count)  # occlusions


def test_synthetic_copy_and_splits(roots):
    copy = {split: Scannet(ROOT=roots["scannet_copy"], split=split, num_views=3, resolution=32, items_per_sequence=2)
            for split in ("train", "val")}
    assert [s.name for s in copy["train"].sequences] == ["scene0000_00"] and len(copy["train"]) == 2
    assert [s.name for s in copy["val"].sequences] == ["scene0001_00"]
    assert copy["val"][0].views[0].image_size_hw == (32, 32)
    only = Scannet(ROOT=roots["scannet_copy"], split="val", test_id=["scene0000_00"], resolution=32, num_views=3)
    assert [s.name for s in only.sequences] == ["scene0000_00"]  # test_id replaces the split list


def test_scannet_frame_without_pose_is_redrawn(roots, tmp_path, truth):
    rgb, depth, k, poses = truth
    root = str(tmp_path)
    scannet_format.write_scene(root, "test", "scene0707_00", k)
    for frame in range(N_FRAMES):
        pose = np.full((4, 4), -np.inf) if frame == 2 else poses[frame]
        scannet_format.write_frame(root, "test", "scene0707_00", frame, rgb[frame], depth[frame], pose)
    assert os.path.isdir(os.path.join(root, "scans_test", "scene0707_00"))
    dataset = Scannet(ROOT=root, split="test", num_views=2, min_thresh=1, max_thresh=1, resolution=32)
    assert all(2 not in {v.frame for v in dataset[(0, 0, draw)].views} for draw in range(8))
    video = Scannet(ROOT=root, split="test", full_video=True, kf_every=1, resolution=32)
    assert [v.frame for v in video[0].views] == [0, 1, 3, 4, 5]


def test_arkit_conventions(roots, tmp_path):
    dataset = ArkitScene(ROOT=roots["arkit"], num_views=2, resolution=32)
    sequence = dataset.sequences[0]
    assert sequence.frames[:2] == ((0, "6845.000"), (1, "6845.100"))  # frame 1's .pincam is at 6845.101
    poses = arkit_format.read_trajectory(arkit_format.scene_paths(roots["arkit"], "train", "41069021")["traj"])
    assert arkit_format.pose_at(poses, "6845.150") is poses["6845.100"] or arkit_format.pose_at(
        poses, "6845.150") is poses["6845.200"]
    assert arkit_format.pose_at(poses, "6846.000") is None  # beyond 0.1 s: no pose
    rotation = arkit_format.axis_angle_to_matrix(np.array([0.3, -1.2, 2.0]))
    assert np.allclose(arkit_format.matrix_to_axis_angle(rotation), [0.3, -1.2, 2.0])
    assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)


def test_habitat_sets_and_dust3r_list(roots):
    spann3r = Habitat(ROOT=roots["habitat"], num_views=3, resolution=32)
    assert [s.name for s in spann3r.sequences] == ["data/sceneA/00000000"]  # set 300 is beyond sets_per_scene=200
    everything = Habitat(ROOT=roots["habitat"], sets_per_scene=None, num_views=5, resolution=32)
    assert len(everything) == 2
    for draw in range(6):
        frames = [v.frame for v in spann3r[(0, 0, draw)].views]
        assert 1 in frames and len(set(frames)) == 3
    assert sorted(v.frame for v in everything[(0, 3, 0)].views) == [1, 2, 3, 4, 5]
    dust3r = Habitat(size=1, ROOT=roots["habitat"], num_views=2, resolution=32)
    assert [s.name for s in dust3r.sequences] == ["data/sceneA/00000300"] and dust3r.size == 1


@pytest.mark.parametrize("name, relative, corrupt, message", [
    ("scannet", "scans/scene0000_00/sensor_data/frame-000001.pose.txt", "1 2 3\n", "expected a 4x4 matrix"),
    ("scannetpp", "data/0a5c013435/dslr/nerfstudio/transforms_undistorted.json", '{"fl_x": 1}',
     "expected fl_x, fl_y, cx, cy"),
    ("arkit", "raw/Training/41069021/lowres_wide.traj", "1 2 3\n", r"line 1: expected 'ts rx ry rz tx ty tz'"),
    ("habitat", "data/sceneA/00000000_2_camera_params.json", "{}", "expected camera_intrinsics"),
    ("habitat", "data/sceneA/00000000_2_depth.exr", "not an exr", "cannot read the EXR depth"),
])
def test_a_malformed_file_names_itself(roots, tmp_path, name, relative, corrupt, message):
    import shutil
    root = str(tmp_path / name)
    shutil.copytree(roots[name], root)
    with open(os.path.join(root, relative), "w") as file:
        file.write(corrupt)
    dataset = _datasets({name: root, **{k: v for k, v in roots.items() if k != name}}, num_views=2)[name]
    sequence = dataset.sequences[0]
    with pytest.raises(DataFileError, match=f"^{os.path.join(root, relative)}: {message}"):
        for frame in sequence.frames:
            dataset.read_view(sequence, frame)


def test_missing_split_names_the_file(tmp_path):
    with pytest.raises(DataFileError, match=r"splits/scannetv2_val.txt: cannot read the ScanNet split list"):
        Scannet(ROOT=str(tmp_path), split="val")
    with pytest.raises(DataFileError, match=r"splits/nvs_sem_train.txt: cannot read the ScanNet\+\+ split list"):
        Scannetpp(ROOT=str(tmp_path))
    with pytest.raises(DataFileError, match=r"raw/Validation: cannot list the ARKitScenes scenes"):
        ArkitScene(ROOT=str(tmp_path), split="val")
    with pytest.raises(DataFileError, match=r"Habitat_1000000_scenes_val.txt: cannot read the Habitat set list"):
        Habitat(size=1_000_000, ROOT=str(tmp_path), split="val")


def test_the_originals_expressions(roots):
    """Spann3R's training terms (spann3r/training.py) and DUSt3R's spellings, with our ROOTs."""
    spann3r = ("10000 @ Scannetpp(split='train', ROOT='scannetpp', resolution=224, transform=ColorJitter) + "
               "10000 @ habitat(split='train', ROOT='habitat', resolution=224, transform=ColorJitter) + "
               "10000 @ Scannet(split='train', ROOT='scannet', resolution=224, transform=ColorJitter, "
               "max_thresh=50) + 10000 @ ArkitScene(split='train', ROOT='arkit', resolution=224, "
               "transform=ColorJitter, max_thresh=100)")
    data_root = os.path.dirname(roots["scannet"])
    mixture = build_mixture(spann3r, data_root)
    assert mixture.labels() == ["Scannetpp", "habitat", "Scannet", "ArkitScene"] and len(mixture) == 40000
    item = mixture[(3, 0)]
    assert len(item) == 5 and item.views[0].image_size_hw == (224, 224)
    test = build_mixture("Scannetpp(split='train', ROOT='scannetpp', resolution=224, num_seq=1, kf_every=2, "
                         "seed=777, full_video=True)", data_root)
    assert len(test) == 1 and [v.frame for v in test[0].views] == [0, 2, 4]
    dust3r = ("100 @ Habitat(1, split='train', ROOT='habitat', aug_crop=16, resolution=224, transform=ColorJitter) + "
              "100 @ ARKitScenes(ROOT='arkit', aug_crop=256, resolution=224, transform=ColorJitter, num_frames=2) + "
              "100 @ ScanNetpp(split='train', ROOT='scannetpp', aug_crop=256, resolution=(512, 384), num_frames=2)")
    mixture = build_mixture(dust3r, data_root)
    assert mixture.labels() == ["Habitat", "ARKitScenes", "ScanNetpp"]
    assert {v.image_size_hw for v in mixture[(250, 0)].views} == {(384, 512)}
