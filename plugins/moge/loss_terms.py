"""Applying MoGe's loss terms to a batch: which predictions and targets each loss function takes.

MoGe's train.py calls every term of a sample's label type on that sample alone. `group_terms`
gives the same values with one call per term for all the samples of a label type, for the terms
whose functions reduce per sample (the global, local, mask and metric-scale losses); the normal,
edge and normal-map losses average over everything they are given, so they still run per sample.
The local loss draws its patches from torch's generator: batched, the draws differ from a
per-sample run (the same distribution). `sample_terms` is the plain per-sample reference.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .batch import MoGeBatch
from .losses import LOSS_FUNCTIONS

PER_SAMPLE = ("normal_loss", "edge_loss", "normal_map_loss")  # functions averaging over the whole input


@dataclasses.dataclass
class LossTargets:
    """What the loss functions compare the predictions with, for B samples.

    points: (B, H, W, 3) ground-truth points (non-finite where the depth is unknown or sky).
    focal: (B,) focal length relative to the half image diagonal, 1 / sqrt(1 / fx² + 1 / fy²).
    mask_fin, mask_inf: (B, H, W) bool positives / negatives of the mask losses.
    is_metric: (B,) bool. normal: (B, H, W, 3) or None. has_normal: B flags.
    """

    points: torch.Tensor
    focal: torch.Tensor
    mask_fin: torch.Tensor
    mask_inf: torch.Tensor
    is_metric: torch.Tensor
    normal: Optional[torch.Tensor]
    has_normal: List[bool]

    @classmethod
    def of(cls, batch: MoGeBatch) -> "LossTargets":
        fx, fy = batch.intrinsics[..., 0, 0], batch.intrinsics[..., 1, 1]
        return cls(
            points=batch.points(), focal=1 / (1 / fx.square() + 1 / fy.square()).sqrt(),
            mask_fin=batch.depth_mask_fin, mask_inf=batch.depth_mask_inf, is_metric=batch.is_metric.bool(),
            normal=batch.normal, has_normal=[batch.has_normal(i) for i in range(len(batch))],
        )


def _call(function: str, params: Dict[str, Any], preds: Dict[str, torch.Tensor], targets: LossTargets,
          index: Sequence[int], global_scale: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One call of `function` on the samples `index` (a list: batched; values (n,)). Returns the
    values and, for the global loss, the alignment scales (n,)."""
    fn = LOSS_FUNCTIONS[function]
    points, gt = preds["points"][index], targets.points[index]
    if function == "affine_invariant_global_loss":
        value, _, scale = fn(points, gt, **params)
        return value, scale
    if function == "affine_invariant_local_loss":
        value, _ = fn(points, gt, targets.focal[index], global_scale, **params)
    elif function in ("normal_loss", "edge_loss"):
        value, _ = fn(points, gt)
    elif function in ("mask_l2_loss", "mask_bce_loss"):
        value, _ = fn(preds["mask"][index], targets.mask_fin[index], targets.mask_inf[index])
    elif function == "metric_scale_loss":
        value, _ = fn(preds["metric_scale"][index], global_scale)
    elif function == "normal_map_loss":
        value, _ = fn(preds["normal"][index], targets.normal[index])
    else:  # check_loss_config admits only LOSS_FUNCTIONS, all dispatched above
        raise AssertionError(function)
    return torch.as_tensor(value, device=points.device).reshape(-1).expand(len(index)), None


def _applies(function: str, preds: Dict[str, torch.Tensor], targets: LossTargets, i: int) -> bool:
    """Whether sample i and the network have what `function` needs: the metric-scale loss needs
    metric depth and a scale head, the normal-map loss ground-truth normals and a normal head."""
    if function == "metric_scale_loss":
        return "metric_scale" in preds and bool(targets.is_metric[i])
    if function == "normal_map_loss":
        return "normal" in preds and targets.normal is not None and targets.has_normal[i]
    return True


def group_terms(terms: Dict[str, Dict[str, Any]], preds: Dict[str, torch.Tensor], targets: LossTargets,
                index: Sequence[int]) -> Dict[str, Tuple[List[int], torch.Tensor]]:
    """The terms of one label type on its samples `index`: {term: (samples, values (n,))}, a
    term's samples being those it applies to (`_applies`), in order. The global term must come
    before the terms using its scale (checked by MoGeModel)."""
    out: Dict[str, Tuple[List[int], torch.Tensor]] = {}
    scale_of: Dict[int, torch.Tensor] = {}
    for name, term in terms.items():
        function, params = term["function"], term["params"]
        samples = [i for i in index if _applies(function, preds, targets, i)]
        if not samples:
            continue
        scales = torch.stack([scale_of[i] for i in samples]) if scale_of else None
        if function in PER_SAMPLE:
            value = torch.cat([_call(function, params, preds, targets, [i], None)[0] for i in samples])
        else:
            value, scale = _call(function, params, preds, targets, samples, scales)
            if scale is not None:
                scale_of.update(zip(samples, scale))
        out[name] = (samples, value)
    return out


def sample_terms(terms: Dict[str, Dict[str, Any]], preds: Dict[str, torch.Tensor], targets: LossTargets,
                 i: int) -> Dict[str, torch.Tensor]:
    """The reference: sample i's value of each term that applies to it, one call per term as
    MoGe's train.py makes them."""
    values: Dict[str, torch.Tensor] = {}
    scale: Optional[torch.Tensor] = None
    for name, term in terms.items():
        if _applies(term["function"], preds, targets, i):
            value, new_scale = _call(term["function"], term["params"], preds, targets, [i],
                                     None if scale is None else scale.reshape(1))
            scale = new_scale[0] if new_scale is not None else scale
            values[name] = value[0]
    return values
