"""Reading and writing CO3D's per-frame files: JPEG images, mask PNGs, float16 depth PNGs, depth masks.

Depth PNGs are 16-bit greyscale whose uint16 values are the bit patterns of float16 numbers;
depth = float16 value * scale_adjustment. Readers return float32 tensors (C, H, W).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.providers.co3d.annotations import Co3dFormatError


def _open(path: str, what: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError as error:
        raise Co3dFormatError(f"{what} {path} not found") from error
    except OSError as error:
        raise Co3dFormatError(f"cannot read {what} {path}: {error}") from error


def load_image(path: str) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1]."""
    with _open(path, "image") as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())


def load_mask(path: str) -> torch.Tensor:
    """(1, H, W) foreground probability in [0, 1] (PNG value / 255)."""
    with _open(path, "mask") as image:
        mask = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(mask.copy())[None]


def load_depth(path: str, scale_adjustment: float) -> torch.Tensor:
    """(1, H, W) depth from a 16-bit PNG of float16 bits, times scale_adjustment; non-finite -> 0."""
    if not path.lower().endswith(".png"):
        raise Co3dFormatError(f"depth map {path}: expected a 16-bit .png file")
    with _open(path, "depth map") as image:
        bits = np.asarray(image, dtype=np.uint16)
        if bits.ndim != 2:
            raise Co3dFormatError(f"depth map {path}: expected a single-channel 16-bit PNG, got mode {image.mode}")
    depth = bits.view(np.float16).astype(np.float32) * np.float32(scale_adjustment)
    depth[~np.isfinite(depth)] = 0.0
    return torch.from_numpy(depth)[None]


def load_depth_mask(path: str) -> torch.Tensor:
    """(1, H, W) 1 where the depth-mask PNG is nonzero."""
    with _open(path, "depth mask") as image:
        mask = (np.asarray(image.convert("L")) > 0).astype(np.float32)
    return torch.from_numpy(mask)[None]


def save_image(path: str, rgb: torch.Tensor, quality: int = 95) -> None:
    """Write (H, W, 3) in [0, 1] as a JPEG."""
    pixels = (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
    Image.fromarray(pixels).save(path, quality=quality)


def save_mask(path: str, mask: torch.Tensor) -> None:
    """Write (H, W) in [0, 1] as an 8-bit PNG of mask * 255."""
    Image.fromarray((mask.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()).save(path)


def save_depth(path: str, depth: torch.Tensor, scale_adjustment: float = 1.0) -> None:
    """Write (H, W) depth as a 16-bit PNG of the float16 bits of depth / scale_adjustment."""
    bits = (depth.cpu().numpy() / scale_adjustment).astype(np.float16).view(np.uint16)
    Image.fromarray(bits).save(path)
