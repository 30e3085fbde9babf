"""Reading the image files of the depth datasets, with errors that name the file."""
from __future__ import annotations

import numpy as np
from PIL import Image

from recon_trainer.errors import DataFileError

UINT16_MODES = ("I;16", "I;16B", "I;16L", "I")


def open_image(path: str) -> Image.Image:
    """The decoded PIL image of `path` (whatever its extension; use it in a `with` block);
    DataFileError naming the file when PIL cannot read or decode it (e.g. a truncated JPEG)."""
    try:
        image = Image.open(path)
    except OSError as error:
        raise DataFileError(f"{path!r}: not an image file PIL can read ({error})") from error
    try:
        image.load()  # the pixels: truncated or corrupt data fails here, not in Image.open
    except (OSError, SyntaxError, ValueError) as error:
        image.close()
        raise DataFileError(f"{path!r}: the image cannot be decoded ({error})") from error
    return image


def read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any image file PIL reads."""
    with open_image(path) as image:
        return np.array(image.convert("RGB"))


def read_uint16_png(path: str) -> np.ndarray:
    """(H, W) float32 values of a single-channel 16-bit PNG (depth maps stored as integers)."""
    with open_image(path) as image:
        if image.mode not in UINT16_MODES:
            raise DataFileError(f"{path!r} has PIL mode {image.mode!r}, expected a single-channel 16-bit PNG")
        return np.asarray(image).astype(np.float32)
