"""Feature aggregators: per-source-view samples of T targets' points combined into per-point features.

Inputs (from ViewSampler): feature dict {name: (T, N, P, C_i)}, sample mask (T, N, P, 1), the points
(T, P, 3) and the N source cameras, of which the first T are the targets' own views (target t is
source t). Reducing aggregators return (T, P, D); identity aggregators (T, P, N, D), views on dim -2.
"""

from __future__ import annotations

import abc
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

from recon_trainer.config import ConfigError, ReplaceableBase, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.cameras import PerspectiveCameras

REDUCTION_FUNCTIONS = ("AVG", "MAX", "STD", "STD_AVG")
WEIGHT_EPS = 1e-8  # floor of the summed view weights (points seen by no view get zeros)
VAR_EPS = 1e-8  # floor of the variance under the square root of STD

Aggregated = Union[torch.Tensor, Dict[str, torch.Tensor]]


class FeatureAggregatorBase(ReplaceableBase, torch.nn.Module):
    """Combines the samples of the source views at each point (see the module docstring for shapes)."""

    exclude_target_view: bool = True  # give target t's own view (source t) zero weight
    exclude_target_view_mask_features: bool = True  # zero the sampled features of target t's own view
    concatenate_output: bool = True  # one tensor over all feature maps (False: a dict keyed by map name)

    @abc.abstractmethod
    def get_aggregated_feature_dim(self, feat_dim: int) -> int:
        """Output channels (per view for identity aggregators) for feat_dim input channels in total."""

    @abc.abstractmethod
    def _aggregate(self, feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """feats (T, N, P, C) and view weights (T, N, P, 1) -> (T, P, D) or (T, P, N, D)."""

    def _view_weights(
        self, masks: torch.Tensor, pts: torch.Tensor, camera: PerspectiveCameras
    ) -> torch.Tensor:
        """(T, N, P, 1) weight of each sample: the sampler's mask (angle-weighted variants override)."""
        return masks

    def forward(
        self,
        *,
        feats_sampled: Dict[str, torch.Tensor],
        masks_sampled: torch.Tensor,
        pts: torch.Tensor,
        camera: PerspectiveCameras,
    ) -> Aggregated:
        """Aggregate the samples: a tensor, or {name: tensor} when concatenate_output is False."""
        t, n = masks_sampled.shape[:2]
        if n < t:
            raise ValueError(f"{type(self).__name__}: {t} targets but {n} source views; target t must be source t")
        own_view = 1.0 - torch.eye(t, n, dtype=masks_sampled.dtype, device=masks_sampled.device)[..., None, None]
        if self.exclude_target_view_mask_features:
            feats_sampled = {name: f * own_view for name, f in feats_sampled.items()}
        weights = self._view_weights(masks_sampled, pts, camera)
        if self.exclude_target_view:
            weights = weights * own_view
        if self.concatenate_output:
            return self._aggregate(torch.cat(list(feats_sampled.values()), dim=-1), weights)
        return {name: self._aggregate(f, weights) for name, f in feats_sampled.items()}


class _IdentityMixin:
    """Every view's features kept (multiplied by the view weight, so invalid views read zeros)."""

    def get_aggregated_feature_dim(self, feat_dim: int) -> int:
        return feat_dim

    def _aggregate(self, feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (feats * weights).transpose(1, 2)


class _ReductionMixin:
    """Weighted reductions over the views, concatenated in the order of `reduction_functions`."""

    def _check_reductions(self) -> None:
        check_choices(self)
        if not self.reduction_functions:
            raise ConfigError(
                f"{type(self).__name__}.reduction_functions is empty: expected a list of {', '.join(REDUCTION_FUNCTIONS)}"
            )

    def get_aggregated_feature_dim(self, feat_dim: int) -> int:
        return sum(1 if f == "STD_AVG" else feat_dim for f in self.reduction_functions)

    def _aggregate(self, feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.cat(weighted_reductions(feats, weights, self.reduction_functions), dim=-1)


class _AngleWeightedMixin:
    """Weights each view by the angle between the target's ray and the source's ray to the point
    (fields `weight_by_ray_angle_gamma`, `min_ray_angle_weight`)."""

    def _check_angle_fields(self) -> None:
        if self.weight_by_ray_angle_gamma < 0 or not 0.0 <= self.min_ray_angle_weight <= 1.0:
            raise ConfigError(
                f"{type(self).__name__}: weight_by_ray_angle_gamma={self.weight_by_ray_angle_gamma} must be >= 0 and "
                f"min_ray_angle_weight={self.min_ray_angle_weight} in [0, 1]"
            )

    def _view_weights(self, masks: torch.Tensor, pts: torch.Tensor, camera: PerspectiveCameras) -> torch.Tensor:
        angle = ray_angle_weights(pts, camera, self.weight_by_ray_angle_gamma, self.min_ray_angle_weight)
        return masks * angle


@registry.register
class IdentityFeatureAggregator(_IdentityMixin, FeatureAggregatorBase):
    """Returns (T, P, N, C): every source view's samples (zero where invalid or excluded)."""


@registry.register
class ReductionFeatureAggregator(_ReductionMixin, FeatureAggregatorBase):
    """Returns (T, P, D): mask-weighted reductions (AVG, MAX, STD, STD_AVG) over the source views."""

    # any of AVG, MAX, STD, STD_AVG (mean of the STDs)
    reduction_functions: Tuple[str, ...] = choice_field(("AVG", "STD"), REDUCTION_FUNCTIONS)

    def __post_init__(self) -> None:
        self._check_reductions()


@registry.register
class AngleWeightedReductionFeatureAggregator(_AngleWeightedMixin, _ReductionMixin, FeatureAggregatorBase):
    """Returns (T, P, D): reductions over the views weighted by mask x ray-angle weight."""

    # any of AVG, MAX, STD, STD_AVG (mean of the STDs)
    reduction_functions: Tuple[str, ...] = choice_field(("AVG", "STD"), REDUCTION_FUNCTIONS)
    weight_by_ray_angle_gamma: float = 1.0  # weight = ((1 + cos angle) / 2) ** gamma; 0 disables the weighting
    min_ray_angle_weight: float = 0.1  # the weight is clamped to [this, 1]

    def __post_init__(self) -> None:
        self._check_reductions()
        self._check_angle_fields()


@registry.register
class AngleWeightedIdentityFeatureAggregator(_AngleWeightedMixin, _IdentityMixin, FeatureAggregatorBase):
    """Returns (T, P, N, C): every view's samples multiplied by mask x ray-angle weight."""

    weight_by_ray_angle_gamma: float = 1.0  # weight = ((1 + cos angle) / 2) ** gamma; 0 disables the weighting
    min_ray_angle_weight: float = 0.1  # the weight is clamped to [this, 1]

    def __post_init__(self) -> None:
        self._check_angle_fields()


def ray_angle_weights(
    pts: torch.Tensor, camera: PerspectiveCameras, gamma: float, min_weight: float
) -> torch.Tensor:
    """(T, N, P, 1) clamp(((1 + cos a) / 2) ** gamma, min_weight, 1), a the angle at each point (T, P, 3)
    between the ray from target t's camera (source t) and the ray from source n's camera."""
    centres = camera.get_camera_center()  # (N, 3)
    t = pts.shape[0]
    source_rays = torch.nn.functional.normalize(pts[:, None] - centres[None, :, None], dim=-1)  # (T, N, P, 3)
    target_rays = torch.nn.functional.normalize(pts - centres[:t, None], dim=-1)  # (T, P, 3)
    cos = (source_rays * target_rays[:, None]).sum(-1, keepdim=True)
    return ((0.5 + 0.5 * cos).clamp(min=0.0) ** gamma).clamp(min_weight, 1.0)


def weighted_reductions(
    feats: torch.Tensor, weights: torch.Tensor, functions: Sequence[str]
) -> Tuple[torch.Tensor, ...]:
    """Reductions of feats (T, N, P, C) over the N views with weights (T, N, P, 1), each (T, P, C or 1).

    AVG: weighted mean; STD: sqrt of the weighted variance; STD_AVG: the mean of STD over channels;
    MAX: the maximum over the views of positive weight. Points no view sees get zeros.
    """
    weight_sum = weights.sum(1).clamp(min=WEIGHT_EPS)
    mean = (feats * weights).sum(1) / weight_sum
    std: Optional[torch.Tensor] = None
    out = []
    for function in functions:
        if function == "AVG":
            out.append(mean)
        elif function == "MAX":
            seen = weights > 0
            masked = feats.masked_fill(~seen, float("-inf")).max(1).values
            out.append(torch.where(seen.any(1), masked, torch.zeros_like(masked)))
        else:
            if std is None:
                var = (weights * (feats - mean[:, None]) ** 2).sum(1) / weight_sum
                std = var.clamp(min=VAR_EPS).sqrt()
            out.append(std if function == "STD" else std.mean(-1, keepdim=True))
    return tuple(out)
