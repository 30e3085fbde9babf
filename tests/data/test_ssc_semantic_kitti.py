"""SemanticKITTI / SSCBench-KITTI-360 SSC: the format module (data/formats/semantic_kitti.py) and the
datasets (data/ssc/semantic_kitti.py) on tiny synthetic copies of the exact layouts."""
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.config import ConfigError
from recon_trainer.data.file_check import DataFile, check_file
from recon_trainer.data.formats import semantic_kitti as sk
from recon_trainer.data.ssc import synthetic_streets as streets
from recon_trainer.data.records import intrinsics_corner_to_centre, invert_pose
from recon_trainer.data.ssc.geometry import voxel_projection
from recon_trainer.data.ssc.semantic_kitti import KITTI360, SemanticKITTI, flip_view
from recon_trainer.errors import DataFileError

GRID = (64, 64, 8)  # 0.8 m voxels over the real 51.2 x 51.2 x 6.4 m scene
IMAGE_HW = (94, 310)
CROP = (90, 300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("semantic_kitti"))
    return streets.write_tiny_semantic_kitti(root, sequences=("00", "08", "11"), frames_per_sequence=2,
                                        image_hw=IMAGE_HW, grid_shape=GRID)


def _dataset(tiny, **kwargs):
    kwargs.setdefault("grid_shape", GRID)
    kwargs.setdefault("crop_hw", CROP)
    return SemanticKITTI(**{**tiny, **kwargs})


# ------------------------------------------------------------------------------------ constants and layout


def test_constants_match_the_original():
    assert len(sk.CLASS_NAMES) == 20 and sk.CLASS_NAMES[0] == "empty" and sk.CLASS_NAMES[19] == "traffic-sign"
    assert len(sk.KITTI360_CLASS_NAMES) == 19 and sk.KITTI360_CLASS_NAMES[7] == "road"
    # the original computes 1 / log(freq + 1e-6) on a float32 tensor
    original = 1 / torch.log(torch.tensor(sk.CLASS_FREQUENCIES) + 1e-6)
    assert torch.allclose(sk.SEMANTIC_KITTI.class_weights(), original, rtol=1e-6)
    assert sk.CLASS_WEIGHTS[0] == pytest.approx(1 / math.log(5.41773033e09))
    assert sk.SEMANTIC_KITTI.splits == {"train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
                                        "val": ("08",), "test": tuple(f"{i}" for i in range(11, 22))}
    assert sk.KITTI_360.splits["val"] == ("2013_05_28_drive_0006_sync",)
    assert sk.KITTI_360.splits["test"] == ("2013_05_28_drive_0009_sync",)
    assert sorted(sk.KITTI_360.splits["train"]) == [f"2013_05_28_drive_{i:04d}_sync" for i in (0, 2, 3, 4, 5, 7, 10)]
    assert sk.voxel_size_for(sk.GRID_SHAPE) == pytest.approx(0.2)
    assert sk.voxel_size_for(GRID) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="cubes"):
        sk.voxel_size_for((64, 64, 16))


def test_tiny_copy_has_the_exact_layout(tiny):
    data, labels, depth = tiny["data_root"], tiny["label_root"], tiny["depth_root"]
    sequence = os.path.join(data, "dataset", "sequences", "00")
    for path in (os.path.join(sequence, "calib.txt"), os.path.join(sequence, "image_2", "000005.png"),
                 os.path.join(sequence, "voxels", "000005.bin"), os.path.join(labels, "00", "000005_1_1.npy"),
                 os.path.join(labels, "00", "000005_1_8.npy"), os.path.join(depth, "sequences", "00", "000005.npy")):
        assert check_file(DataFile(path)) is None, path
    assert not os.path.exists(os.path.join(labels, "11"))  # test sequences are unlabelled
    fine = np.load(os.path.join(labels, "00", "000000_1_1.npy"))
    assert fine.dtype == np.uint8 and fine.shape == GRID
    assert set(np.unique(fine)) <= set(range(20)) | {255}
    assert {1, 9, 11, 13} <= set(np.unique(fine))  # car, road, sidewalk, building
    coarse = np.load(os.path.join(labels, "00", "000000_1_8.npy"))
    assert np.array_equal(coarse, sk.downsample_labels(fine, 8))
    occupancy = sk.read_voxel_bits(os.path.join(sequence, "voxels", "000000.bin"), GRID)
    assert np.array_equal(occupancy, (fine != 0) & (fine != 255))
    with Image.open(os.path.join(sequence, "image_2", "000000.png")) as image:
        assert image.size == (IMAGE_HW[1], IMAGE_HW[0])


