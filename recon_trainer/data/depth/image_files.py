"""Reading the image files of the depth datasets, with errors that name the file."""
from __future__ import annotations

import numpy as np
from PIL import Image

UINT16_MODES = ("I;16", "I;16B", "I;16L", "I")


def open_image(path: str) -> Image.Image:
    """PIL image of `path` (whatever its extension); ValueError naming the file if PIL cannot read it."""
    try:
        return Image.open(path)
    except OSError as error:
        raise ValueError(f"{path!r}: not an image file PIL can read ({error})") from error


def read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any image file PIL reads."""
    with open_image(path) as image:
        return np.array(image.convert("RGB"))


def read_uint16_png(path: str) -> np.ndarray:
    """(H, W) float32 values of a single-channel 16-bit PNG (depth maps stored as integers)."""
    with open_image(path) as image:
        if image.mode not in UINT16_MODES:
            raise ValueError(f"{path!r} has PIL mode {image.mode!r}, expected a single-channel 16-bit PNG")
        return np.asarray(image).astype(np.float32)
