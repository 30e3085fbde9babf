"""MoGeV1Network: the MoGe-1 network (a DINOv2 backbone and the V1Head) as MoGe's `moge/model/v1.py`."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from recon_trainer.config import ConfigError

from .dinov2 import PATCH_SIZE, DinoVisionTransformer, build_backbone
from .modules import (REMAP_OUTPUTS, V1Head, check_choice, check_num_tokens_range, register_imagenet_normalisation,
                      remap_points, set_gradient_checkpointing)


class MoGeV1Network(nn.Module):
    """MoGe-1: image -> affine-invariant point map and mask.

    Constructor arguments are the keys of a released MoGe-1 `model_config` (defaults as MoGe's),
    plus `backbone_override`: DinoVisionTransformer arguments replacing those of the `encoder`
    preset (e.g. {"embed_dim": 32, "depth": 4, "num_heads": 2, "img_size": 112} for a tiny model).
    The legacy key `trained_area_range` (pixels) sets num_tokens_range to it / 14^2.

    forward(image (B, 3, H, W) in [0, 1], num_tokens) resizes the image (bicubic, antialiased) by
    sqrt(num_tokens * 14^2 / (H * W)), normalises it with the ImageNet statistics, resizes it
    (bilinear) down to multiples of 14 for the backbone, runs the head at the resized size and
    returns, resized back to H x W (bilinear), {"points": (B, H, W, 3) remapped with `remap_output`
    (see modules.remap_points), "mask": (B, H, W) raw score (MoGe thresholds it at
    `mask_threshold`)}. The post-processing runs in float32.
    """

    version = "v1"
    backbone_path = "backbone"  # prefix of the backbone's parameter names
    image_mean: torch.Tensor
    image_std: torch.Tensor

    def __init__(
        self,
        encoder: str = "dinov2_vitb14",
        intermediate_layers: Union[int, Sequence[int]] = 4,
        dim_proj: int = 512,
        dim_upsample: Sequence[int] = (256, 128, 128),
        dim_times_res_block_hidden: int = 1,
        num_res_blocks: int = 1,
        remap_output: str = "linear",
        res_block_norm: str = "group_norm",
        num_tokens_range: Sequence[int] = (1200, 2500),
        last_res_blocks: int = 0,
        last_conv_channels: int = 32,
        last_conv_size: int = 1,
        mask_threshold: float = 0.5,
        trained_area_range: Optional[Sequence[int]] = None,
        backbone_override: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        check_choice("remap_output", remap_output, REMAP_OUTPUTS)
        if trained_area_range is not None:
            num_tokens_range = [int(area) // PATCH_SIZE ** 2 for area in trained_area_range]
        if not dim_upsample:
            raise ConfigError(f"dim_upsample={dim_upsample!r}: expected at least one upsampling stage")
        self.encoder_name = encoder
        self.remap_output = remap_output
        self.intermediate_layers = intermediate_layers
        self.num_tokens_range = check_num_tokens_range(num_tokens_range)
        self.mask_threshold = float(mask_threshold)
        self.backbone: DinoVisionTransformer = build_backbone(encoder, backbone_override)
        num_features = len(self.backbone.block_indices(intermediate_layers))
        self.head = V1Head(
            num_features=num_features, dim_in=self.backbone.embed_dim, dim_out=[3, 1], dim_proj=dim_proj,
            dim_upsample=list(dim_upsample), dim_times_res_block_hidden=dim_times_res_block_hidden,
            num_res_blocks=num_res_blocks, res_block_norm=res_block_norm, last_res_blocks=last_res_blocks,
            last_conv_channels=last_conv_channels, last_conv_size=last_conv_size)
        register_imagenet_normalisation(self)

    @property
    def tapped_layers(self) -> Union[int, Sequence[int]]:
        """The backbone blocks the head reads (DINOv2's get_intermediate_layers `n`)."""
        return self.intermediate_layers

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute the backbone blocks' and the head layers' activations in the backward pass."""
        set_gradient_checkpointing(self, enabled)

    def forward(self, image: torch.Tensor, num_tokens: int) -> Dict[str, torch.Tensor]:
        height, width = image.shape[-2:]
        factor = (num_tokens * PATCH_SIZE ** 2 / (height * width)) ** 0.5
        resized_h, resized_w = int(height * factor), int(width * factor)
        if min(resized_h, resized_w) < PATCH_SIZE:
            raise ValueError(f"num_tokens={num_tokens} resizes the {height}x{width} image to {resized_h}x{resized_w}, "
                             f"smaller than one {PATCH_SIZE}-pixel patch")
        resized = F.interpolate(image, (resized_h, resized_w), mode="bicubic", align_corners=False, antialias=True)
        resized = (resized - self.image_mean) / self.image_std
        backbone_input = F.interpolate(
            resized, (resized_h // PATCH_SIZE * PATCH_SIZE, resized_w // PATCH_SIZE * PATCH_SIZE),
            mode="bilinear", align_corners=False, antialias=True)
        features = self.backbone.get_intermediate_layers(backbone_input, self.intermediate_layers,
                                                         return_class_token=True)
        points, mask = self.head(features, resized_h, resized_w)
        points, mask = (F.interpolate(x.float(), (height, width), mode="bilinear", align_corners=False)
                        for x in (points, mask))
        return {"points": remap_points(points.permute(0, 2, 3, 1), self.remap_output), "mask": mask.squeeze(1)}
