"""Symphonies' training losses (MonoScene's SSC losses), in float32.

Shapes: logits (B, C, X, Y, Z) (any float type; cast to float32), target (B, X, Y, Z) integer
class ids with 255 = ignored, class_weights (C,), frustum_masks (B, F, X, Y, Z) bool and
class_counts (B, F, C) (F = frustum_size² local frustums, `local_frustums` in the core geometry).
Every loss is a float32 scalar. Voxels labelled 255 take part in no term.

- ce_ssc: class-weighted cross-entropy, mean over the valid voxels weighted by their class weight.
- sem_scal: Scene-Class Affinity loss over the classes: for every class c present among the valid
  voxels, with p_c its softmax probability and y_c = [target == c], the binary cross-entropy
  towards 1 of precision Σ p_c y_c / Σ p_c (left out when Σ p_c = 0), recall Σ p_c y_c / Σ y_c and
  specificity Σ (1 - p_c)(1 - y_c) / Σ (1 - y_c) (left out when every valid voxel is of class c);
  averaged over the present classes.
- geo_scal: the same three terms for occupancy, p = 1 - p_empty and y = [target != 0], summed
  (precision and recall when some valid voxel is occupied, specificity when some is empty).
- frustum_proportion: for each local frustum f with ground-truth counts, KL(π_f || q_f) between
  the class proportions π_f of its counts and the mean predicted distribution q_f of its voxels
  (on the classes with π_f > 0), averaged over those frustums.

As the original: the batch is pooled (sem_scal and geo_scal sum over all valid voxels of all B
samples; frustum_proportion sums the counts and the probabilities of frustum f over the batch
before comparing them, so with B > 1 it is not the mean of per-sample losses); BCE is torch's
(log clamped at -100). Where the original divides by zero or raises, these return a defined value
instead: no valid voxel gives 0 for every loss (the original: NaN for ce_ssc, an exception for the
others); geo_scal treats occupancy as sem_scal treats a class (no occupied valid voxel: no precision
and recall terms; no empty one: no specificity term; zero predicted occupancy: no precision term),
where the original raises (0 / 0 reaches BCE); frustum_proportion with no
frustum holding counts gives 0 (the original raises). The zero keeps the autograd graph.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from recon_trainer.config import ConfigError
from recon_trainer.config.errors import did_you_mean

IGNORE_INDEX = 255
CRITERIA = ("ce_ssc", "sem_scal", "geo_scal", "frustum")


def _check_volumes(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.dim() != 5 or target.dim() != 4 or logits.shape[:1] + logits.shape[2:] != target.shape:
        raise ValueError(f"{name}: logits {tuple(logits.shape)} must be (B, C, X, Y, Z) and target "
                         f"{tuple(target.shape)} (B, X, Y, Z) with the same B, X, Y, Z")


def _zero(logits: torch.Tensor) -> torch.Tensor:
    """A float32 zero attached to the graph of `logits`."""
    return logits.float().sum() * 0.0


def _positive(value: torch.Tensor) -> bool:
    """value > 0 for a scalar tensor (read without its graph)."""
    return bool(value.detach() > 0)


def _bce_to_one(value: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a fraction in [0, 1] towards 1: -log(value), log clamped at -100."""
    return F.binary_cross_entropy(value, torch.ones_like(value))