def test_calibration_parsing(tmp_path):
    path = str(tmp_path / "calib.txt")
    tr = np.eye(4)
    tr[:3] = np.array(streets.KITTI_00_TR)
    sk.write_calibration(path, np.array(streets.KITTI_00_P2), tr)
    with open(path) as file:
        assert [line.split(":")[0] for line in file] == ["P0", "P1", "P2", "P3", "Tr"]
    calibration = sk.read_calibration(path)
    assert np.allclose(calibration["P2"], np.array(streets.KITTI_00_P2))
    assert np.allclose(calibration["Tr"], tr) and calibration["Tr"].shape == (4, 4)
    k, world_to_camera = sk.camera_from_calibration(calibration["P2"], calibration["Tr"])
    assert np.allclose(world_to_camera, tr) and k[0, 2] == pytest.approx(607.1928)
    _, exact = sk.camera_from_calibration(calibration["P2"], calibration["Tr"], exact=True)
    offset = (exact @ np.linalg.inv(tr))[:3, 3]  # camera 2 relative to camera 0
    assert offset[0] == pytest.approx(45.38225 / 718.856 - 607.1928 * 3.779761e-3 / 718.856, rel=1e-6)
    with open(path, "w") as file:
        file.write("P2: 1 2 3\n")
    with pytest.raises(DataFileError, match="P2"):
        sk.read_calibration(path)
    with open(path, "w") as file:
        file.write("P2: " + " ".join(["1"] * 12) + "\n")
    with pytest.raises(DataFileError, match="no Tr"):
        sk.read_calibration(path)


def test_label_reading_checks_shape_dtype_and_values(tmp_path):
    path = str(tmp_path / "x_1_1.npy")
    labels = np.zeros(GRID, dtype=np.uint8)
    labels[0, 0, 0], labels[1, 0, 0] = 19, 255
    np.save(path, labels.astype(np.float32))  # MonoScene's preprocessing saves float32
    assert np.array_equal(sk.read_labels(path, GRID, 20), labels)
    with pytest.raises(DataFileError, match="shape"):
        sk.read_labels(path, (32, 32, 4), 20)
    labels[2, 0, 0] = 20
    np.save(path, labels)
    with pytest.raises(DataFileError, match="20"):
        sk.read_labels(path, GRID, 20)
    np.save(path, np.full(GRID, 0.5, dtype=np.float32))
    with pytest.raises(DataFileError, match="whole"):
        sk.read_labels(path, GRID, 20)


def test_downsample_labels_rule():
    labels = np.zeros((4, 2, 2), dtype=np.uint8)  # two 2x2x2 blocks along x
    labels[:2] = 255  # block 0: all unknown -> 255
    labels[:2, 0, 0] = 0  # ... 2 empty, 6 unknown: still 255
    labels[2:, 0, :] = 3  # block 1: 4 voxels of class 3, 2 of class 5
    labels[2:, 1, 0] = 5
    out = sk.downsample_labels(labels, 2)
    assert out.tolist() == [[[255]], [[3]]]
    block = np.zeros((2, 2, 2), dtype=np.uint8)
    block[0, 0, 0] = 7  # 7 of 8 empty: 87.5 % <= 95 %, so the class wins
    assert sk.downsample_labels(block, 2).item() == 7
    big = np.zeros((4, 4, 4), dtype=np.uint8)
    big[0, 0, 0] = 7  # 63 of 64 empty (98 %): empty
    assert sk.downsample_labels(big, 4).item() == 0
    tie = np.zeros((2, 2, 2), dtype=np.uint8)
    tie[0], tie[1] = 4, 2  # a tie goes to the smaller class id
    assert sk.downsample_labels(tie, 2).item() == 2


