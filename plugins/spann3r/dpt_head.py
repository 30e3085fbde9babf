"""DUSt3R's prediction heads: the linear head (pixel shuffle) and the DPT head.

Both map decoder tokens to a raw (B, 3 + 1, H, W) map (xyz, confidence before activation); the
network's post-processing turns it into points and confidences. Parameter names follow the
original (dust3r/heads/linear_head.py, dust3r/heads/dpt_head.py and croco/models/dpt_block.py): the
DPT head keeps the original's duplicate `scratch.layerN_rn` / `scratch.layer_rn.N` entries (the same
convolutions, reachable under both names) so that released state dicts load strictly.

DPT layout, as DUSt3R's create_dpt_head derives it from the network: hooks [0, L/2, 3L/4, L] (L =
dec_depth, integer division as the original's l2*2//4, l2*3//4) into the decoder outputs, whose
entry 0 is the encoder output (width enc_dim) and the others have width dec_dim; the hooked maps are
resampled to 4x, 2x, 1x and 1/2x the patch grid (layer_dims channels), fused at feature_dim channels
and upsampled twice more, so that the output is 16x the patch grid: the DPT head needs patch 16.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def dpt_hooks(dec_depth: int) -> List[int]:
    """The decoder outputs the DPT head reads (indices into the dec_depth + 1 decoder outputs)."""
    return [0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth]


class LinearHead(nn.Module):
    """A Linear(dec_dim, 4 p^2) per token, pixel-shuffled into a p x p patch."""

    def __init__(self, dec_dim: int, patch_size: int, out_channels: int = 4) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(dec_dim, out_channels * patch_size ** 2)

    def forward(self, tokens: Sequence[torch.Tensor], image_size: Tuple[int, int]) -> torch.Tensor:
        """tokens: the decoder outputs (the last one, (B, P, dec_dim), is used); image_size (H, W) in
        pixels with P = (H/p)(W/p) -> (B, out_channels, H, W)."""
        height, width = image_size
        features = self.proj(tokens[-1])
        batch = features.shape[0]
        grid = features.transpose(-1, -2).reshape(batch, -1, height // self.patch_size, width // self.patch_size)
        return F.pixel_shuffle(grid, self.patch_size)


def _conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(features, features)
        self.conv2 = _conv3x3(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, h, w) -> (B, F, h, w)."""
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """Add the residual-refined skip map, refine, upsample 2x (bilinear, align_corners) and project (out_conv)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, F, h, w), optional skip (B, F, h, w) -> (B, F, 2h, 2w)."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = F.interpolate(self.resConfUnit2(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class _Scratch(nn.Module):
    """Per-level 3x3 projections to feature_dim (layer1_rn..layer4_rn, also listed as layer_rn) and
    the four fusion blocks."""

    def __init__(self, layer_dims: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        projections = [_conv3x3(dim, feature_dim, bias=False) for dim in layer_dims]
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = projections
        self.layer_rn = nn.ModuleList(projections)
        self.refinenet1, self.refinenet2, self.refinenet3, self.refinenet4 = (
            FeatureFusionBlock(feature_dim) for _ in range(4))


def _resampler(in_dim: int, out_dim: int, level: int) -> nn.Sequential:
    """1x1 projection then level 0: 4x up, 1: 2x up, 2: none, 3: 2x down."""
    layers: List[nn.Module] = [nn.Conv2d(in_dim, out_dim, kernel_size=1)]
    if level < 2:
        factor = 4 if level == 0 else 2
        layers.append(nn.ConvTranspose2d(out_dim, out_dim, kernel_size=factor, stride=factor))
    elif level == 3:
        layers.append(nn.Conv2d(out_dim, out_dim, kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


class DPTAdapter(nn.Module):
    """The original's DPTOutputAdapter_fix (regression head): act_postprocess, scratch, head."""

    def __init__(self, token_dims: Sequence[int], hooks: Sequence[int], patch_size: int,
                 layer_dims: Sequence[int], feature_dim: int, out_channels: int = 4) -> None:
        super().__init__()
        self.hooks = list(hooks)
        self.patch_size = patch_size
        self.scratch = _Scratch(layer_dims, feature_dim)
        # refinenet4 gets no skip map: its resConfUnit1 exists (released weights hold it) but never runs
        self.scratch.refinenet4.resConfUnit1.requires_grad_(False)
        last_dim = feature_dim // 2
        self.head = nn.Sequential(
            _conv3x3(feature_dim, feature_dim // 2),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            _conv3x3(feature_dim // 2, last_dim),
            nn.ReLU(),
            nn.Conv2d(last_dim, out_channels, kernel_size=1))
        self.act_postprocess = nn.ModuleList(
            _resampler(token_dim, layer_dim, level)
            for level, (token_dim, layer_dim) in enumerate(zip(token_dims, layer_dims)))

    def forward(self, tokens: Sequence[torch.Tensor], image_size: Tuple[int, int]) -> torch.Tensor:
        """tokens: the dec_depth + 1 decoder outputs (B, P, C_i); image_size (H, W) in pixels ->
        (B, out_channels, H, W)."""
        rows, cols = image_size[0] // self.patch_size, image_size[1] // self.patch_size
        maps = []
        for level, hook in enumerate(self.hooks):
            grid = tokens[hook].transpose(1, 2).unflatten(2, (rows, cols))
            maps.append(self.scratch.layer_rn[level](self.act_postprocess[level](grid)))
        path = self.scratch.refinenet4(maps[3])[:, :, :maps[2].shape[2], :maps[2].shape[3]]
        path = self.scratch.refinenet3(path, maps[2])
        path = self.scratch.refinenet2(path, maps[1])
        path = self.scratch.refinenet1(path, maps[0])
        return self.head(path)


class DPTHead(nn.Module):
    """DUSt3R's PixelwiseTaskWithDPT: holds the adapter as `dpt` (the state-dict prefix)."""

    def __init__(self, enc_dim: int, dec_dim: int, dec_depth: int, patch_size: int, layer_dims: Sequence[int],
                 feature_dim: int, out_channels: int = 4) -> None:
        super().__init__()
        self.dpt = DPTAdapter([enc_dim, dec_dim, dec_dim, dec_dim], dpt_hooks(dec_depth), patch_size,
                              layer_dims, feature_dim, out_channels)

    def forward(self, tokens: Sequence[torch.Tensor], image_size: Tuple[int, int]) -> torch.Tensor:
        """tokens: the dec_depth + 1 decoder outputs; image_size (H, W) -> (B, out_channels, H, W)."""
        return self.dpt(tokens, image_size)
