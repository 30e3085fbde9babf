"""`+preset=quick` sizes a real Blender scene like the built-in one: its images are area-averaged down
to the preset's 64 pixels (BlenderDatasetMapProvider.image_size), cameras unchanged in NDC."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.config import ConfigError, expand_args_fields
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.data.data_source import ReconDataSource
from recon_trainer.data.providers.blender import BlenderDatasetMapProvider, area_resize
from recon_trainer.experiment import Experiment

SIDE = 96  # the tiny scene's images: 96 x 96, so 64 is not an integer downscale (1.5)
PROVIDER = "data_source_ReconDataSource_args.dataset_map_provider_BlenderDatasetMapProvider_args"


def write_tiny_blender_scene(base, side: int = SIDE, n_per_split: int = 2) -> np.ndarray:
    """A NeRF-synthetic-layout scene: transforms_{train,val,test}.json and random RGBA PNGs of
    side x side; returns the first train image (H, W, 4) uint8."""
    rng = np.random.default_rng(0)
    first = None
    for split in ("train", "val", "test"):
        (base / split).mkdir(parents=True)
        frames = []
        for k in range(n_per_split):
            rgba = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
            rgba[..., 3] = 255  # opaque: colours are compared without compositing
            Image.fromarray(rgba).save(base / split / f"r_{k}.png")
            first = rgba if first is None else first
            angle = 2.0 * math.pi * k / n_per_split
            c2w = [[math.cos(angle), 0.0, math.sin(angle), 4.0 * math.sin(angle)], [0.0, 1.0, 0.0, 0.0],
                   [-math.sin(angle), 0.0, math.cos(angle), 4.0 * math.cos(angle)], [0.0, 0.0, 0.0, 1.0]]
            frames.append({"file_path": f"./{split}/r_{k}", "rotation": 0.0, "transform_matrix": c2w})
        (base / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return first


def reference_area_resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Plain loops: output pixel (i, j) is the overlap-weighted mean of the input pixels its area covers."""
    H, W = image.shape[:2]
    sy, sx = H / h, W / w
    out = np.zeros((h, w, image.shape[2]))
    for i in range(h):
        for j in range(w):
            total = 0.0
            for y in range(math.floor(i * sy), math.ceil((i + 1) * sy)):
                for x in range(math.floor(j * sx), math.ceil((j + 1) * sx)):
                    weight = (min((i + 1) * sy, y + 1) - max(i * sy, y)) * (min((j + 1) * sx, x + 1) - max(j * sx, x))
                    out[i, j] += weight * image[y, x]
                    total += weight
            out[i, j] /= total
    return out


def test_area_resize_matches_the_plain_reference():
    image = np.random.default_rng(1).random((12, 9, 2)).astype(np.float32)
    assert np.allclose(area_resize(image, (8, 4)), reference_area_resize(image, 8, 4), atol=1e-6)


@pytest.fixture(scope="module")
def experiment_schema():
    expand_args_fields(Experiment)
    store_root_config(Experiment)


def train_frame(cfg):
    source = ReconDataSource(**cfg.data_source_ReconDataSource_args)
    datasets, _ = source.get_datasets_and_dataloaders()
    return datasets.train[0]


def test_quick_preset_downscales_a_real_blender_scene(experiment_schema, tmp_path):
    first = write_tiny_blender_scene(tmp_path / "tiny")
    base = [f"{PROVIDER}.base_dir={tmp_path / 'tiny'}", f"exp_dir={tmp_path / 'run'}"]
    full = train_frame(compose_config("repro_singleseq_nerf_blender", base))
    quick = train_frame(compose_config("repro_singleseq_nerf_blender", ["+preset=quick"] + base))
    assert full.image_rgb.shape == (3, SIDE, SIDE)
    assert quick.image_rgb.shape == (3, 64, 64) and quick.fg_probability.shape == (1, 64, 64)
    assert quick.camera.image_size.tolist() == [[64, 64]]
    # the same camera in NDC: the field of view does not change with the resolution
    assert torch.allclose(quick.camera.focal_length, full.camera.focal_length, atol=1e-5)
    assert torch.allclose(quick.camera.principal_point, full.camera.principal_point, atol=1e-6)
    expected = reference_area_resize(first[..., :3].astype(np.float64) / 255.0, 64, 64)
    assert np.allclose(quick.image_rgb.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_image_size_keeps_smaller_images_and_rejects_nonsense(tmp_path):
    write_tiny_blender_scene(tmp_path / "tiny", side=32, n_per_split=1)
    expand_args_fields(BlenderDatasetMapProvider)
    kept = BlenderDatasetMapProvider(base_dir=str(tmp_path / "tiny"), image_size=64).get_dataset_map().train[0]
    assert kept.image_rgb.shape == (3, 32, 32)  # never upsampled
    halved = BlenderDatasetMapProvider(base_dir=str(tmp_path / "tiny"), downscale_factor=2, image_size=12)
    assert halved.get_dataset_map().train[0].image_rgb.shape == (3, 12, 12)  # 32 -> 16 -> 12
    with pytest.raises(ConfigError, match=r"^BlenderDatasetMapProvider.image_size=0: expected a number of pixels"):
        BlenderDatasetMapProvider(base_dir=str(tmp_path / "tiny"), image_size=0)
