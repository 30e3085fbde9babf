"""Online reconstruction of your own frames (reconstruction.py, tools/spann3r_reconstruct.py and
Spann3RModel.write_image_predictions): DUSt3R's frame preparation, reading folders and videos,
the written files, and the tool end to end with a tiny random Spann3R; user mistakes end in one
line and exit code 2."""
import importlib.util
import os
import subprocess
import sys
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.config import expand_args_fields
from recon_trainer.errors import UserError, WriteError
from recon_trainer.fileio import TEMP_PREFIX
from recon_trainer_plugins.spann3r.dust3r_network import DUSt3RArchitecture
from recon_trainer_plugins.spann3r.model import Spann3RModel
from recon_trainer_plugins.spann3r.reconstruction import (FrameReconstruction, check_size, prepare_frame, read_frames,
                                                          reconstruct_frames, write_reconstruction)
from recon_trainer_plugins.spann3r.spann3r_checkpoint import load_spann3r_checkpoint
from recon_trainer_plugins.spann3r.spann3r_network import MemoryArchitecture, Spann3RNetwork

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TOOL = os.path.join(REPO, "tools", "spann3r_reconstruct.py")
_spec = importlib.util.spec_from_file_location("spann3r_reconstruct_tool", TOOL)
spann3r_reconstruct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(spann3r_reconstruct)

TINY_DUST3R = {"img_size": [32, 32], "patch_size": 8, "enc_embed_dim": 32, "enc_depth": 1, "enc_num_heads": 2,
               "dec_embed_dim": 16, "dec_depth": 2, "dec_num_heads": 2, "head_type": "linear"}
TINY_MEMORY = {"value_depth": 1, "value_num_heads": 2}
SIZE = 32
OUTPUTS = {"pointcloud.ply", "confidence.npy", "points.npy", "confidence", "frames.txt"}
PLY_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                       ("conf", "<f4"), ("frame", "<f4")])


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def image_folder(folder: str, count: int, size_wh: Tuple[int, int] = (40, 30)) -> List[str]:
    """`count` random PNGs named 0.png, 1.png, ... (and a text file that is not listed); their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"{i}.png") for i in range(count)]
    for i, path in enumerate(paths):
        random_image(*size_wh, seed=i).save(path)
    with open(os.path.join(folder, "notes.txt"), "w") as file:
        file.write("not an image")
    return paths


def save_tiny_checkpoint(path: str) -> str:
    """A random tiny Spann3RNetwork saved as the released spann3r.pth is: {'model': state dict}."""
    torch.manual_seed(0)
    network = Spann3RNetwork(DUSt3RArchitecture(**{**TINY_DUST3R, "img_size": (SIZE, SIZE)}),
                             MemoryArchitecture(**TINY_MEMORY))
    torch.save({"model": network.state_dict()}, path)
    return path


def read_ply(path: str) -> Tuple[List[str], np.ndarray]:
    """The header lines and the vertices (PLY_VERTEX) of a binary PLY."""
    with open(path, "rb") as file:
        data = file.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    vertices = np.frombuffer(data[end:], dtype=PLY_VERTEX)
    assert len(vertices) == count
    return header, vertices


def check_outputs(out_dir: str, names: List[str], height: int, width: int, conf_threshold: float = 1.5) -> None:
    """Every file of write_reconstruction's docstring, consistent with each other."""
    assert set(os.listdir(out_dir)) == OUTPUTS
    conf, points = np.load(os.path.join(out_dir, "confidence.npy")), np.load(os.path.join(out_dir, "points.npy"))
    assert conf.shape == (len(names), height, width) and conf.dtype == np.float32 and (conf >= 1).all()
    assert points.shape == (len(names), height, width, 3) and points.dtype == np.float32
    assert sorted(os.listdir(os.path.join(out_dir, "confidence"))) == [f"{i:04d}_{n}.png" for i, n in enumerate(names)]
    with open(os.path.join(out_dir, "frames.txt")) as file:
        assert file.read().split("\n") == names + [""]
    _, vertices = read_ply(os.path.join(out_dir, "pointcloud.ply"))
    keep = conf > conf_threshold
    np.testing.assert_array_equal(vertices["conf"], conf[keep])
    np.testing.assert_array_equal(np.stack([vertices[c] for c in "xyz"], -1), points[keep])


