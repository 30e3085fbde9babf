"""The MiDaS decoder: per-level 3x3 convs to a common width, RefineNet-style fusion, disparity head.

The head ends in a ReLU (the disparity is non-negative). Trained from random weights, a head whose
outputs all start below zero never recovers (no gradient passes the ReLU), which happens for some
seeds with torch's default initialisation; the last conv's bias therefore starts at
OUTPUT_BIAS_INIT, so the whole map starts positive. Loaded weights replace it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

OUTPUT_BIAS_INIT = 1.0


def _conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResidualConvUnit(torch.nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convs keeping the channels: (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(torch.nn.Module):
    """Fuses the coarser path with this level's features, then doubles the resolution.

    forward(path (B, C, h, w), skip (B, C, h, w)) = up2(rcu2(path + rcu1(skip))), with bilinear x2
    upsampling (align_corners=True, as MiDaS) -> (B, C, 2h, 2w). The coarsest block has no skip
    (`with_skip=False`): up2(rcu2(path)), and no rcu1 (a parameter without a gradient would stall
    distributed training).
    """

    def __init__(self, channels: int, with_skip: bool = True) -> None:
        super().__init__()
        self.rcu1 = ResidualConvUnit(channels) if with_skip else None
        self.rcu2 = ResidualConvUnit(channels)

    def forward(self, path: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if skip is not None:
            path = path + self.rcu1(skip)
        return F.interpolate(self.rcu2(path), scale_factor=2, mode="bilinear", align_corners=True)


class MidasDecoder(torch.nn.Module):
    """Four encoder maps at strides 4, 8, 16, 32 -> non-negative disparity at stride 1.

    Each level goes through a 3x3 conv (no bias) to `features` channels; fusion blocks run top-down
    (path4 = fuse4(l4), path3 = fuse3(path4, l3), ..., path1 at stride 2); the head is
    Conv3x3 features -> features / 2, bilinear x2, Conv3x3 -> 32, ReLU, Conv1x1 -> 1, ReLU.
    Input maps (B, C_s, H / s, W / s) with H, W multiples of 32; output (B, 1, H, W).
    The last conv's bias starts at OUTPUT_BIAS_INIT (module doc).
    """

    def __init__(self, in_channels: Sequence[int], features: int) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"MidasDecoder: expected the channels of 4 encoder maps, got {list(in_channels)}")
        self.scratch = torch.nn.ModuleList([_conv3x3(c, features, bias=False) for c in in_channels])
        self.fusion = torch.nn.ModuleList([FeatureFusionBlock(features, with_skip=level < 3) for level in range(4)])
        half = max(features // 2, 1)
        self.head_conv = _conv3x3(features, half)
        output = torch.nn.Conv2d(32, 1, kernel_size=1)
        torch.nn.init.constant_(output.bias, OUTPUT_BIAS_INIT)
        self.head = torch.nn.Sequential(_conv3x3(half, 32), torch.nn.ReLU(), output, torch.nn.ReLU())

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = [conv(x) for conv, x in zip(self.scratch, features)]
        path = self.fusion[3](levels[3])
        for level in (2, 1, 0):
            path = self.fusion[level](path, levels[level])
        path = F.interpolate(self.head_conv(path), scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(path)
