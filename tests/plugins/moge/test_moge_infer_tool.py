"""tools/moge_infer.py end to end: a tiny random MoGe-1 and MoGe-2 network saved as a model.pt in
MoGe's format, a folder of images -> per-image maps, fov.json, PLY and GLB; user mistakes end in
one line and exit code 2."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer_plugins.moge.checkpoint import network_from_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TOOL = os.path.join(REPO, "tools", "moge_infer.py")
# The tool as a module (for in-process runs; one run below goes through a subprocess).
_spec = importlib.util.spec_from_file_location("moge_infer_tool", TOOL)
moge_infer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(moge_infer)

TINY_BACKBONE = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 56}


def head(channels: int) -> dict:
    """A MoGe-2 head (ConvStack) config with `channels` output channels at the last level."""
    return {"dim_in": [16, 8, 8, 8, 8], "dim_out": [None, None, None, None, channels],
            "dim_res_blocks": [8, 8, 8, 8, 8], "num_res_blocks": 0, "resamplers": ["nearest"] * 3 + ["bilinear"]}


CONFIGS = {
    "v1": {"encoder": "dinov2_vits14", "intermediate_layers": 2, "dim_proj": 16, "dim_upsample": [8, 8, 8],
           "remap_output": "exp", "res_block_norm": "layer_norm", "num_tokens_range": [12, 20],
           "last_conv_channels": 8, "backbone_override": TINY_BACKBONE},
    "v2": {"encoder": {"backbone": "dinov2_vits14", "intermediate_layers": [0, 1], "dim_out": 16},
           "neck": {"dim_in": [18, 2, 2, 2, 2], "dim_out": None, "dim_res_blocks": [16, 8, 8, 8, 8],
                    "num_res_blocks": [0, 1, 0, 0, 0], "resamplers": ["conv_transpose"] * 3 + ["bilinear"],
                    "res_block_in_norm": "layer_norm", "res_block_hidden_norm": "layer_norm"},
           "points_head": head(3), "mask_head": head(1), "normal_head": head(3), "scale_head": {"dims": [32, 8, 1]},
           "remap_output": "exp", "num_tokens_range": [12, 20], "backbone_override": TINY_BACKBONE},
}


# The mask's output convolution, and where the mask is thresholded (v1 raw score, v2 logit).
MASK_LAYER = {"v1": ("head.output_block.1.2", 0.5), "v2": ("mask_head.output_blocks.4", 0.0)}


def calibrate_mask(network, version: str) -> None:
    """Rescale the random network's mask output so that about half of a noise image is kept
    (the mask is linear in that layer): its median at the threshold, a spread of ±2."""
    name, threshold = MASK_LAYER[version]
    layer = dict(network.named_modules())[name]
    with torch.no_grad():
        raw = network.eval()(torch.rand(1, 3, 30, 40), 16)["mask"]
        raw = torch.logit(raw) if version == "v2" else raw
        gain = 4 / (raw.max() - raw.min())
        layer.weight.mul_(gain)
        layer.bias.mul_(gain).add_(threshold - gain * raw.median())


def save_model(tmp_path, version: str) -> str:
    torch.manual_seed(0)
    network = network_from_config(version, CONFIGS[version])
    calibrate_mask(network, version)
    path = str(tmp_path / f"{version}.pt")
    torch.save({"model_config": CONFIGS[version], "model": network.state_dict()}, path)
    return path


def image_folder(tmp_path) -> str:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (36, 28, 3), dtype=np.uint8)).save(folder / "b.jpg")
    (folder / "notes.txt").write_text("not an image, and not listed")
    return str(folder)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_writes_every_output(tmp_path, version, capsys):
    model, photos, out = save_model(tmp_path, version), image_folder(tmp_path), str(tmp_path / "out")
    moge_infer.main(["--pretrained", model, "--input", photos, "--output", out, "--device", "cpu",
                     "--resolution_level", "3"])
    assert "predictions for 2 image(s)" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["a", "b"]
    files = {"points.npy", "depth.npy", "depth_vis.png", "mask.png", "normal.png", "fov.json", "pointcloud.ply",
             "mesh.glb"}
    for name, (height, width) in (("a", (30, 40)), ("b", (36, 28))):
        folder = os.path.join(out, name)
        assert set(os.listdir(folder)) == files
        points, depth = np.load(os.path.join(folder, "points.npy")), np.load(os.path.join(folder, "depth.npy"))
        assert points.shape == (height, width, 3) and points.dtype == np.float32 and depth.shape == (height, width)
        mask = np.asarray(Image.open(os.path.join(folder, "mask.png"))) > 0
        assert 0.1 < mask.mean() < 0.9
        np.testing.assert_array_equal(np.isfinite(depth), mask)  # +inf exactly where masked
        np.testing.assert_allclose(points[mask][:, 2], depth[mask], rtol=1e-6)
        for png in ("depth_vis.png", "normal.png"):
            assert Image.open(os.path.join(folder, png)).size == (width, height)
        fov = json.load(open(os.path.join(folder, "fov.json")))
        intrinsics = np.array(fov["intrinsics"])
        # (a random network's xy need not grow with u: its fitted focal, hence FoV, may be negative)
        assert intrinsics.shape == (3, 3) and np.isfinite(intrinsics).all()
        assert fov["fov_x"] == pytest.approx(np.degrees(2 * np.arctan(0.5 / intrinsics[0, 0])))
        with open(os.path.join(folder, "pointcloud.ply"), "rb") as ply:
            header = ply.read(400)
        assert header.startswith(b"ply\nformat binary_little_endian 1.0\n") and b"property float nz" in header


def test_fixed_fov_and_chosen_outputs(tmp_path):
    model, out = save_model(tmp_path, "v1"), str(tmp_path / "out")
    image = os.path.join(image_folder(tmp_path), "a.png")
    moge_infer.main(["--pretrained", model, "--input", image, "--output", out, "--device", "cpu", "--fov_x", "70",
                     "--maps", "--ply"])
    assert set(os.listdir(os.path.join(out, "a"))) == {"points.npy", "depth.npy", "depth_vis.png", "mask.png",
                                                      "normal.png", "fov.json", "pointcloud.ply"}
    assert json.load(open(os.path.join(out, "a", "fov.json")))["fov_x"] == pytest.approx(70, abs=1e-3)


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args],
                          capture_output=True, text=True, cwd=REPO)


def test_user_mistakes_end_in_one_line(tmp_path, capsys):
    model, photos, out = save_model(tmp_path, "v1"), image_folder(tmp_path), str(tmp_path / "out")
    broken = os.path.join(photos, "broken.png")
    with open(broken, "w") as file:
        file.write("this is text")
    result = run_tool("--pretrained", model, "--input", broken, "--output", out, "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "broken.png" in result.stderr and "not an image" in result.stderr
    cases = [
        (["--input", str(tmp_path / "missing.png")], "missing.png"),
        (["--input", str(tmp_path / "empty_folder")], "empty_folder"),
        (["--pretrained", str(tmp_path / "nothing.pt")], "nothing.pt"),
        (["--pretrained", broken], "broken.png"),
    ]
    (tmp_path / "empty_folder").mkdir()
    for changes, named in cases:
        options = {"--pretrained": model, "--input": photos, "--output": out, "--device": "cpu"}
        options.update(zip(changes[::2], changes[1::2]))
        with pytest.raises(SystemExit) as exit_info:
            moge_infer.main([item for pair in options.items() for item in pair])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("moge_infer: error:") and named in error and "\n" not in error
    assert not os.path.exists(out)
