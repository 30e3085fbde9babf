"""Predict relative depth for a user's images and write coloured depth maps (recon_visualizer
images_dir=...): MidasModel's `write_image_predictions`."""
from __future__ import annotations

import os
from typing import List

import numpy as np
import torch
from PIL import Image

from recon_trainer.fileio import atomic_path
from recon_trainer.models.base import EvaluationMode
from recon_trainer.visualization.images import read_image
from recon_trainer.visualization.video import colorize_depth, to_uint8_frames

from .batch import DepthBatch


@torch.no_grad()
def predict_disparity(model: torch.nn.Module, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(H, W) relative inverse depth of one (3, H, W) image in [0, 1]."""
    batch = DepthBatch(image_rgb=image[None].to(device))
    return model(batch, evaluation_mode=EvaluationMode.EVALUATION)["disparity"][0, 0].float().cpu()


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
