"""Pixel-centre NDC coordinates of an image, whole or sampled in proportion to a mask.

The grid follows pytorch3d's NDC convention (recon_trainer/data/cameras.py): the shorter image
side spans [-1, 1], the longer [-s, s] with s = long / short; +x points left and +y up, so the
top-left pixel (row 0, column 0) has the largest x and y. Each entry is a pixel centre, half a
pixel in from the border.
"""
import torch

Device = str | torch.device


def ndc_pixel_centers(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: Device | None = None
) -> torch.Tensor:
    """(H, W, 2) NDC x, y of every pixel centre; entry [row, column]."""
    short = min(height, width)
    range_x, range_y = width / short, height / short
    half_x, half_y = range_x / width, range_y / height
    x = torch.linspace(range_x - half_x, -range_x + half_x, width, dtype=dtype, device=device)
    y = torch.linspace(range_y - half_y, -range_y + half_y, height, dtype=dtype, device=device)
    grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def sample_pixel_indices(weights: torch.Tensor, n_samples: int) -> torch.Tensor:
    """(B, n_samples) flat pixel indices drawn with probability proportional to weights (B, H * W).

    Draws without replacement when every image has at least n_samples pixels of positive weight,
    otherwise with replacement. An image whose weights are all zero is sampled uniformly. Uses
    torch's global random generator.
    """
    weights = weights.clamp(min=0.0)
    empty = weights.sum(dim=-1) <= 0
    if empty.any():
        weights = torch.where(empty[:, None], torch.ones_like(weights), weights)
    replacement = bool(((weights > 0).sum(dim=-1) < n_samples).any())
    return torch.multinomial(weights, n_samples, replacement=replacement)


def sample_ndc_from_mask(
    mask: torch.Tensor | None,
    n_samples: int,
    height: int,
    width: int,
    batch_size: int,
    device: Device | None = None,
) -> torch.Tensor:
    """(B, n_samples, 2) NDC pixel centres of an H x W grid sampled in proportion to `mask`.

    mask: (B, 1, H', W') non-negative sampling weights at any resolution (resized to H x W with
    nearest-neighbour interpolation), or None for uniform sampling.
    """
    if mask is None:
        weights = torch.ones(batch_size, height * width, device=device)
    else:
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != batch_size:
            raise ValueError(f"The sampling mask must be (B={batch_size}, 1, H, W), got {tuple(mask.shape)}")
        resized = torch.nn.functional.interpolate(mask.float(), size=(height, width), mode="nearest")
        weights = resized.reshape(batch_size, height * width)
    indices = sample_pixel_indices(weights, n_samples)
    grid = ndc_pixel_centers(height, width, device=weights.device).reshape(height * width, 2)
    return grid[indices]
