"""Image encoder standing in for Symphonies' MaskDINO wrapper: a torchvision ResNet, a small feature
pyramid, per-level projections to the embedding, and learned instance queries with learned 2-D points.

Levels (strides 4, 8, 16, the order Symphonies uses): the raw ResNet C2 map (stride 4; 256 channels
for ResNet-50, 64 for 18/34) and the stride-8 and stride-16 outputs of a top-down pyramid over C3..C5.
In Symphonies the last two come from MaskDINO's 6-layer deformable pixel decoder (multi_scale_feats[0:2],
strides 8 and 16); here the pyramid's lateral convolutions are Conv1x1 + GroupNorm like that decoder's
input projections (so those weights can be loaded from a MaskDINO checkpoint), followed by a top-down sum
(bilinear up-sampling) and a 3x3 Conv + GroupNorm + ReLU on the two kept levels.
Each level is projected to `embed_dims` by Conv1x1-BN-ReLU-Conv1x1 (the original's `out_projs`).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recon_trainer.config import ConfigError

from .checkpoint import read_weights_file

FEATURE_STRIDES = (4, 8, 16)
RESNET_CHANNELS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512), 50: (256, 512, 1024, 2048)}
# MaskDINO's pixel decoder input projections 0, 1, 2 read res3, res4, res5 (in that order)
MASKDINO_INPUT_PROJ = "panoptic_head.pixel_decoder.input_proj."


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class FeaturePyramid(nn.Module):
    """Top-down pyramid over C3, C4, C5 returning the stride-8 and stride-16 maps.

    lateral[i]: Conv1x1 (bias) + GroupNorm on C3, C4, C5; top-down: P5 = L5, P4 = L4 + up(P5),
    P3 = L3 + up(P4) (bilinear); output[i]: Conv3x3 (no bias) + GroupNorm + ReLU on P3, P4.
    """

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([nn.Sequential(nn.Conv2d(c, channels, 1), _group_norm(channels))
                                      for c in in_channels])
        self.output = nn.ModuleList([
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), _group_norm(channels),
                          nn.ReLU(inplace=True)) for _ in range(2)])
        for block in self.lateral:
            nn.init.xavier_uniform_(block[0].weight)
            nn.init.zeros_(block[0].bias)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, C3..C5 channels, H/8.., H/16.., H/32..) -> P3 (B, ch, H/8, W/8), P4 (B, ch, H/16, W/16)."""
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[-2:], mode="bilinear", align_corners=False)
        p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[-2:], mode="bilinear", align_corners=False)
        return self.output[0](p3), self.output[1](p4)


def level_projection(in_channels: int, embed_dims: int) -> nn.Sequential:
    """Conv1x1 - BN - ReLU - Conv1x1 (Symphonies' out_projs)."""
    return nn.Sequential(nn.Conv2d(in_channels, embed_dims, 1), nn.BatchNorm2d(embed_dims), nn.ReLU(inplace=True),
                         nn.Conv2d(embed_dims, embed_dims, 1))