def test_bits_roundtrip():
    volume = np.random.default_rng(0).random((16, 8, 8)) < 0.3
    packed = sk.pack_voxel_bits(volume)
    assert packed.size == volume.size // 8
    assert np.array_equal(sk.unpack_voxel_bits(packed, volume.shape), volume)
    assert sk.unpack_voxel_bits(np.array([0b10000001], dtype=np.uint8), (1, 1, 8)).reshape(-1).tolist() == [
        True, False, False, False, False, False, False, True]  # most significant bit first


# ------------------------------------------------------------------------------------ the dataset


def test_splits_and_listing(tiny):
    with pytest.raises(ConfigError, match="sequences/01/voxels"):  # the official list: 01 is not in the copy
        _dataset(tiny, split="train")
    train = _dataset(tiny, split="train", sequences=("00",), flip=False)
    assert train.frames() == [("00", "000000"), ("00", "000005")]
    val = _dataset(tiny, split="val")
    assert val.frames() == [("08", "000000"), ("08", "000005")]
    assert len(_dataset(tiny, split="val", frame_stride=2)) == 1
    assert len(_dataset(tiny, split="train", sequences=("00", "08"), max_frames=3)) == 3
    test = _dataset(tiny, split="test", sequences=("11",))
    assert all(not f.path.endswith(".npy") or "depth" in f.path for f in test.item_files(0))
    view = test[0]
    assert bool((view.extras["voxels"].labels == 255).all())
    with pytest.raises(ConfigError, match="bad value"):
        _dataset(tiny, split="trainval")


def test_record_conventions(tiny):
    dataset = _dataset(tiny, split="val")
    view = dataset[1]
    calibration = sk.read_calibration(os.path.join(tiny["data_root"], "dataset", "sequences", "08", "calib.txt"))
    expected_k = torch.tensor(calibration["P2"][:, :3], dtype=torch.float32)
    expected_k[:2, 2] += 0.5  # records' pixel convention
    assert torch.allclose(view.intrinsics, expected_k)
    assert torch.allclose(view.camera_to_world.double(), torch.from_numpy(np.linalg.inv(calibration["Tr"])), atol=1e-6)
    assert view.sequence == "08/000005" and view.frame == 5 and view.dataset == "SemanticKITTI"
    assert view.image.shape == (3, *CROP) and view.depth.shape == CROP
    full = np.array(Image.open(view.path).convert("RGB"))
    assert torch.allclose(view.image, torch.from_numpy(full[: CROP[0], : CROP[1]]).permute(2, 0, 1).float() / 255)
    depth = np.load(os.path.join(tiny["depth_root"], "sequences", "08", "000005.npy"))
    assert torch.equal(view.depth, torch.from_numpy(depth[: CROP[0], : CROP[1]]))
    voxels = view.extras["voxels"]
    assert voxels.labels.shape == GRID and voxels.labels.dtype == torch.uint8
    assert voxels.voxel_size == pytest.approx(0.8)
    assert voxels.voxel_origin.tolist() == pytest.approx([0.0, -25.6, -2.0])
    assert torch.allclose(voxels.extras["class_weights"], sk.SEMANTIC_KITTI.class_weights())
    coarse = voxels.extras["target_1_8"]
    assert coarse.labels.shape == (8, 8, 1) and coarse.voxel_size == pytest.approx(6.4)
    assert view.extras["flipped"] is False
    no_depth = _dataset(tiny, split="val", depth_root="")
    assert no_depth[0].depth is None
    exact = _dataset(tiny, split="val", exact_camera=True)[1]
    shift = torch.linalg.norm(exact.camera_to_world[:3, 3] - view.camera_to_world[:3, 3])
    assert float(shift) == pytest.approx(0.06, abs=0.01)  # camera 2 sits ~6 cm from camera 0


