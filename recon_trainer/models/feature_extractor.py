"""The image-feature-extractor slot: per-pixel features of the source views for view pooling.

Implementation: ResNetFeatureExtractor (resnet_feature_extractor.py). GenericModel's
`image_feature_extractor_class_type` defaults to None (no view pooling).
"""

from __future__ import annotations

import abc
from typing import Dict, Optional

import torch

from recon_trainer.config import ReplaceableBase


class FeatureExtractorBase(ReplaceableBase, torch.nn.Module):
    """Feature maps of a batch of images, consumed by a view pooler."""

    @abc.abstractmethod
    def get_feat_dims(self) -> int:
        """Total channels of the returned feature maps."""

    @abc.abstractmethod
    def forward(self, imgs: torch.Tensor, masks: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """imgs (B, 3, H, W), masks (B, 1, H, W) -> named feature maps (B, C_i, H_i, W_i)."""
