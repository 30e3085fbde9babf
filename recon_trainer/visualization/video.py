"""Turn rendered frames into mp4 videos (imageio-ffmpeg) and depth maps into colours (matplotlib),
importing both only when used."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from recon_trainer.dependencies import require
from recon_trainer.fileio import atomic_path


def colorize_depth(
    depth: torch.Tensor, mask: Optional[torch.Tensor] = None, cmap: str = "turbo", percentile: float = 2.0
) -> torch.Tensor:
    """(N, 1, H, W) depths to (N, 3, H, W) colours in [0, 1], one range for every frame.

    Near is warm, far is cool; the range runs over the `percentile`..100-`percentile` span of the
    depths where `mask` (N, 1, H, W) is over 0.5 (everywhere when None); unmasked pixels are black.
    """
    valid = torch.ones_like(depth, dtype=torch.bool) if mask is None else mask > 0.5
    values = depth[valid]
    if values.numel() == 0:
        return torch.zeros(depth.shape[0], 3, *depth.shape[2:])
    low = torch.quantile(values.float()[:1_000_000], percentile / 100.0)
    high = torch.quantile(values.float()[:1_000_000], 1.0 - percentile / 100.0)
    normalized = ((depth - low) / (high - low).clamp(min=1e-8)).clamp(0, 1)
    colors = require("matplotlib", "colouring depth maps").colormaps[cmap](1.0 - normalized[:, 0].cpu().numpy())[..., :3]
    colors = torch.from_numpy(colors).permute(0, 3, 1, 2).float()
    return colors * valid.cpu().float()


def to_uint8_frames(frames: torch.Tensor, size_hw: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """(N, C, H, W) in [0, 1] with C in {1, 3} to (N, H', W', 3) uint8, resized to `size_hw`."""
    frames = frames.detach().float().cpu()
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    if size_hw is not None and tuple(frames.shape[2:]) != tuple(size_hw):
        frames = torch.nn.functional.interpolate(frames, size=tuple(size_hw), mode="bilinear", align_corners=False)
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_video(path: str, frames: np.ndarray, fps: int = 20) -> None:
    """Write (N, H, W, 3) uint8 frames to an H.264 mp4 at `path`, atomically (temp file + rename)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_video expects (N, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2  # yuv420p needs even sizes
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    # macro_block_size=1 keeps any frame size; yuv420p plays everywhere (needs even sizes).
    with atomic_path(path, suffix=".mp4") as tmp_path:
        writer = require("imageio.v2", "writing videos", "imageio").get_writer(
            tmp_path, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1, pixelformat="yuv420p", quality=8
        )
        with writer:
            for frame in frames:
                writer.append_data(frame)


def read_video(path: str) -> np.ndarray:
    """(N, H, W, 3) uint8 frames decoded from a video file."""
    with require("imageio.v2", "reading videos", "imageio").get_reader(path, format="FFMPEG") as reader:
        return np.stack([frame for frame in reader])
