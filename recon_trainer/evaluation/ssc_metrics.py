"""Semantic scene completion metrics: scene completion IoU and per-class semantic IoU.

The definitions of SSCNet / MonoScene / Symphonies (`SSCMetrics`), accumulated over a dataset as
integer counts and computed once at the end. Voxels whose target is `ignore_index` (255) take no
part anywhere; `prediction` is a class id per voxel (the argmax of the logits).

- Scene completion (SC): a voxel is occupied when its class is > 0. Over all valid voxels of all
  updates: TP = predicted and truly occupied, FP = predicted occupied but empty, FN = predicted
  empty but occupied. precision = TP / (TP + FP), recall = TP / (TP + FN),
  IoU = TP / (TP + FP + FN); all three are 0 while TP = 0 (as the original).
- Semantic scene completion (SSC): per class c, TP_c = predicted c where the target is c,
  FP_c = predicted c elsewhere, FN_c = target c predicted as another class.
  IoU_c = TP_c / (TP_c + FP_c + FN_c + 1e-6): a class absent from both prediction and target
  scores 0, and counts in the mean.
- mIoU: the mean of IoU_c over classes 1..C-1 (class 0, empty, is left out).

Results are fractions in [0, 1] (papers print percentages). The original accumulates the
per-class counts in float32 torchmetrics states; here every count is int64, so on full datasets
(~10^9 empty voxels) the two may differ in the 7th significant digit of the class-0 IoU.
Distributed evaluation: `merge` adds another accumulator's counts, `state_dict` /
`load_state_dict` carry them as tensors, `all_reduce` sums them over a torch.distributed group.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

COUNT_NAMES = ("tp_sc", "fp_sc", "fn_sc", "tp_ssc", "fp_ssc", "fn_ssc")
IOU_EPSILON = 1e-6  # added to each class's IoU denominator (the original's)


def _as_class_ids(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z) class ids: `prediction` itself, or the argmax over dim 1 of (B, C, X, Y, Z) logits."""
    if prediction.is_floating_point() and prediction.dim() == target.dim() + 1:
        return prediction.argmax(dim=1)
    if prediction.is_floating_point():
        raise ValueError(f"SSC metrics: prediction {tuple(prediction.shape)} is floating point; expected class "
                         f"ids shaped like the target {tuple(target.shape)} or logits (B, C, ...)")
    return prediction


