"""Visualisations as PNG files: exp_dir/vis/step_<8 digits>/<name>.png."""
import os
from typing import Mapping

import torch
from PIL import Image

from recon_trainer.fileio import atomic_path
from recon_trainer.training.loggers.base import MetricLogger, image_file_stem, to_uint8_image

VIS_FOLDER = "vis"


def vis_step_folder(exp_dir: str, step: int) -> str:
    """exp_dir/vis/step_<step, 8 digits>."""
    return os.path.join(exp_dir, VIS_FOLDER, f"step_{step:08d}")


class ImageFolderLogger(MetricLogger):
    """Writes each image of `log_images` to a PNG file, atomically (temporary file and rename)."""

    def __init__(self, exp_dir: str) -> None:
        self.exp_dir = exp_dir

    def log_images(self, step: int, images: Mapping[str, torch.Tensor]) -> None:
        folder = vis_step_folder(self.exp_dir, step)
        for name, image in images.items():
            path = os.path.join(folder, image_file_stem(name) + ".png")
            with atomic_path(path, suffix=".png") as tmp:
                Image.fromarray(to_uint8_image(image, name)).save(tmp, format="PNG")
