"""The MiDaS decoder: per-level 3x3 convs to a common width, RefineNet-style fusion, disparity head.

Two variants, as the released networks have them (plugins/midas/released.py maps their weights):

- "midas_v21" (MidasNet, v2.1 large): each residual unit adds its *rectified* input,
  relu(x) + conv(relu(conv(relu(x)))) (the original's in-place ReLU overwrites x before the sum,
  and its weights were trained so); the head upsamples with align_corners=False.
- "dpt" (DPT, MiDaS v3): residual units add x itself, every fusion block ends with a 1x1 conv
  after its upsampling, and the head upsamples with align_corners=True.

The head ends in a ReLU (the disparity is non-negative). Trained from random weights, a head whose
outputs all start below zero never recovers (no gradient passes the ReLU), which happens for some
seeds with torch's default initialisation; the last conv's bias therefore starts at
OUTPUT_BIAS_INIT, so the whole map starts positive. Loaded weights replace it.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

OUTPUT_BIAS_INIT = 1.0
MIDAS_V21 = "midas_v21"
DPT = "dpt"
DECODER_VARIANTS = (MIDAS_V21, DPT)
HEAD_CHANNELS = 32  # channels before the last 1x1 conv of the head (both originals)


def _conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResidualConvUnit(torch.nn.Module):
    """Two 3x3 convs keeping the channels with a skip: (B, C, h, w) -> (B, C, h, w).

    rectified_skip=False: x + conv2(relu(conv1(relu(x)))) (DPT);
    rectified_skip=True: r + conv2(relu(conv1(r))) with r = relu(x) (MidasNet v2.1, module doc).
    """

    def __init__(self, channels: int, rectified_skip: bool = False) -> None:
        super().__init__()
        self.rectified_skip = rectified_skip
        self.conv1 = _conv3x3(channels, channels)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rectified = F.relu(x)
        skip = rectified if self.rectified_skip else x
        return skip + self.conv2(F.relu(self.conv1(rectified)))


class FeatureFusionBlock(torch.nn.Module):
    """Fuses the coarser path with this level's features, then upsamples.

    forward(path (B, C, h, w), skip (B, C, h, w) or None, size) = up(rcu2(path + rcu1(skip))),
    bilinear (align_corners=True, as both originals) to `size` (default (2h, 2w)), followed by a
    1x1 conv when `out_conv` (DPT) -> (B, C, *size).

    The coarsest block gets no skip (`with_skip=False`): up(rcu2(path)). It still holds an rcu1, as
    the originals do (their released weights include it, and the parameter counts match theirs),
    but that unit is never run and its parameters are frozen (requires_grad=False), so no training
    step waits for a gradient that never comes.
    """

    def __init__(self, channels: int, with_skip: bool = True, rectified_skip: bool = False,
                 out_conv: bool = False) -> None:
        super().__init__()
        self.with_skip = with_skip
        self.rcu1 = ResidualConvUnit(channels, rectified_skip)
        self.rcu2 = ResidualConvUnit(channels, rectified_skip)
        self.out_conv = torch.nn.Conv2d(channels, channels, kernel_size=1) if out_conv else None
        if not with_skip:
            self.rcu1.requires_grad_(False)

    def forward(self, path: torch.Tensor, skip: Optional[torch.Tensor] = None,
                size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        if skip is not None:
            if not self.with_skip:
                raise ValueError("FeatureFusionBlock: this block (the coarsest) takes no skip input")
            path = path + self.rcu1(skip)
        path = self.rcu2(path)
        size = (2 * path.shape[-2], 2 * path.shape[-1]) if size is None else tuple(size)
        path = F.interpolate(path, size=size, mode="bilinear", align_corners=True)
        return path if self.out_conv is None else self.out_conv(path)


class MidasDecoder(torch.nn.Module):
    """Four encoder maps at strides 4, 8, 16, 32 -> non-negative disparity at stride 1.

    Each level goes through a 3x3 conv (no bias) to `features` channels; fusion blocks run top-down
    (path4 = fuse4(l4) at l3's size, path3 = fuse3(path4, l3) at l2's size, ..., path1 at stride 2);
    the head is Conv3x3 features -> features / 2, bilinear x2, Conv3x3 -> 32, ReLU, Conv1x1 -> 1,
    ReLU. `variant` is one of DECODER_VARIANTS (module doc). Input maps (B, C_s, H / s, W / s) with
    H, W multiples of 32; output (B, 1, H, W). The last conv's bias starts at OUTPUT_BIAS_INIT.
    """

    def __init__(self, in_channels: Sequence[int], features: int, variant: str = MIDAS_V21) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"MidasDecoder: expected the channels of 4 encoder maps, got {list(in_channels)}")
        if variant not in DECODER_VARIANTS:
            raise ValueError(f"MidasDecoder: variant={variant!r}, expected one of {', '.join(DECODER_VARIANTS)}")
        self.variant = variant
        dpt = variant == DPT
        self.scratch = torch.nn.ModuleList([_conv3x3(c, features, bias=False) for c in in_channels])
        self.fusion = torch.nn.ModuleList(
            [
                FeatureFusionBlock(features, with_skip=level < 3, rectified_skip=not dpt, out_conv=dpt)
                for level in range(4)
            ]
        )
        half = max(features // 2, 1)
        self.head_conv = _conv3x3(features, half)
        self.head_align_corners = dpt
        output = torch.nn.Conv2d(HEAD_CHANNELS, 1, kernel_size=1)
        torch.nn.init.constant_(output.bias, OUTPUT_BIAS_INIT)
        self.head = torch.nn.Sequential(_conv3x3(half, HEAD_CHANNELS), torch.nn.ReLU(), output, torch.nn.ReLU())

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = [conv(x) for conv, x in zip(self.scratch, features)]
        path = self.fusion[3](levels[3], size=levels[2].shape[-2:])
        for level in (2, 1, 0):
            size = levels[level - 1].shape[-2:] if level > 0 else None
            path = self.fusion[level](path, levels[level], size=size)
        path = F.interpolate(self.head_conv(path), scale_factor=2, mode="bilinear",
                             align_corners=self.head_align_corners)
        return self.head(path)