def ce_ssc(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy: Σ w[t_v] (-log softmax(logits_v)[t_v]) / Σ w[t_v] over valid voxels v.

    logits (B, C, X, Y, Z), target (B, X, Y, Z), class_weights (C,). 0 when no voxel is valid (or
    their weights sum to 0).
    """
    _check_volumes(logits, target, "ce_ssc")
    target = target.long()
    weights = class_weights.to(device=logits.device, dtype=torch.float32)
    valid = target != IGNORE_INDEX
    if not bool(valid.any()) or float(weights[target[valid]].sum()) == 0.0:
        return _zero(logits)
    return F.cross_entropy(logits.float(), target, weight=weights, ignore_index=IGNORE_INDEX, reduction="mean")


def sem_scal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Semantic Scene-Class Affinity loss (module doc). logits (B, C, X, Y, Z), target (B, X, Y, Z)."""
    _check_volumes(logits, target, "sem_scal")
    target = target.long()
    probs = F.softmax(logits.float(), dim=1)
    valid = target != IGNORE_INDEX
    labels = target[valid]  # (N,)
    total = _zero(logits)
    present = 0
    for c in range(probs.shape[1]):
        is_c = labels == c
        count = is_c.sum()
        if not _positive(count):
            continue
        present += 1
        p = probs[:, c][valid]  # (N,)
        y = is_c.float()
        true_positive = (p * y).sum()
        predicted = p.sum()
        if _positive(predicted):
            total = total + _bce_to_one(true_positive / predicted)
        total = total + _bce_to_one(true_positive / count)
        negatives = labels.numel() - count
        if _positive(negatives):
            total = total + _bce_to_one(((1 - p) * (1 - y)).sum() / negatives)
    return total / present if present else total


def geo_scal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Geometric Scene-Class Affinity loss on occupancy (module doc). logits (B, C, X, Y, Z) with
    class 0 = empty, target (B, X, Y, Z)."""
    _check_volumes(logits, target, "geo_scal")
    target = target.long()
    probs = F.softmax(logits.float(), dim=1)
    valid = target != IGNORE_INDEX
    total = _zero(logits)
    if not bool(valid.any()):
        return total
    p_empty = probs[:, 0][valid]  # (N,)
    p_occupied = 1 - p_empty
    occupied = (target[valid] != 0).float()
    true_positive = (occupied * p_occupied).sum()
    predicted, positives, negatives = p_occupied.sum(), occupied.sum(), (1 - occupied).sum()
    if _positive(positives):  # occupancy "present": its precision and recall terms
        if _positive(predicted):
            total = total + _bce_to_one(true_positive / predicted)
        total = total + _bce_to_one(true_positive / positives)
    if _positive(negatives):
        total = total + _bce_to_one(((1 - occupied) * p_empty).sum() / negatives)
    return total


def frustum_proportion(logits: torch.Tensor, frustum_masks: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """Frustum proportion loss (module doc).

    logits (B, C, X, Y, Z); frustum_masks (B, F, X, Y, Z) bool, the voxels of each frustum;
    class_counts (B, F, C) ground-truth voxel counts per frustum and class. Counts and predicted
    probabilities are summed over the batch per frustum (as the original). 0 when no frustum has
    both counts and predicted probability.
    """
    if logits.dim() != 5 or frustum_masks.dim() != 5 or class_counts.dim() != 3:
        raise ValueError(f"frustum_proportion: logits {tuple(logits.shape)} must be (B, C, X, Y, Z), frustum_masks "
                         f"{tuple(frustum_masks.shape)} (B, F, X, Y, Z), class_counts {tuple(class_counts.shape)} "
                         f"(B, F, C)")
    batch, num_classes = logits.shape[:2]
    num_frustums = class_counts.shape[1]
    if (frustum_masks.shape != (batch, num_frustums, *logits.shape[2:])
            or class_counts.shape != (batch, num_frustums, num_classes)):
        raise ValueError(f"frustum_proportion: frustum_masks {tuple(frustum_masks.shape)} and class_counts "
                         f"{tuple(class_counts.shape)} do not fit logits {tuple(logits.shape)}")
    probs = F.softmax(logits.float(), dim=1)
    counts = class_counts.to(device=probs.device, dtype=torch.float32).sum(0)  # (F, C): pooled over the batch
    total = _zero(logits)
    used = 0
    for f in range(num_frustums):
        inside = probs * frustum_masks[:, f].unsqueeze(1)  # (B, C, X, Y, Z)
        per_class = inside.transpose(0, 1).flatten(1).sum(1)  # (C,)
        mass, count = inside.sum(), counts[f].sum()
        if _positive(mass) and _positive(count):
            proportion = counts[f] / count
            observed = proportion != 0
            predicted = per_class[observed] / mass
            total = total + F.kl_div(predicted.log(), proportion[observed], reduction="sum")
            used += 1
    return total / used if used else total


def ssc_losses(
    outputs: Sequence[torch.Tensor],
    target: torch.Tensor,
    class_weights: torch.Tensor,
    frustum_masks: Optional[torch.Tensor] = None,
    class_counts: Optional[torch.Tensor] = None,
    criteria: Sequence[str] = CRITERIA,
    aux_weight: float = 0.5,
) -> Dict[str, torch.Tensor]:
    """{"loss_<criterion>": Σ_i w_i · criterion(outputs[i])} for each of `criteria`.

    outputs: the logits (B, C, X, Y, Z) of every layer, the final one last (w = 1; earlier ones
    w = aux_weight), as the original's auxiliary outputs; a list of one is the final output alone.
    The original logs one key per layer ("loss_<name>_<i>", already weighted); their sum over i is
    the value here, so the objective (the sum of all keys) is the same. target (B, X, Y, Z) (255 =
    ignored); class_weights (C,); frustum_masks (B, F, X, Y, Z) and class_counts (B, F, C), needed
    only for "frustum". Computed in float32 with autocast off.
    """
    functions: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "ce_ssc": lambda logits: ce_ssc(logits, target, class_weights),
        "sem_scal": lambda logits: sem_scal(logits, target),
        "geo_scal": lambda logits: geo_scal(logits, target),
        "frustum": lambda logits: frustum_proportion(logits, frustum_masks, class_counts),
    }
    for name in criteria:
        if name not in functions:
            raise ConfigError(f"criteria has {name!r}{did_you_mean(name, CRITERIA) or ';'} expected some of "
                              f"{', '.join(CRITERIA)}")
    if "frustum" in criteria and (frustum_masks is None or class_counts is None):
        raise ValueError("ssc_losses: the 'frustum' criterion needs frustum_masks and class_counts")
    if not outputs:
        raise ValueError("ssc_losses: outputs is empty; expected the logits of at least one layer")
    losses: Dict[str, torch.Tensor] = {}
    with torch.autocast(outputs[-1].device.type, enabled=False):
        for i, logits in enumerate(outputs):
            weight = 1.0 if i == len(outputs) - 1 else aux_weight
            for name in criteria:
                term = weight * functions[name](logits.float())
                key = f"loss_{name}"
                losses[key] = losses[key] + term if key in losses else term
    return losses