# prepare_frame: DUSt3R's load_images
@pytest.mark.parametrize("size_wh, resized_wh, box", [
    ((40, 30), (299, 224), (37, 0, 261, 224)),  # short side to 224 (long: round(224 * 4 / 3)), centre square
    ((30, 40), (224, 299), (0, 37, 224, 261)),
    ((50, 50), (224, 224), (0, 0, 224, 224)),
    ((600, 300), (448, 224), (112, 0, 336, 224)),  # shrinking: Lanczos
])
def test_prepare_frame_224_is_a_centre_square(size_wh, resized_wh, box):
    image = random_image(*size_wh)
    resample = Image.LANCZOS if max(size_wh) > max(resized_wh) else Image.BICUBIC
    expected = np.asarray(image.resize(resized_wh, resample).crop(box), dtype=np.float32) / 255
    frame = prepare_frame(image, 224)
    assert frame.shape == (3, 224, 224) and frame.dtype == torch.float32
    np.testing.assert_array_equal(frame.permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("size_wh, resized_wh, box", [
    ((100, 100), (512, 512), (0, 64, 512, 448)),  # a square image gets 4:3
    ((500, 333), (512, 341), (0, 2, 512, 338)),  # long side to 512, centre crop to multiples of 16
    ((333, 500), (341, 512), (2, 0, 338, 512)),
    ((640, 480), (512, 384), (0, 0, 512, 384)),
])
def test_prepare_frame_512_keeps_the_aspect(size_wh, resized_wh, box):
    image = random_image(*size_wh)
    resample = Image.LANCZOS if max(size_wh) > 512 else Image.BICUBIC
    expected = np.asarray(image.resize(resized_wh, resample).crop(box), dtype=np.float32) / 255
    frame = prepare_frame(image, 512)
    assert frame.shape == (3, box[3] - box[1], box[2] - box[0])
    np.testing.assert_array_equal(frame.permute(1, 2, 0).numpy(), expected)


def test_prepare_frame_matches_dust3r_load_images(tmp_path):
    """Only where the original is importable (PYTHONPATH=<deps>:<naver/dust3r>): its [-1, 1] pixels are ours * 2 - 1."""
    load_images = pytest.importorskip("dust3r.utils.image", exc_type=ImportError).load_images
    for i, size_wh in enumerate([(40, 30), (30, 40), (50, 50), (500, 333)]):
        path = str(tmp_path / f"{i}.png")
        random_image(*size_wh, seed=i).save(path)
        for size in (224, 512):
            theirs = load_images([path], size, verbose=False)[0]
            ours = prepare_frame(Image.open(path), size)
            assert tuple(theirs["true_shape"][0]) == tuple(ours.shape[1:])
            torch.testing.assert_close(ours * 2 - 1, theirs["img"][0], atol=1e-6, rtol=0)


def test_check_size():
    for size, patch in ((224, 16), (32, 8), (512, 16), (520, 16)):
        check_size(size, patch, "--size")
    for size, patch in ((30, 8), (0, 8), (200, 16), (8, 16)):
        with pytest.raises(UserError, match=f"^--size={size}: expected a multiple of the patch size {patch}"):
            check_size(size, patch, "--size")


# read_frames
def test_read_frames_from_a_folder(tmp_path):
    folder = str(tmp_path / "frames")
    os.makedirs(folder)
    for i, name in enumerate(["c.png", "a.png", "e.jpg", "b.png", "d.png"]):
        Image.new("RGB", (8, 6), (10 * i, 0, 0)).save(os.path.join(folder, name))
    (tmp_path / "frames" / "notes.txt").write_text("not an image")
    frames, names = read_frames(folder)
    assert names == ["a", "b", "c", "d", "e"]
    assert [frame.getpixel((0, 0))[0] for frame in frames[:4]] == [10, 30, 0, 40]
    assert all(frame.mode == "RGB" and frame.size == (8, 6) for frame in frames)
    assert read_frames(folder, kf_every=2)[1] == ["a", "c", "e"]
    assert read_frames(folder, max_frames=2)[1] == ["a", "b"]
    assert read_frames(folder, kf_every=2, max_frames=2)[1] == ["a", "c"]


def test_read_frames_turns_images_upright_by_exif(tmp_path):
    """As DUSt3R's exif_transpose: orientation 6 (a phone held upright) is shown turned 90 degrees clockwise."""
    array = np.asarray(random_image(40, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("a.png", "b.png"):
        Image.fromarray(array).save(tmp_path / name, exif=exif)
    frames, _ = read_frames(str(tmp_path))
    np.testing.assert_array_equal(np.asarray(frames[0]), np.rot90(array, k=-1))


def test_read_frames_from_a_video(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    path = str(tmp_path / "clip.mp4")
    iio.imwrite(path, np.stack([np.full((32, 48, 3), 40 * i, np.uint8) for i in range(6)]), fps=5)
    frames, names = read_frames(path, kf_every=2)
    assert names == ["frame000000", "frame000002", "frame000004"]
    assert all(frame.size == (48, 32) for frame in frames)
    np.testing.assert_allclose([np.asarray(frame).mean() for frame in frames], [0, 80, 160], atol=3)
    assert read_frames(path, max_frames=4)[1] == [f"frame{i:06d}" for i in range(4)]


def test_read_frames_mistakes_are_one_line(tmp_path):
    image_folder(str(tmp_path / "one"), 1)
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    image_folder(str(broken), 2)
    (broken / "1.png").write_text("this is text")
    (tmp_path / "fake.mp4").write_text("this is text")
    cases = [(str(tmp_path / "missing"), "expected a folder of images or a video file"),
             (str(tmp_path / "one"), "1 frame(s) after kf_every=1; a reconstruction needs >= 2"),
             (str(tmp_path / "empty"), "holds no images"),
             (str(broken), "cannot read the image"),
             (str(tmp_path / "fake.mp4"), "cannot read the video")]
    for source, expected in cases:
        with pytest.raises(UserError) as error:
            read_frames(source)
        assert expected in str(error.value) and os.path.basename(source) in str(error.value)
        assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="kf_every=0: expected >= 1"):
        read_frames(str(tmp_path / "one"), kf_every=0)


# write_reconstruction
def hand_reconstruction() -> FrameReconstruction:
    """T=2 frames of 3x4 with confidences below, at and above 1.5."""
    conf = torch.tensor([[[1.1, 1.5, 1.6, 3.0], [2.0, 1.2, 9.0, 1.5], [1.51, 1.1, 1.1, 4.0]],
                         [[5.0, 1.4, 1.5, 1.1], [1.7, 1.7, 1.1, 1.1], [1.1, 1.1, 2.5, 1.1]]])
    points = torch.arange(2 * 3 * 4 * 3, dtype=torch.float32).reshape(2, 3, 4, 3) / 10
    colors = torch.linspace(0, 1, 2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    return FrameReconstruction(points, conf, colors, ["first", "second"], seconds=0.5)


def test_write_reconstruction_writes_every_file(tmp_path):
    result = hand_reconstruction()
    out = str(tmp_path / "out")
    written = write_reconstruction(result, out, conf_threshold=1.5)
    assert sorted(written) == sorted(os.path.join(out, name) for name in
                                     ["pointcloud.ply", "confidence.npy", "points.npy", "frames.txt",
                                      "confidence/0000_first.png", "confidence/0001_second.png"])
    check_outputs(out, ["first", "second"], 3, 4)
    np.testing.assert_array_equal(np.load(os.path.join(out, "confidence.npy")), result.conf.numpy())
    np.testing.assert_array_equal(np.load(os.path.join(out, "points.npy")), result.points.numpy())
    header, vertices = read_ply(os.path.join(out, "pointcloud.ply"))
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 10"]
    assert header[3:] == [f"property {kind} {name}" for name, kind in
                          [("x", "float"), ("y", "float"), ("z", "float"), ("red", "uchar"), ("green", "uchar"),
                           ("blue", "uchar"), ("conf", "float"), ("frame", "float")]] + ["end_header"]
    keep = result.conf > 1.5  # 1.5 itself is left out
    np.testing.assert_array_equal(vertices["frame"], [0] * 6 + [1] * 4)
    np.testing.assert_array_equal(np.stack([vertices[c] for c in ("red", "green", "blue")], -1),
                                  np.round(result.colors[keep].numpy() * 255).astype(np.uint8))
    for name in ("0000_first.png", "0001_second.png"):
        image = Image.open(os.path.join(out, "confidence", name))
        assert image.size == (4, 3) and image.mode == "RGB"
    assert result.fps == 4.0
    _, every = read_ply(write_reconstruction(result, str(tmp_path / "all"), conf_threshold=1.0)[0])
    assert len(every) == 2 * 3 * 4  # 1: every point


def test_write_reconstruction_is_atomic(tmp_path, monkeypatch):
    """A failed write leaves the earlier files whole and no temporary file behind."""
    out = str(tmp_path / "out")
    write_reconstruction(hand_reconstruction(), out)
    before = {name: open(os.path.join(out, name), "rb").read() for name in ("pointcloud.ply", "confidence.npy")}

    def disk_full(*args, **kwargs) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    changed = hand_reconstruction()
    changed.conf += 1
    with pytest.raises(WriteError, match="confidence.npy"):
        write_reconstruction(changed, out)
    assert open(os.path.join(out, "confidence.npy"), "rb").read() == before["confidence.npy"]
    assert open(os.path.join(out, "pointcloud.ply"), "rb").read() != before["pointcloud.ply"]  # written before
    leftovers = [name for _, _, files in os.walk(out) for name in files if name.startswith(TEMP_PREFIX)]
    assert leftovers == []


# the tool
def run_tool(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=REPO, env=env)


def test_tool_end_to_end(tmp_path):
    checkpoint = save_tiny_checkpoint(str(tmp_path / "spann3r.pth"))
    folder, out = str(tmp_path / "frames"), str(tmp_path / "out")
    image_folder(folder, 4)
    result = run_tool("--pretrained", checkpoint, "--input", folder, "--output", out, "--size", str(SIZE),
                      "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "spann3r_reconstruct: 4 frames in" in result.stdout and "FPS)" in result.stdout
    assert f"wrote 8 files to {out}" in result.stdout
    check_outputs(out, ["0", "1", "2", "3"], SIZE, SIZE)
    # the same points as the loaded network reconstructing in this process
    frames, names = read_frames(folder)
    expected = reconstruct_frames(load_spann3r_checkpoint(checkpoint), frames, names, torch.device("cpu"), SIZE, 8)
    torch.testing.assert_close(torch.from_numpy(np.load(os.path.join(out, "points.npy"))), expected.points)
    offline = run_tool("--pretrained", checkpoint, "--input", folder, "--output", out + "_offline", "--size",
                       str(SIZE), "--offline")
    assert offline.returncode == 0, offline.stderr
    network = load_spann3r_checkpoint(checkpoint)
    with torch.no_grad():
        direct = network.eval().offline_reconstruction(
            torch.stack([prepare_frame(frame, SIZE, 8) for frame in frames])[None] * 2 - 1)
    torch.testing.assert_close(torch.from_numpy(np.load(os.path.join(out + "_offline", "points.npy"))),
                               direct.points[0])


def tool_error(capsys, options: Dict[str, str]) -> str:
    """Run the tool in this process; its stderr (asserted: exit code 2, one line)."""
    with pytest.raises(SystemExit) as exit_info:
        spann3r_reconstruct.main([item for pair in options.items() for item in pair])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("spann3r_reconstruct: error:") and "\n" not in error
    return error


def test_tool_mistakes_end_in_one_line(tmp_path, capsys):
    checkpoint = save_tiny_checkpoint(str(tmp_path / "spann3r.pth"))
    folder, out = str(tmp_path / "frames"), str(tmp_path / "out")
    image_folder(folder, 2)
    missing = str(tmp_path / "missing.pth")
    result = run_tool("--pretrained", missing, "--input", folder, "--output", out, "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"spann3r_reconstruct: error: Spann3R checkpoint {missing!r}: "
                                                  "no such file"]
    not_torch, no_model = tmp_path / "notes.pth", tmp_path / "other.pth"
    not_torch.write_text("this is text")
    torch.save({"state_dict": {}}, no_model)
    (tmp_path / "clip.txt").write_text("neither a folder nor a video")
    cases = [({"--pretrained": str(not_torch)}, "not a readable torch file"),
             ({"--pretrained": str(no_model)}, "expected a dict with a 'model' state dict"),
             ({"--conf_threshold": "0.5"}, "--conf_threshold 0.5: confidences are >= 1"),
             ({"--input": str(tmp_path / "clip.txt")}, "clip.txt': expected a folder of images or a video file"),
             ({"--size": "30"}, "--size=30: expected a multiple of the patch size 8")]
    for changes, expected in cases:
        options = {"--pretrained": checkpoint, "--input": folder, "--output": out, "--device": "cpu",
                   "--size": str(SIZE), **changes}
        assert expected in tool_error(capsys, options)
    assert not os.path.exists(out)


# recon_visualizer images_dir=...
def test_model_writes_image_predictions(tmp_path):
    expand_args_fields(Spann3RModel)
    torch.manual_seed(0)
    model = Spann3RModel(network=dict(TINY_DUST3R), memory=dict(TINY_MEMORY), reconstruction_size=SIZE)
    paths = image_folder(str(tmp_path / "frames"), 3, size_wh=(30, 40))
    out = str(tmp_path / Spann3RModel.IMAGE_PREDICTIONS_FOLDER)
    model.train()
    written = model.write_image_predictions(paths, out, torch.device("cpu"))
    assert model.training  # the mode is given back
    assert [os.path.basename(path) for path in written] == ["0000_0.png", "0001_1.png", "0002_2.png"]
    assert all(os.path.isfile(path) for path in written)  # one confidence image per input image
    check_outputs(out, ["0", "1", "2"], SIZE, SIZE)
    frames, names = read_frames(str(tmp_path / "frames"))
    expected = reconstruct_frames(model.net, frames, names, torch.device("cpu"), SIZE, 8)
    torch.testing.assert_close(torch.from_numpy(np.load(os.path.join(out, "confidence.npy"))), expected.conf)
    model.reconstruction_size = 30
    with pytest.raises(UserError, match="^Spann3RModel.reconstruction_size=30: expected a multiple"):
        model.write_image_predictions(paths, out, torch.device("cpu"))