class SymphoniesImageEncoder(nn.Module):
    """ImageNet-normalised image -> 3 feature levels, learned queries and learned 2-D points.

    Args:
        embed_dims: C of the returned features and queries.
        num_queries: Q learned instance queries (nn.Embedding(Q, C)) and points (nn.Embedding(Q, 2), sigmoid).
        resnet_depth: 18, 34 or 50 (torchvision, weights=None).
        fpn_channels: channels of the pyramid.
        num_levels: 1..3 levels returned (the first ones of strides 4, 8, 16).
        pretrained: optional local file (see `load_pretrained`).
        norm_eval: keep the backbone's BatchNorms in eval mode and frozen (MaskDINO's norm_cfg
            requires_grad=False, norm_eval=True); default: True when `pretrained` is given.
    """

    def __init__(self, embed_dims: int, num_queries: int = 100, resnet_depth: int = 50, fpn_channels: int = 256,
                 num_levels: int = 3, pretrained: Optional[str] = None, norm_eval: Optional[bool] = None) -> None:
        super().__init__()
        import torchvision

        if resnet_depth not in RESNET_CHANNELS:
            raise ConfigError(f"resnet_depth: expected one of {sorted(RESNET_CHANNELS)}, got {resnet_depth}")
        if not 1 <= num_levels <= len(FEATURE_STRIDES):
            raise ConfigError(f"num_levels: the encoder gives 1 to {len(FEATURE_STRIDES)} levels, got {num_levels}")
        self.num_levels = num_levels
        self.strides = FEATURE_STRIDES[:num_levels]
        self.backbone = getattr(torchvision.models, f"resnet{resnet_depth}")(weights=None)
        del self.backbone.fc, self.backbone.avgpool
        channels = RESNET_CHANNELS[resnet_depth]
        self.pyramid = FeaturePyramid(channels[1:], fpn_channels)
        level_channels = (channels[0], fpn_channels, fpn_channels)[:num_levels]
        self.out_projs = nn.ModuleList([level_projection(c, embed_dims) for c in level_channels])
        self.query_embed = nn.Embedding(num_queries, embed_dims)
        self.point_embed = nn.Embedding(num_queries, 2)
        self.norm_eval = bool(pretrained) if norm_eval is None else bool(norm_eval)
        self.pretrained_report: Optional[Dict[str, Any]] = None
        if pretrained:
            self.pretrained_report = self.load_pretrained(pretrained)
        if self.norm_eval:
            for module in self.backbone_norms():
                for parameter in module.parameters():
                    parameter.requires_grad_(False)

    def backbone_norms(self) -> List[nn.BatchNorm2d]:
        return [m for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d)]

    def train(self, mode: bool = True) -> "SymphoniesImageEncoder":
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.backbone_norms():
                module.eval()
        return self

    def load_pretrained(self, path: str) -> Dict[str, Any]:
        """Load matching weights from a local file into the backbone (and the pyramid's lateral convs).

        Accepted: a torchvision ResNet state dict (`conv1.weight`, `layer1.0...`), or a MaskDINO-R50 panoptic
        checkpoint (mmdet layout, `{"state_dict": {...}}` or the bare dict, keys `backbone.*`; its pixel
        decoder's `input_proj.{0,1,2}` go to `pyramid.lateral.{0,1,2}`). Tensors whose names and shapes match
        are loaded; the rest is reported. Read with torch.load(weights_only=True).
        Returns {"loaded": [our keys], "skipped": {file key: reason}, "not_loaded": [our keys left as initialised]}.
        Raises DataFileError if the file is missing or unreadable, or nothing in it fits.
        """
        from recon_trainer.errors import DataFileError

        content = read_weights_file(path, "pretrained encoder weights")
        state = content.get("state_dict", content) if isinstance(content, Mapping) else None
        if not isinstance(state, Mapping):
            raise DataFileError(f"pretrained encoder weights {path!r}: expected a state dict, found {type(content)}")
        report = self.load_matching(state)
        if not report["loaded"]:
            raise DataFileError(f"pretrained encoder weights {path!r}: no tensor fits the ResNet backbone "
                                "(expected torchvision names such as 'conv1.weight' or 'backbone.conv1.weight')")
        return report

    def load_matching(self, state: Mapping[str, Any]) -> Dict[str, Any]:
        """Copy the tensors of `state` (torchvision or MaskDINO names) that fit; see `load_pretrained`."""
        ours = self.state_dict()
        updates: Dict[str, torch.Tensor] = {}
        skipped: Dict[str, str] = {}
        for key, value in state.items():
            target = encoder_key_for(key)
            if target is None:
                skipped[key] = "no counterpart"
            elif not isinstance(value, torch.Tensor):
                skipped[key] = f"not a tensor ({type(value).__name__})"
            elif target not in ours:
                skipped[key] = f"no counterpart ({target})"
            elif ours[target].shape != value.shape:
                skipped[key] = f"shape {tuple(value.shape)} != ours {tuple(ours[target].shape)}"
            else:
                updates[target] = value
        self.load_state_dict(updates, strict=False)
        return {"loaded": sorted(updates), "skipped": skipped,
                "not_loaded": sorted(k for k in ours if k not in updates)}

    def forward(self, image: torch.Tensor) -> Dict[str, Any]:
        """
        Args:
            image: (B, 3, H, W) ImageNet-normalised RGB.
        Returns:
            {"feats": [(B, C, ceil(H/s), ceil(W/s)) for s in strides], "queries": (B, Q, C),
             "query_points": (B, Q, 2) in (0, 1) (x, y) (sigmoid of the learned points)}.
        """
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
        c2 = net.layer1(x)
        levels = [c2]
        if self.num_levels > 1:
            c3 = net.layer2(c2)
            c4 = net.layer3(c3)
            c5 = net.layer4(c4)
            levels.extend(self.pyramid(c3, c4, c5))
        feats = [projection(level) for projection, level in zip(self.out_projs, levels)]
        batch = image.shape[0]
        return {"feats": feats,
                "queries": self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1),
                "query_points": self.point_embed.weight.sigmoid().unsqueeze(0).expand(batch, -1, -1)}


def encoder_key_for(key: str) -> Optional[str]:
    """Our encoder key for a torchvision or MaskDINO (mmdet) tensor name, or None if none corresponds."""
    if key.startswith("backbone."):
        key = key[len("backbone."):]
    elif key.startswith(MASKDINO_INPUT_PROJ):
        parts = key[len(MASKDINO_INPUT_PROJ):].split(".")
        if parts and parts[0] in ("0", "1", "2"):
            return "pyramid.lateral." + ".".join(parts)
        return None
    if key.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")):
        return "backbone." + key
    return None
