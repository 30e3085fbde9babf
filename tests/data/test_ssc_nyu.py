"""NYUv2 SSC: SSCNet's depthbin format and MonoScene's pre-processing (formats/nyu_ssc.py), the
synthetic rooms in NYU's layout, the NYUv2SSC dataset in each grid variant and the two tools."""
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.config import ConfigError
from recon_trainer.data.formats import nyu_ssc
from recon_trainer.data.mixing import build_mixture
from recon_trainer.data.ssc import geometry
from recon_trainer.data.ssc.nyu import NYUv2SSC
from recon_trainer.data.ssc.synthetic_rooms import room_labels, room_seed, sample_room, write_synthetic_nyu
from recon_trainer.errors import DataFileError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN, TEST = ["NYU1001_0000", "NYU1002_0000", "NYU1003_0000"], ["NYU0001_0000", "NYU0002_0000"]
IMAGE_HW = (120, 160)  # a quarter of NYU's 480 x 640, K scaled


@pytest.fixture(scope="module")
def nyu_copy(tmp_path_factory):
    """(data_root, label_root) of a tiny synthetic NYU copy: 3 train and 2 test rooms."""
    root = tmp_path_factory.mktemp("nyu")
    data_root, label_root = str(root / "depthbin"), str(root / "preprocess" / "base")
    write_synthetic_nyu(data_root, label_root, "train", TRAIN, IMAGE_HW, seed=1)
    write_synthetic_nyu(data_root, label_root, "test", TEST, IMAGE_HW, seed=1)
    return data_root, label_root


# ------------------------------------------------------------------------------------ the format


def test_depthbin_round_trip_and_layout(tmp_path):
    room = sample_room(room_seed(0, "NYU0001_0000"))
    labels = room_labels(room)
    assert labels.shape == nyu_ssc.DEPTHBIN_SHAPE and {0, 2, 3, 255} <= set(np.unique(labels).tolist())
    path = str(tmp_path / "NYU0001_0000.bin")
    nyu_ssc.write_depthbin(path, room.voxel_origin, room.camera_pose, labels)
    origin, pose, read = nyu_ssc.read_depthbin(path)
    assert origin.dtype == np.float32 and pose.dtype == np.float32 and read.dtype == np.uint8
    assert np.array_equal(origin, room.voxel_origin.astype(np.float32))
    assert np.array_equal(pose, room.camera_pose.astype(np.float32)) and np.array_equal(read, labels)
    raw = np.fromfile(path, dtype="<u4")
    assert np.array_equal(raw[:3].view("<f4"), origin) and np.array_equal(raw[3:19].view("<f4").reshape(4, 4), pose)
    values, counts = raw[19::2], raw[20::2]
    assert counts.sum() == 240 * 144 * 240 and np.all(values[1:] != values[:-1])  # maximal runs
    # the stored axes are (world x, world z, world y): the floor is the lowest labelled layer of axis 1
    floor_layers = np.unique(np.nonzero(labels == 2)[1])
    assert floor_layers.max() * 0.02 + origin[2] < 0.05


def test_rle_hand_case():
    labels = np.array([0, 0, 3, 3, 3, 255], dtype=np.uint8).reshape(1, 2, 3)
    assert nyu_ssc.encode_rle(labels).tolist() == [0, 2, 3, 3, 255, 1]
    assert np.array_equal(nyu_ssc.decode_rle(np.array([0, 2, 3, 3, 255, 1]), (1, 2, 3)), labels)


