"""Predict relative depth for a folder of images and write coloured depth maps.

For a model that returns "disparity" (B, 1, H, W), the relative inverse depth of monocular
depth methods such as MiDaS, at the input resolution.
"""
from __future__ import annotations

import glob
import os
from typing import List

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError
from recon_trainer.data.frame_data import FrameData
from recon_trainer.fileio import atomic_path
from recon_trainer.models.base import EvaluationMode
from recon_trainer.visualization.video import colorize_depth, to_uint8_frames

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str) -> List[str]:
    """The image files directly in `folder` (by extension, any case), sorted."""
    if not os.path.isdir(folder):
        raise ConfigError(f"images_dir={folder!r} is not a folder")
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ConfigError(f"images_dir={folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def read_image(path: str) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1]."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


@torch.no_grad()
def predict_disparity(model: torch.nn.Module, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(H, W) relative inverse depth of one (3, H, W) image."""
    batch = FrameData(image_rgb=image[None].to(device), image_size_hw=torch.tensor([image.shape[1:]]))
    preds = model(batch, evaluation_mode=EvaluationMode.EVALUATION)
    if "disparity" not in preds:
        raise ConfigError(f"{type(model).__name__} returns no 'disparity': it is not a monocular depth model")
    return preds["disparity"][0, 0].float().cpu()


def write_depth_maps(model: torch.nn.Module, image_paths: List[str], out_dir: str, device: torch.device) -> List[str]:
    """For each image write `<stem>.png` (colour: near is warm, each image its own range) and
    `<stem>.npy` (float32 (H, W) relative inverse depth) into `out_dir`, atomically.

    Returns the PNG paths.
    """
    model.eval()
    written = []
    for path in image_paths:
        disparity = predict_disparity(model, read_image(path), device)
        stem = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0])
        # colorize_depth colours small values warm; negated disparity orders pixels near to far.
        colours = to_uint8_frames(colorize_depth(-disparity[None, None]))[0]
        with atomic_path(stem + ".png", suffix=".png") as tmp:
            Image.fromarray(colours).save(tmp, format="PNG")
        with atomic_path(stem + ".npy", suffix=".npy") as tmp:
            np.save(tmp, disparity.numpy())
        written.append(stem + ".png")
    return written