def test_real_sizes_are_read(tmp_path):
    """The real grid (256, 256, 32), a 376 x 1241 image cropped to 370 x 1220, float32 labels."""
    roots = {"data_root": str(tmp_path / "kitti"), "label_root": str(tmp_path / "labels"),
             "depth_root": str(tmp_path / "depth")}
    paths = sk.frame_paths(sk.SEMANTIC_KITTI, roots["data_root"], roots["label_root"], roots["depth_root"], "08",
                           "000000")
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    tr = np.eye(4)
    tr[:3] = np.array(streets.KITTI_00_TR)
    sk.write_calibration(paths["calibration"], np.array(streets.KITTI_00_P2), tr)
    Image.fromarray(np.full((376, 1241, 3), 90, dtype=np.uint8)).save(paths["image"])
    open(paths["voxels"], "wb").write(bytes(256 * 256 * 32 // 8))
    labels = np.zeros(sk.GRID_SHAPE, dtype=np.float32)
    labels[10:20, 100:120, :4] = 9
    np.save(paths["labels"], labels)
    np.save(paths["coarse_labels"], sk.downsample_labels(labels.astype(np.uint8), 8))
    np.save(paths["depth"], np.full((376, 1241), 7.5, dtype=np.float32))
    view = SemanticKITTI(**roots, split="val")[0]
    assert view.image.shape == (3, 370, 1220) and view.depth.shape == (370, 1220)
    voxels = view.extras["voxels"]
    assert voxels.labels.shape == (256, 256, 32) and voxels.voxel_size == pytest.approx(0.2)
    assert voxels.extras["target_1_8"].labels.shape == (32, 32, 4)
    assert int((voxels.labels == 9).sum()) == 10 * 20 * 4
    np.save(paths["depth"], np.zeros((300, 1241), dtype=np.float32))
    with pytest.raises(DataFileError, match="smaller than"):
        SemanticKITTI(**roots, split="val")[0]


def test_flip_only_in_train_and_seeded_by_the_draw(tiny):
    val = _dataset(tiny, split="val")
    assert not any(val[(i, s, i)].extras["flipped"] for i in range(len(val)) for s in range(8))
    train = _dataset(tiny, split="train", sequences=("00",))
    flips = [bool(train[(0, s, 0)].extras["flipped"]) for s in range(16)]
    assert any(flips) and not all(flips)
    assert flips == [bool(train[(0, s, 0)].extras["flipped"]) for s in range(16)]  # reproducible
    unflipped = _dataset(tiny, split="train", sequences=("00",), flip=False)
    assert not any(unflipped[(0, s, 0)].extras["flipped"] for s in range(8))


def test_mirror_flip_is_consistent_with_projection(tiny):
    dataset = _dataset(tiny, split="train", sequences=("00",))
    view, flipped = dataset.read_frame(0, flip=False), dataset.read_frame(0, flip=True)
    labels, labels_f = view.extras["voxels"].labels, flipped.extras["voxels"].labels
    assert torch.equal(labels_f, labels.flip(1))
    assert torch.equal(flipped.extras["voxels"].extras["target_1_8"].labels,
                       view.extras["voxels"].extras["target_1_8"].labels.flip(1))
    assert torch.equal(flipped.image, view.image.flip(-1)) and torch.equal(flipped.depth, view.depth.flip(-1))
    width = view.image_size_hw[1]
    assert float(flipped.intrinsics[0, 2]) == pytest.approx(width - float(view.intrinsics[0, 2]))
    assert float(torch.det(flipped.camera_to_world[:3, :3])) == pytest.approx(1.0, abs=1e-5)
    pixels, depth, fov = voxel_projection(view.extras["voxels"], view)
    pixels_f, depth_f, fov_f = voxel_projection(flipped.extras["voxels"], flipped)
    x, y, z = GRID
    # voxel (i, j, k) of the flipped volume is voxel (i, Y-1-j, k) of the original
    mirrored = torch.arange(x * y * z).reshape(x, y, z).flip(1).reshape(-1)
    assert torch.allclose(depth_f, depth[mirrored], rtol=1e-5, atol=1e-4)
    seen = fov_f & fov[mirrored]
    assert float((fov_f == fov[mirrored]).float().mean()) > 0.999 and int(seen.sum()) > 50
    u, v = pixels[mirrored][seen].T
    u_f, v_f = pixels_f[seen].T
    assert float(((u_f == width - 1 - u) & (v_f == v)).float().mean()) > 0.99
    agree = (u_f == width - 1 - u) & (v_f == v)
    assert torch.equal(flipped.image[:, v_f[agree], u_f[agree]], view.image[:, v[agree], u[agree]])
    assert torch.equal(flipped.depth[v_f[agree], u_f[agree]], view.depth[v[agree], u[agree]])


def test_mirrored_camera_sees_the_mirrored_scene(tiny):
    """Rendering the flipped labels through the flipped camera gives the flipped depth (the copy
    is rendered through camera 2's exact pose, so exact_camera=True)."""
    dataset = _dataset(tiny, split="train", sequences=("00",), exact_camera=True)
    for flip in (False, True):
        view = dataset.read_frame(1, flip=flip)
        voxels = view.extras["voxels"]
        k = intrinsics_corner_to_centre(view.intrinsics.double()).numpy()
        world_to_camera = invert_pose(view.camera_to_world.double()).numpy()
        _, depth = streets.render_labels(voxels.labels.numpy(), float(voxels.voxel_size), k, world_to_camera,
                                    view.image_size_hw)
        close = np.abs(depth - view.depth.numpy()) < 1e-3
        assert close.mean() > 0.99, (flip, close.mean())


def test_original_flip_keeps_the_camera(tiny):
    dataset = _dataset(tiny, split="train", sequences=("00",), flip_geometry="original")
    view, flipped = dataset.read_frame(0), dataset.read_frame(0, flip=True)
    assert torch.equal(flipped.intrinsics, view.intrinsics)
    assert torch.equal(flipped.camera_to_world, view.camera_to_world)
    assert torch.equal(flipped.extras["voxels"].labels, view.extras["voxels"].labels.flip(1))
    assert torch.equal(flipped.image, view.image.flip(-1))
    again = flip_view(flipped, "original")
    assert torch.equal(again.image, view.image) and torch.equal(again.extras["voxels"].labels,
                                                                 view.extras["voxels"].labels)


def test_missing_labels_are_reported_by_the_data_check(tiny, tmp_path):
    dataset = _dataset(tiny, split="val")
    files = [f.path for f in dataset.item_files(0)]
    assert any(p.endswith("000000_1_1.npy") for p in files) and any(p.endswith("000000_1_8.npy") for p in files)
    assert any(p.endswith("calib.txt") for p in files)
    with pytest.raises(ConfigError, match="cannot list"):
        SemanticKITTI(data_root=str(tmp_path), label_root=str(tmp_path), split="val", grid_shape=GRID)
    unlabelled = _dataset(tiny, split="val", label_root=str(tmp_path))
    reasons = {os.path.basename(f.path): check_file(f) for f in unlabelled.item_files(0)}
    assert reasons["000000_1_1.npy"] == "missing" and reasons["000000.png"] is None
    with pytest.raises(DataFileError, match="000000_1_1.npy"):
        unlabelled[0]
    with pytest.raises(ConfigError, match="multiple of 8"):
        _dataset(tiny, split="val", grid_shape=(40, 40, 5))
    with pytest.raises(ConfigError, match="cubes"):
        _dataset(tiny, split="val", grid_shape=(64, 64, 16))


def test_kitti360_layout(tmp_path):
    roots = streets.write_tiny_kitti360(str(tmp_path), frames_per_sequence=1, image_hw=(94, 352), grid_shape=GRID)
    image = os.path.join(roots["data_root"], "data_2d_raw", "2013_05_28_drive_0006_sync", "image_00", "data_rect",
                         "000000.png")
    assert os.path.isfile(image)
    assert os.path.isfile(os.path.join(roots["depth_root"], "2013_05_28_drive_0006_sync", "000000.npy"))
    view = KITTI360(**roots, split="val", grid_shape=GRID)[0]
    assert view.sequence == "2013_05_28_drive_0006_sync/000000" and view.image.shape == (3, 94, 352)
    assert view.intrinsics[0, 0] == pytest.approx(552.554261) and view.intrinsics[0, 2] == pytest.approx(682.549453)
    cam_to_velo = np.vstack([np.array(sk.KITTI360_CAM_TO_VELO), [0, 0, 0, 1]])
    assert np.allclose(view.camera_to_world.double().numpy(), cam_to_velo, atol=1e-6)
    voxels = view.extras["voxels"]
    assert len(voxels.extras["class_weights"]) == 19 and int(voxels.labels[voxels.labels != 255].max()) < 19
    with pytest.raises(ConfigError, match="drive_0004"):  # the train list's first drive is not in the copy
        KITTI360(**roots, split="train", grid_shape=GRID)
    assert len(KITTI360(**roots, split="train", sequences=("2013_05_28_drive_0000_sync",), grid_shape=GRID)) == 1