def test_depthbin_errors(tmp_path):
    missing = str(tmp_path / "NYU0009_0000.bin")
    with pytest.raises(DataFileError, match=r"NYU0009_0000\.bin: cannot read the SSCNet depthbin"):
        nyu_ssc.read_depthbin(missing)
    short = tmp_path / "short.bin"
    short.write_bytes(np.zeros(10, np.float32).tobytes())
    with pytest.raises(DataFileError, match=r"short\.bin: 40 bytes, too short"):
        nyu_ssc.read_depthbin(str(short))
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(np.zeros(19, np.float32).tobytes() + np.array([0, 1000], np.uint32).tobytes())
    with pytest.raises(DataFileError, match=r"truncated\.bin: the runs hold 1000 voxels, expected 8294400"):
        nyu_ssc.read_depthbin(str(truncated))
    odd = tmp_path / "odd.bin"
    odd.write_bytes(np.zeros(19, np.float32).tobytes() + np.array([0], np.uint32).tobytes())
    with pytest.raises(DataFileError, match=r"odd\.bin: the run-length code has an odd number"):
        nyu_ssc.read_depthbin(str(odd))
    with pytest.raises(DataFileError, match=r"x\.bin: label ids \[40\] are not SSCNet classes"):
        nyu_ssc.map_to_12_classes(np.array([0, 40, 255], np.uint8), "x.bin")


def test_class_map_and_weights():
    assert len(nyu_ssc.SEG_CLASS_MAP) == 37 and set(nyu_ssc.SEG_CLASS_MAP) == set(range(12))
    names = dict(enumerate(nyu_ssc.CLASS_NAMES))
    # SSCNet ids: 1 ceiling, 2 floor, 3 wall, 4 window, 6 chair, 7 bed, 8 sofa, 9 table, 11 furniture, 16 tv, 14 object
    expected = {1: "ceiling", 2: "floor", 3: "wall", 4: "window", 6: "chair", 7: "bed", 8: "sofa", 9: "table",
                11: "furniture", 16: "tvs", 14: "objects", 5: "objects", 36: "objects"}
    for sscnet_id, name in expected.items():
        assert names[nyu_ssc.SEG_CLASS_MAP[sscnet_id]] == name
    mapped = nyu_ssc.map_to_12_classes(np.array([0, 7, 255, 33], np.uint8))
    assert mapped.tolist() == [0, 6, 255, 9] and mapped.dtype == np.uint8
    assert nyu_ssc.CLASS_WEIGHTS == (0.05,) + (1.0,) * 11 and len(nyu_ssc.CLASS_NAMES) == 12


def _block(parts, factor=4):
    """A (factor,)*3 block holding `parts` [(value, count)], in order."""
    values = np.concatenate([np.full(count, value, np.uint8) for value, count in parts])
    assert values.size == factor ** 3
    return values.reshape((factor,) * 3)


@pytest.mark.parametrize("parts, expected", [
    ([(0, 64)], 0),
    ([(255, 64)], 255),
    ([(0, 61), (5, 3)], 0),  # 61 empty > 95 % of 64 (60.8)
    ([(0, 60), (5, 4)], 5),  # 60 empty is not: the majority of the rest
    ([(0, 32), (255, 32)], 255),  # a tie between empty and unknown gives 255
    ([(0, 40), (255, 21), (7, 3)], 0),
    ([(0, 20), (255, 41), (7, 3)], 255),
    ([(0, 30), (3, 10), (5, 10), (7, 14)], 7),
    ([(0, 30), (5, 17), (3, 17)], 3),  # a tie between classes gives the smaller id
    ([(0, 2), (255, 58), (9, 4)], 9),  # 60 empty or unknown: the class
])
def test_downsample_rule_hand_cases(parts, expected):
    block = _block(parts)
    for shuffle in range(3):
        shuffled = np.random.default_rng(shuffle).permutation(block.ravel()).reshape(block.shape)
        assert nyu_ssc.downsample_labels(shuffled, 4).tolist() == [[[expected]]]
        assert nyu_ssc.downsample_labels_reference(shuffled, 4).tolist() == [[[expected]]]


