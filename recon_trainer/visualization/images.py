"""Folders of a user's own images: listing and reading them for a model's predictions."""
from __future__ import annotations

import glob
import os
from typing import List

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError

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
