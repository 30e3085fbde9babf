"""ViewPooler: source-view features at 3D points, sampled (ViewSampler) and aggregated over the views."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from recon_trainer.config import ConfigError, Configurable, run_auto_creation
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.view_pooling.feature_aggregator import FeatureAggregatorBase
from recon_trainer.models.view_pooling.view_sampler import ViewSampler


class ViewPooler(Configurable, torch.nn.Module):
    """Pools the N source views' feature maps at the points of T targets (target t is source t).

    Reducing aggregators give (T, *S, D) per point, identity aggregators (T, *S, N, D) with the
    source views on dim -2; D = get_aggregated_feature_dim(total feature channels).
    """

    view_sampler: ViewSampler
    feature_aggregator: FeatureAggregatorBase
    feature_aggregator_class_type: str = "AngleWeightedReductionFeatureAggregator"

    def __post_init__(self) -> None:
        run_auto_creation(self)
        if not self.feature_aggregator.concatenate_output:
            raise ConfigError(
                f"ViewPooler.feature_aggregator_{self.feature_aggregator_class_type}_args.concatenate_output=False: "
                "the pooled features feed an implicit function as one tensor; set it to true"
            )

    def get_aggregated_feature_dim(self, feat_dim: int) -> int:
        """Channels per point (per point and view for identity aggregators) for feat_dim input channels."""
        return self.feature_aggregator.get_aggregated_feature_dim(feat_dim)

    def forward(
        self,
        *,
        pts: torch.Tensor,
        camera: PerspectiveCameras,
        feats: Dict[str, torch.Tensor],
        masks: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """pts (T, *S, 3) world points; camera: N >= T source cameras; feats {name: (N, C_i, h_i, w_i)};
        masks (N, 1, H, W) source foreground -> (T, *S, D) or (T, *S, N, D)."""
        t, spatial = pts.shape[0], pts.shape[1:-1]
        flat = pts.reshape(t, -1, 3)
        sampled, sample_masks = self.view_sampler(pts=flat, camera=camera, feats=feats, masks=masks)
        pooled = self.feature_aggregator(feats_sampled=sampled, masks_sampled=sample_masks, pts=flat, camera=camera)
        return pooled.reshape(t, *spatial, *pooled.shape[2:])
