"""ViewSampler: the feature maps of N source views read at the projections of 3D points."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from recon_trainer.config import Configurable
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.view_losses import sample_at_ndc

SAMPLING_MODES = ("bilinear", "nearest")
MIN_DEPTH = 1e-6  # a point needs a view-space depth above this to be in front of a camera


class ViewSampler(Configurable, torch.nn.Module):
    """Projects world points into every source camera (pytorch3d NDC) and samples each feature map there.

    A sample is valid (mask 1) when the point lies in front of the camera and inside the image;
    with masked_sampling the mask is further multiplied by the source's foreground mask there.
    Invalid samples outside the image read zeros.
    """

    masked_sampling: bool = False  # also weight each sample by the source view's foreground mask at the point
    sampling_mode: str = choice_field("bilinear", SAMPLING_MODES)  # feature map interpolation: bilinear or nearest

    def __post_init__(self) -> None:
        check_choices(self)

    def forward(
        self,
        *,
        pts: torch.Tensor,
        camera: PerspectiveCameras,
        feats: Dict[str, torch.Tensor],
        masks: Optional[torch.Tensor] = None,
    ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Sample N source views at T sets of P points.

        pts: (T, P, 3) world points; camera: the N source cameras; feats: named maps (N, C_i, h_i, w_i)
        sharing one aspect ratio; masks: (N, 1, H, W) source foreground in [0, 1] (read with masked_sampling).
        Returns ({name: (T, N, P, C_i)}, mask (T, N, P, 1) in [0, 1]).
        """
        if not feats:
            raise ValueError("ViewSampler: no feature maps to sample")
        t, p = pts.shape[:2]
        n = len(camera)
        flat = pts.reshape(1, t * p, 3).expand(n, t * p, 3)
        projected = camera.transform_points_ndc(flat)  # (N, T*P, 3): NDC x, y and depth
        xy, depth = projected[..., :2], projected[..., 2:]
        valid = (depth > MIN_DEPTH) & _inside_image(xy, _largest_map_size(feats))
        mask = valid.to(pts.dtype)
        if self.masked_sampling and masks is not None:
            mask = mask * sample_at_ndc(masks, xy, self.sampling_mode)
        sampled = {name: _per_target(sample_at_ndc(f, xy, self.sampling_mode), t, p) for name, f in feats.items()}
        return sampled, _per_target(mask, t, p)


def _per_target(x: torch.Tensor, t: int, p: int) -> torch.Tensor:
    """(N, T*P, C) -> (T, N, P, C)."""
    return x.reshape(x.shape[0], t, p, x.shape[-1]).transpose(0, 1)


def _largest_map_size(feats: Dict[str, torch.Tensor]) -> Tuple[int, int]:
    """(h, w) of the highest-resolution map: its aspect ratio bounds the image in NDC most exactly."""
    return max((tuple(f.shape[-2:]) for f in feats.values()), key=lambda hw: hw[0] * hw[1])


def _inside_image(xy: torch.Tensor, size_hw: Tuple[int, int]) -> torch.Tensor:
    """(..., 1) bool: NDC xy (..., 2) within an image of size (h, w) (the short side spans [-1, 1])."""
    h, w = size_hw
    short = min(h, w)
    inside = (xy[..., 0].abs() <= w / short) & (xy[..., 1].abs() <= h / short)
    return inside[..., None]