def _checked(prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The valid voxels' (prediction, target) as flat int64 tensors; ValueError on bad shapes or ids."""
    prediction = _as_class_ids(prediction, target)
    if prediction.shape != target.shape:
        raise ValueError(f"SSC metrics: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} "
                         f"must have the same shape")
    target = target.long().reshape(-1)
    prediction = prediction.long().reshape(-1).to(target.device)
    valid = target != ignore_index
    target, prediction = target[valid], prediction[valid]
    for name, values in (("target", target), ("prediction", prediction)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            raise ValueError(f"SSC metrics: {name} has class ids outside [0, {num_classes}) "
                             f"(min {int(values.min())}, max {int(values.max())}) besides ignore_index {ignore_index}")
    return prediction, target


def ssc_counts(prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
               ) -> Dict[str, torch.Tensor]:
    """The counts of one batch (module doc), by one confusion matrix.

    prediction: (B, X, Y, Z) integer class ids, or (B, C, X, Y, Z) logits (argmax over C);
    target: (B, X, Y, Z) class ids with ignore_index where unknown. Returns int64 tensors on the
    target's device: tp_sc, fp_sc, fn_sc () and tp_ssc, fp_ssc, fn_ssc (C,).
    """
    pred, true = _checked(prediction, target, num_classes, ignore_index)
    confusion = torch.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)  # rows: target class, columns: predicted
    tp = confusion.diagonal()
    occupied_pred, occupied_true = pred > 0, true > 0
    return {
        "tp_sc": (occupied_pred & occupied_true).sum(),
        "fp_sc": (occupied_pred & ~occupied_true).sum(),
        "fn_sc": (~occupied_pred & occupied_true).sum(),
        "tp_ssc": tp.clone(),
        "fp_ssc": confusion.sum(0) - tp,
        "fn_ssc": confusion.sum(1) - tp,
    }


def ssc_counts_reference(prediction: torch.Tensor, target: torch.Tensor, num_classes: int,
                         ignore_index: int = 255) -> Dict[str, torch.Tensor]:
    """`ssc_counts` written plainly: sample by sample, class by class, with boolean masks (the
    parity reference of the confusion-matrix version; same arguments and result)."""
    prediction = _as_class_ids(prediction, target)
    _checked(prediction, target, num_classes, ignore_index)  # the same validation
    counts = {name: torch.zeros(() if name.endswith("_sc") else (num_classes,), dtype=torch.int64)
              for name in COUNT_NAMES}
    batch = target.shape[0]
    for pred_b, true_b in zip(prediction.reshape(batch, -1).cpu(), target.reshape(batch, -1).cpu()):
        keep = true_b != ignore_index
        pred_b, true_b = pred_b[keep].long(), true_b[keep].long()
        counts["tp_sc"] += ((pred_b > 0) & (true_b > 0)).sum()
        counts["fp_sc"] += ((pred_b > 0) & (true_b == 0)).sum()
        counts["fn_sc"] += ((pred_b == 0) & (true_b > 0)).sum()
        for c in range(num_classes):
            counts["tp_ssc"][c] += ((pred_b == c) & (true_b == c)).sum()
            counts["fp_ssc"][c] += ((pred_b == c) & (true_b != c)).sum()
            counts["fn_ssc"][c] += ((pred_b != c) & (true_b == c)).sum()
    return counts


def metrics_from_counts(counts: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """iou, precision, recall (SC), per_class_iou (list of C floats) and miou (classes 1..C-1) of
    accumulated counts (module doc); Python floats in [0, 1]."""
    tp, fp, fn = (int(counts[name]) for name in ("tp_sc", "fp_sc", "fn_sc"))
    if tp > 0:
        precision, recall, iou = tp / (tp + fp), tp / (tp + fn), tp / (tp + fp + fn)
    else:
        precision = recall = iou = 0.0
    tps, fps, fns = (counts[name].double().cpu() for name in ("tp_ssc", "fp_ssc", "fn_ssc"))
    per_class = tps / (tps + fps + fns + IOU_EPSILON)
    miou = float(per_class[1:].mean()) if per_class.numel() > 1 else 0.0
    return {"iou": float(iou), "precision": float(precision), "recall": float(recall),
            "per_class_iou": [float(v) for v in per_class], "miou": miou}


class SSCMetricAccumulator:
    """Counts of SSC metrics over a dataset (module doc).

    update(prediction (B, X, Y, Z) int class ids or (B, C, X, Y, Z) logits, target (B, X, Y, Z))
    adds a batch; compute() -> {"iou", "precision", "recall", "per_class_iou", "miou"}. The counts
    are int64 tensors on the device of the first update (CPU before any).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"SSCMetricAccumulator: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Zero every count (on the CPU)."""
        self._counts = self._zeros(torch.device("cpu"))
        self._placed = False

    def _zeros(self, device: torch.device) -> Dict[str, torch.Tensor]:
        return {name: torch.zeros(() if name.endswith("_sc") else (self.num_classes,), dtype=torch.int64,
                                  device=device) for name in COUNT_NAMES}

    def _add(self, counts: Mapping[str, torch.Tensor]) -> None:
        counts = {name: torch.as_tensor(counts[name]) for name in COUNT_NAMES}
        device = counts["tp_ssc"].device
        if not self._placed:  # the counts follow the first batch's device (no transfer per update)
            self._counts = {name: value.to(device) for name, value in self._counts.items()}
            self._placed = True
        for name in COUNT_NAMES:
            self._counts[name] += counts[name].to(self._counts[name].device, torch.int64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch (shapes in the class doc; target voxels equal to ignore_index are skipped)."""
        self._add(ssc_counts(prediction, target, self.num_classes, self.ignore_index))

    def compute(self) -> Dict[str, Any]:
        """The metrics of everything added so far (`metrics_from_counts`)."""
        return metrics_from_counts(self._counts)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The counts as CPU int64 tensors (tp_sc, fp_sc, fn_sc: (); tp_ssc, fp_ssc, fn_ssc: (C,))."""
        return {name: value.detach().cpu().clone() for name, value in self._counts.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the counts by `state` (a `state_dict`); ValueError when a count is missing or of
        another number of classes."""
        self.reset()
        self._check_state(state)
        self._add(state)

    def merge(self, other: "SSCMetricAccumulator | Mapping[str, torch.Tensor]") -> "SSCMetricAccumulator":
        """Add another accumulator's counts (or a state_dict of them) to these; returns self."""
        state = other.state_dict() if isinstance(other, SSCMetricAccumulator) else other
        self._check_state(state)
        self._add(state)
        return self

    def all_reduce(self, group: Optional[Any] = None) -> None:
        """Sum the counts over the processes of a torch.distributed group (every process calls it);
        nothing happens when torch.distributed is not initialised."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        for name in COUNT_NAMES:
            dist.all_reduce(self._counts[name], op=dist.ReduceOp.SUM, group=group)

    def _check_state(self, state: Mapping[str, torch.Tensor]) -> None:
        missing: List[str] = [name for name in COUNT_NAMES if name not in state]
        if missing:
            raise ValueError(f"SSCMetricAccumulator: state has no {', '.join(missing)}")
        for name in ("tp_ssc", "fp_ssc", "fn_ssc"):
            shape = tuple(torch.as_tensor(state[name]).shape)
            if shape != (self.num_classes,):
                raise ValueError(f"SSCMetricAccumulator: state {name} is {shape}, expected ({self.num_classes},)")
