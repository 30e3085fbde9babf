"""The MiDaS input transform as pure functions: target size, resize, normalise, and back.

The network sees the image resized (aspect ratio kept) to sides that are multiples of 32 and
standardised with the encoder's mean and std; its disparity is resized back to the input (H, W).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

UPPER_BOUND = "upper_bound"  # the largest size that fits inside net_size x net_size
LOWER_BOUND = "lower_bound"  # the smallest size that covers net_size x net_size
MINIMAL = "minimal"  # the scale of the side that changes least
RESIZE_METHODS = (UPPER_BOUND, LOWER_BOUND, MINIMAL)
SIZE_MULTIPLE = 32  # the encoders' coarsest stride


def _to_multiple(value: float, multiple: int, low: float, high: float) -> int:
    """`value` rounded to a multiple of `multiple` (half to even), floored when that exceeds
    `high`, ceiled when it falls below `low`; at least `multiple`."""
    out = round(value / multiple) * multiple
    if out > high:
        out = math.floor(value / multiple) * multiple
    if out < low:
        out = math.ceil(value / multiple) * multiple
    return max(int(out), multiple)


def target_size(
    height: int, width: int, net_size: int, method: str, multiple: int = SIZE_MULTIPLE
) -> Tuple[int, int]:
    """(h, w) the network sees for an image of `height` x `width` pixels.

    Both sides get one scale (the aspect ratio is kept): the smaller of net_size / height and
    net_size / width for "upper_bound" (the result fits inside net_size), the larger for
    "lower_bound" (it covers net_size), the one closer to 1 for "minimal". Each scaled side is
    then rounded to a multiple of `multiple`, without leaving the bound it must respect.
    E.g. 480 x 640, net_size 384: upper_bound (288, 384), lower_bound (384, 512), minimal (384, 512).
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"target_size: method={method!r}, expected one of {', '.join(RESIZE_METHODS)}")
    if height < 1 or width < 1 or net_size < 1:
        raise ValueError(f"target_size: expected positive sizes, got {height} x {width}, net_size={net_size}")
    scale_h, scale_w = net_size / height, net_size / width
    if method == UPPER_BOUND:
        scale = min(scale_h, scale_w)
    elif method == LOWER_BOUND:
        scale = max(scale_h, scale_w)
    else:
        scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
    low = net_size if method == LOWER_BOUND else 0
    high = net_size if method == UPPER_BOUND else math.inf
    return (
        _to_multiple(scale * height, multiple, low, high),
        _to_multiple(scale * width, multiple, low, high),
    )


def resize_image(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size), bilinear, antialiased when either side shrinks.

    Used both ways: the image to the network's size, and the network's disparity back to the
    input's (H, W) (the filter weights are >= 0, so a non-negative map stays non-negative).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == size:
        return image
    shrinks = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


def normalize_image(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (image - mean) / std per channel."""
    mean_t = image.new_tensor(mean).view(1, -1, 1, 1)
    std_t = image.new_tensor(std).view(1, -1, 1, 1)
    return (image - mean_t) / std_t