def test_downsample_factor_two_and_parity():
    assert nyu_ssc.downsample_labels(_block([(0, 7), (6, 1)], 2), 2).item() == 6  # 7 of 8 is not > 7.6
    assert nyu_ssc.downsample_labels(_block([(0, 8)], 2), 2).item() == 0
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.choice(np.array([0, 0, 0, 0, 255, 255, 2, 3, 5, 11], np.uint8), size=(16, 8, 32))
        labels[:8, :, :16] = 3  # uniform blocks too
        for factor in (1, 2, 4, 8):
            assert np.array_equal(nyu_ssc.downsample_labels(labels, factor),
                                  nyu_ssc.downsample_labels_reference(labels, factor))
    classes = nyu_ssc.map_to_12_classes(room_labels(sample_room(room_seed(0, "NYU0005_0000"))))
    assert np.array_equal(nyu_ssc.downsample_labels(classes, 16), nyu_ssc.downsample_labels_reference(classes, 16))
    with pytest.raises(ValueError, match="not divisible"):
        nyu_ssc.downsample_labels(labels, 3)


def test_pkl_content_round_trip(nyu_copy, tmp_path):
    data_root, label_root = nyu_copy
    bin_path = nyu_ssc.depthbin_path(data_root, "test", TEST[0])
    content = nyu_ssc.depthbin_to_pkl_content(bin_path)
    assert sorted(content) == ["cam_pose", "name", "target_1_16", "target_1_4", "voxel_origin"]
    assert content["name"] == TEST[0] and content["target_1_4"].shape == (60, 36, 60)
    assert content["target_1_16"].shape == (15, 9, 15) and content["target_1_4"].dtype == np.uint8
    origin, pose, labels = nyu_ssc.read_depthbin(bin_path)
    classes = nyu_ssc.map_to_12_classes(labels)
    assert np.array_equal(content["target_1_4"], nyu_ssc.downsample_labels_reference(classes, 4))
    assert np.array_equal(content["cam_pose"], pose) and np.array_equal(content["voxel_origin"], origin)
    assert set(np.unique(content["target_1_4"]).tolist()) <= set(range(12)) | {255}
    path = str(tmp_path / "NYUtest" / f"{TEST[0]}.pkl")
    nyu_ssc.write_pkl(path, content)
    loaded = nyu_ssc.read_pkl(path)
    assert loaded["name"] == TEST[0] and all(np.array_equal(loaded[k], content[k]) for k in content if k != "name")
    assert os.listdir(tmp_path / "NYUtest") == [f"{TEST[0]}.pkl"]  # no temporary file left
    written = nyu_ssc.read_pkl(os.path.join(label_root, "NYUtest", f"{TEST[0]}.pkl"))
    assert all(np.array_equal(written[k], content[k]) for k in content)
    view = nyu_ssc.read_sample(data_root, label_root, "test", TEST[0])  # the older reader still reads it
    assert view.extras["voxels"].grid_shape == (60, 60, 36) and view.image.shape == (3, *IMAGE_HW)


def test_depth_png_layout(tmp_path):
    path = str(tmp_path / "d.png")
    nyu_ssc.write_depth_png(path, np.array([[2.345, 0.0], [np.nan, 9.5]]))
    raw = np.array(Image.open(path))
    assert raw.dtype == np.uint16 and raw.tolist() == [[2345 * 8, 0], [0, 8191 * 8]]  # SSCNet: mm << 3
    assert np.allclose(nyu_ssc.read_depth_png(path), [[2.345, 0.0], [0.0, 8.191]])
    with pytest.raises(DataFileError, match=r"nothing\.png: cannot read the depth PNG"):
        nyu_ssc.read_depth_png(str(tmp_path / "nothing.png"))


# ------------------------------------------------------------------------------------ the dataset


