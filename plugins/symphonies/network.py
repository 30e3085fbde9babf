"""`SymphoniesNetwork`: image encoder + Symphonies decoder, one sample per forward (as the original)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from recon_trainer.config import ConfigError

from .decoder import SymphoniesDecoder
from .encoder import SymphoniesImageEncoder


class SymphoniesNetwork(nn.Module):
    """Semantic scene completion from one image and its depth.

    Args:
        embed_dims: C. num_classes: classes of the logits.
        scene_shape: target grid (X, Y, Z). project_scale: 1 | 2 (decoder grid = target // project_scale).
        image_shape: (H, W) of the input image and depth.
        downsample_z: extra z reduction of the decoder grid (KITTI: 2).
        num_layers, num_heads, num_points, num_levels, num_queries: transformer sizes (original: 3, 8, 4, 3, 100).
        scene_pos_shape / scene_pos_squeeze: positional-encoding factorisation; default: the decoder grid with
            squeeze (1, 1, 1). Symphonies' KITTI: (128, 128, 2) / (2, 2, 1).
        resnet_depth: 50 (MaskDINO's) | 18 | 34. fpn_channels: pyramid channels (256 as MaskDINO).
        encoder_weights_path: optional local torchvision-ResNet / MaskDINO-R50 weights for the encoder
            (see SymphoniesImageEncoder.load_pretrained; the report is `pretrained_report`).
        norm_eval: freeze the backbone BatchNorms (default: when encoder_weights_path is given).
        dropout: deformable attentions' output dropout (0.1 as mmcv).
    """

    def __init__(self, embed_dims: int, num_classes: int, scene_shape: Sequence[int], project_scale: int,
                 image_shape: Sequence[int], downsample_z: int = 1, num_layers: int = 3, num_heads: int = 8,
                 num_points: int = 4, num_levels: int = 3, num_queries: int = 100,
                 scene_pos_shape: Optional[Sequence[int]] = None, scene_pos_squeeze: Optional[Sequence[int]] = None,
                 resnet_depth: int = 50, fpn_channels: int = 256, encoder_weights_path: Optional[str] = None,
                 norm_eval: Optional[bool] = None, dropout: float = 0.1, decoder_fp32: bool = True) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ConfigError(f"embed_dims: {embed_dims} must be divisible by num_heads {num_heads}")
        self.encoder = SymphoniesImageEncoder(embed_dims, num_queries, resnet_depth, fpn_channels, num_levels,
                                              encoder_weights_path, norm_eval)
        self.decoder = SymphoniesDecoder(embed_dims, num_classes, scene_shape, project_scale, image_shape,
                                         downsample_z, num_layers, num_heads, num_levels, num_points,
                                         scene_pos_shape, scene_pos_squeeze, dropout, full_precision=decoder_fp32)

    @property
    def pretrained_report(self) -> Optional[Dict[str, Any]]:
        """What `encoder_weights_path` loaded ({"loaded", "skipped", "not_loaded"}), or None."""
        return self.encoder.pretrained_report

    def forward(self, image: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor,
                world_to_camera: torch.Tensor, voxel_origin: torch.Tensor, voxel_size: torch.Tensor,
                projected_pix: torch.Tensor, fov_mask: torch.Tensor) -> List[torch.Tensor]:
        """
        Args:
            image: (1, 3, H, W) ImageNet-normalised RGB. depth: (1, H, W) metres.
            intrinsics: (1, 3, 3) pixels, records' convention (pixel centres at u + 0.5).
            world_to_camera: (1, 4, 4). voxel_origin: (1, 3) metres. voxel_size: (1, 3) metres per target voxel.
            projected_pix: (1, N, 2) int64 (u, v) of the projection-grid voxels (target // project_scale).
            fov_mask: (1, N) bool.
        Returns:
            list of logits (1, num_classes, X, Y, Z): one per layer in training, the last only in eval.
        """
        if image.shape[0] != 1:
            raise ValueError(f"SymphoniesNetwork takes one sample per forward (got a batch of {image.shape[0]})")
        encoded = self.encoder(image)
        return self.decoder(encoded["queries"], encoded["query_points"], encoded["feats"], depth, intrinsics,
                            world_to_camera, voxel_origin, voxel_size, projected_pix, fov_mask)