@pytest.mark.parametrize("voxel_size", [0.08, 0.04])
@pytest.mark.parametrize("extent", ["full", "crop", "scale"])
def test_dataset_variants(nyu_copy, voxel_size, extent):
    data_root, label_root = nyu_copy
    dataset = NYUv2SSC(data_root=data_root, label_root=label_root if voxel_size == 0.08 else "", split="test",
                       voxel_size=voxel_size, extent=extent)
    assert len(dataset) == 2 and dataset.label() == "NYUv2SSC"
    view = dataset[1]
    pkl = nyu_ssc.read_pkl(os.path.join(label_root, "NYUtest", f"{TEST[1]}.pkl"))
    voxels = view.extras["voxels"]
    full = geometry.grid_shape(geometry.FULL_EXTENT, voxel_size)
    crop = geometry.grid_shape(geometry.CROP_EXTENT, voxel_size)
    assert voxels.grid_shape == (full if extent == "full" else crop) and voxels.labels.dtype == torch.uint8
    # the crop is centred in x and y and starts at the floor in z
    start = np.array([(full[0] - crop[0]) // 2, (full[1] - crop[1]) // 2, 0]) if extent == "crop" else np.zeros(3)
    assert np.allclose(voxels.voxel_origin.numpy(), pkl["voxel_origin"] + start * voxel_size, atol=1e-6)
    expected_size = (tuple(voxel_size * n / m for n, m in zip(full, crop)) if extent == "scale" else voxel_size)
    assert np.allclose(voxels.voxel_size, expected_size)
    assert torch.equal(voxels.extras["class_weights"], torch.tensor(nyu_ssc.CLASS_WEIGHTS))
    assert ("target_1_16" in voxels.extras) == (extent == "full")
    if extent == "full":
        assert torch.equal(voxels.extras["target_1_16"].labels,
                           torch.from_numpy(pkl["target_1_16"].transpose(0, 2, 1).copy()))
    if voxel_size == 0.08 and extent == "full":
        assert torch.equal(voxels.labels, torch.from_numpy(pkl["target_1_4"].transpose(0, 2, 1).copy()))


def test_the_cpu_grid_downsamples_target_1_4_by_two(nyu_copy):
    data_root, label_root = nyu_copy
    view = NYUv2SSC(data_root=data_root, label_root=label_root, split="test", voxel_size=0.16)[1]
    voxels = view.extras["voxels"]
    pkl = nyu_ssc.read_pkl(os.path.join(label_root, "NYUtest", f"{TEST[1]}.pkl"))
    expected = nyu_ssc.downsample_labels(pkl["target_1_4"].transpose(0, 2, 1), 2)
    assert voxels.grid_shape == (30, 30, 18)
    assert np.array_equal(voxels.labels.numpy(), expected)
    with pytest.raises(ConfigError, match="extent 'full' only"):
        NYUv2SSC(data_root=data_root, label_root=label_root, split="test", voxel_size=0.16, extent="crop")
    assert view.image.shape == (3, *IMAGE_HW) and view.depth.shape == IMAGE_HW and view.sequence == TEST[1]
    assert view.intrinsics[0, 2] == pytest.approx(320.5 / 4) and view.intrinsics[0, 0] == pytest.approx(518.8579 / 4)
    assert torch.equal(view.camera_to_world, torch.from_numpy(pkl["cam_pose"]))
    # the conventions agree: the surface seen at an occupied voxel's pixel is not behind the voxel
    pixels, depth, fov = geometry.voxel_projection(voxels, view)
    labels = voxels.labels.reshape(-1)
    seen = fov & (labels > 0) & (labels < 255)
    surface = view.depth[pixels[seen, 1], pixels[seen, 0]]
    assert seen.sum() > 100 and (surface <= depth[seen] + voxels.voxel_size_xyz().norm()).float().mean() > 0.9
    assert 0.4 < fov.float().mean() < 0.97


def test_dataset_crop_and_scale_are_the_full_grid_resampled(nyu_copy):
    data_root, label_root = nyu_copy
    views = {extent: NYUv2SSC(data_root=data_root, split="train", voxel_size=0.04, extent=extent)[0].extras["voxels"]
             for extent in ("full", "crop", "scale")}
    full = views["full"].labels.numpy()
    assert np.array_equal(views["crop"].labels.numpy(), full[10:110, 10:110, 0:50])  # centred in x, y; from the floor in z
    index = [np.floor((np.arange(m) + 0.5) * n / m).astype(int) for n, m in zip(full.shape, (100, 100, 50))]
    assert np.array_equal(views["scale"].labels.numpy(), full[np.ix_(*index)])
    # the 0.04 grid, further downsampled by MonoScene's rule, is close to the pkl's 0.08 grid
    coarse = NYUv2SSC(data_root=data_root, label_root=label_root, split="train")[0].extras["voxels"].labels.numpy()
    assert (nyu_ssc.downsample_labels(full, 2) == coarse).mean() > 0.95


def test_dataset_depth_root_suffix_and_image_scale(nyu_copy, tmp_path):
    data_root, label_root = nyu_copy
    folder = tmp_path / "pred" / "NYUtest"
    folder.mkdir(parents=True)
    for name in TEST:
        depth = nyu_ssc.read_depth_png(os.path.join(data_root, "NYUtest", f"{name}.png"))
        nyu_ssc.write_depth_png(str(folder / f"{name}_pred.png"), depth * 1.25)
    sensor = NYUv2SSC(data_root=data_root, label_root=label_root, split="test")[0]
    predicted = NYUv2SSC(data_root=data_root, label_root=label_root, split="test", depth_root=str(tmp_path / "pred"),
                         depth_suffix="_pred")[0]
    assert torch.allclose(predicted.depth, sensor.depth * 1.25, atol=2e-3)
    half = NYUv2SSC(data_root=data_root, label_root=label_root, split="test", image_scale=0.5, with_depth=True)[0]
    assert half.image.shape == (3, 60, 80) and half.depth.shape == (60, 80)
    assert torch.allclose(half.intrinsics, sensor.intrinsics * torch.tensor([[0.5], [0.5], [1.0]]))
    assert torch.equal(half.depth, sensor.depth[::2, ::2]) or torch.equal(half.depth, sensor.depth[1::2, 1::2])
    assert NYUv2SSC(data_root=data_root, label_root=label_root, split="test", with_depth=False)[0].depth is None


def test_dataset_from_an_expression(nyu_copy):
    data_root, label_root = nyu_copy
    base = os.path.dirname(data_root)
    text = "NYUv2SSC(data_root='depthbin', label_root='preprocess/base', split='train', extent='crop') + " \
           "NYUv2SSC(data_root='depthbin', split='test', voxel_size=0.04, name='fine')"
    mixture = build_mixture(text, data_root=base)
    assert len(mixture) == 5
    assert mixture[0].extras["voxels"].grid_shape == (50, 50, 25)
    assert mixture[4].extras["voxels"].grid_shape == (120, 120, 72) and mixture[4].dataset == "fine"


def test_dataset_errors(nyu_copy, tmp_path):
    data_root, label_root = nyu_copy
    copy = str(tmp_path / "depthbin")
    shutil.copytree(data_root, copy)
    dataset = NYUv2SSC(data_root=copy, split="test", voxel_size=0.04)
    os.remove(os.path.join(copy, "NYUtest", f"{TEST[0]}.bin"))
    with pytest.raises(DataFileError, match=rf"NYUtest/{TEST[0]}\.bin: cannot read the SSCNet depthbin volume"):
        dataset[0]
    os.remove(os.path.join(copy, "NYUtest", f"{TEST[1]}_color.jpg"))
    with pytest.raises(DataFileError, match=rf"NYUtest/{TEST[1]}_color\.jpg: cannot read the NYU image"):
        NYUv2SSC(data_root=copy, label_root=label_root, split="test")[1]
    os.remove(os.path.join(copy, "NYUtest", f"{TEST[1]}.bin"))
    with pytest.raises(ConfigError, match=r"NYUtest has no SSCNet volumes \(<name>\.bin\); voxel_size=0.04 needs them"):
        NYUv2SSC(data_root=copy, split="test", voxel_size=0.04)
    with pytest.raises(ConfigError, match=r"voxel_size=0.05: expected 0.08"):
        NYUv2SSC(data_root=data_root, label_root=label_root, voxel_size=0.05)
    with pytest.raises(ConfigError, match=r"label_root is empty"):
        NYUv2SSC(data_root=data_root)
    with pytest.raises(ConfigError, match=r"extent"):
        NYUv2SSC(data_root=data_root, label_root=label_root, extent="zoom")
    with pytest.raises(DataFileError, match=r"nowhere/NYUtrain: cannot list"):
        NYUv2SSC(data_root=data_root, label_root=str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------------ the tools


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT, check=False)


def test_depthbin_to_pkl_tool(nyu_copy, tmp_path):
    data_root, label_root = nyu_copy
    tool = os.path.join(REPO_ROOT, "tools", "nyu_depthbin_to_pkl.py")
    out = str(tmp_path / "base")
    result = _run(tool, "--data-root", data_root, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "NYUtrain: 3 written" in result.stdout and "NYUtest: 2 written" in result.stdout
    for split, names in (("train", TRAIN), ("test", TEST)):
        for name in names:
            ours = nyu_ssc.read_pkl(os.path.join(out, f"NYU{split}", f"{name}.pkl"))
            reference = nyu_ssc.read_pkl(os.path.join(label_root, f"NYU{split}", f"{name}.pkl"))
            assert all(np.array_equal(ours[k], reference[k]) for k in reference)
    bad = _run(tool, "--data-root", str(tmp_path / "missing"), "--out", out)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "missing/NYUtrain: no such folder" in bad.stderr


def test_make_ssc_datasets_tool(tmp_path):
    tool = os.path.join(REPO_ROOT, "tools", "make_ssc_datasets.py")
    result = _run(tool, "--out", str(tmp_path), "--n-train", "1", "--n-test", "1", "--height", "48", "--width", "64")
    assert result.returncode == 0, result.stderr
    nyu = tmp_path / "NYU"
    assert sorted(os.listdir(nyu / "depthbin" / "NYUtest")) == ["NYU0001_0000.bin", "NYU0001_0000.png",
                                                                "NYU0001_0000_color.jpg"]
    view = NYUv2SSC(data_root=str(nyu / "depthbin"), label_root=str(nyu / "preprocess" / "base"))[0]
    assert view.image.shape == (3, 48, 64) and view.sequence == "NYU1001_0000"


def test_depthbin_to_pkl_keeps_existing_files(nyu_copy, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("nyu_depthbin_to_pkl",
                                                  os.path.join(REPO_ROOT, "tools", "nyu_depthbin_to_pkl.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    data_root, _ = nyu_copy
    out = str(tmp_path / "base")
    tool.convert(data_root, out, ["test"])
    kept = os.path.join(out, "NYUtest", f"{TEST[0]}.pkl")
    with open(kept, "wb") as file:
        file.write(b"not a pickle")
    tool.convert(data_root, out, ["test"])
    assert "NYUtest: 0 written, 2 kept" in capsys.readouterr().out
    assert open(kept, "rb").read() == b"not a pickle"
    tool.convert(data_root, out, ["test"], overwrite=True)
    assert "NYUtest: 2 written, 0 kept" in capsys.readouterr().out
    assert nyu_ssc.read_pkl(kept)["name"] == TEST[0]
    empty = tmp_path / "empty"
    (empty / "NYUtest").mkdir(parents=True)
    with pytest.raises(DataFileError, match=r"empty/NYUtest: no SSCNet volumes"):
        tool.convert(str(empty), out, ["test"])
