"""DepthEvaluator: zero-shot relative-depth evaluation with the MiDaS protocol, per dataset.

Test batches are DepthBatches (batch.py): each item names its `dataset`, its `eval_metric`
("delta1.25", "absrel" or "whdr"), its `depth_cap` and, for ordinal datasets, its `ordinal_pairs`
(as recon_trainer/data/depth/base.py sets them per dataset). The model's disparity is resized bilinearly to the ground truth and scored per image
(`depth_metrics`): for delta1.25 and absrel it is least-squares aligned to the ground-truth disparity,
clamped at 1 / depth_cap and inverted; frames with `depth_map` are scored against it, frames with
only `disparity_map` (e.g. ReDWeb) against 1 / disparity_map (a depth_cap is then in those units).
whdr uses the raw prediction. A dataset's value is the mean of its per-image values, as the MiDaS
evaluation averages per image (§C.4 of the method notes: every step is per image).

results_test.json (written atomically when `dump_to_json`) is a list with one entry per dataset:

    [{"dataset": "KITTI", "metric": "delta1.25", "value": 24.2, "unit": "%", "depth_cap": 80.0,
      "n_images": 697, "per_image": [{"image_path": "...", "value": 23.1}, ...], "eval_epoch": 3}, ...]

An image without a valid pixel (or pair) has value null and is left out of its dataset's mean.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from recon_trainer.config import registry
from recon_trainer.evaluation import depth_metrics
from recon_trainer.evaluation.evaluator import EvaluatorBase, Evaluation, average_rows, json_number
from recon_trainer.models.base import EvaluationMode

from .batch import DepthBatch

METRIC_UNITS = {"delta1.25": "%", "absrel": "ratio", "whdr": "%"}
DELTA_THRESHOLD = 1.25
# Ground-truth fields the model must not see.


def frame_metric(pred_disparity: torch.Tensor, batch: DepthBatch, index: int) -> float:
    """Item `index`'s metric (batch.eval_metric[index]); pred_disparity (H, W) at the ground-truth size."""
    metric, dataset = batch.eval_metric[index], batch.dataset[index]
    if metric not in METRIC_UNITS:
        raise ValueError(f"DepthEvaluator: a {dataset} item has eval_metric {metric!r}; expected one of "
                         f"{', '.join(METRIC_UNITS)} (a training item in the test split?)")
    if metric == "whdr":
        pairs = None if batch.ordinal_pairs is None else batch.ordinal_pairs[index]
        if pairs is None:
            raise ValueError(f"DepthEvaluator: a {dataset} item with eval_metric 'whdr' has no ordinal_pairs")
        return depth_metrics.whdr_percent(pred_disparity, pairs)
    gt = batch.depth_map if batch.depth_map is not None else batch.disparity_map
    if gt is None:
        raise ValueError(f"DepthEvaluator: a {dataset} item ({metric}) has no depth_map or disparity_map")
    gt = gt[index, 0]
    mask = gt > 0
    if batch.depth_mask is not None:
        mask &= batch.depth_mask[index, 0] > 0.5
    if not bool(mask.any()):
        return math.nan
    cap = float(batch.depth_cap[index])
    if batch.depth_map is not None:
        depth = depth_metrics.aligned_depth_from_disparity(pred_disparity, gt, mask, cap)
    else:  # relative ground truth: score against its inverse
        depth = depth_metrics.aligned_depth_from_gt_disparity(pred_disparity, gt, mask, cap)
        gt = torch.where(mask, 1.0 / gt.clamp(min=1e-12), torch.ones_like(gt))
    if metric == "delta1.25":
        return depth_metrics.delta_bad_percent(depth, gt, mask, DELTA_THRESHOLD)
    return depth_metrics.abs_rel(depth, gt, mask)


@registry.register
class DepthEvaluator(EvaluatorBase):
    """Relative-depth metrics per dataset (module doc). The model is called in EVALUATION mode on
    the batch without its ground truth and must return {"disparity": (B, 1, h, w)}."""

    max_images_per_dataset: int = 0  # score only the first N images of each dataset (e.g. for validation); 0: all

    def __post_init__(self) -> None:
        self._rows: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}  # (dataset, metric) -> per-image rows
        self._caps: Dict[Tuple[str, str], float] = {}

    def reset(self, device: torch.device) -> None:
        self._rows, self._caps = {}, {}

    def process(self, model: torch.nn.Module, batch: DepthBatch) -> None:
        """Score each item of the batch (a batch whose datasets are all full is skipped unread)."""
        if not isinstance(batch, DepthBatch):
            raise TypeError(f"DepthEvaluator: a test batch is a {type(batch).__name__}; the data source's "
                            "batch_builder_class_type must be MidasDepthBatch (as the midas configs set it)")
        keys = list(zip(batch.dataset, batch.eval_metric))
        if all(self._full(self._rows.get(key, [])) for key in keys):
            return
        values = self._evaluate_batch(model, batch)
        for index, (key, value) in enumerate(zip(keys, values)):
            if not self._full(self._rows.setdefault(key, [])):
                self._rows[key].append({"image_path": batch.image_path[index], "value": value})
                self._caps.setdefault(key, float(batch.depth_cap[index]))

    def compute(self, epoch: Optional[int] = None) -> Evaluation:
        """{"<dataset>/<metric>": mean per-image value} and one results entry per dataset (module doc)."""
        entries = [
            {
                "dataset": dataset,
                "metric": metric,
                "value": average_rows(per_image).get("value", math.nan),
                "unit": METRIC_UNITS[metric],
                "depth_cap": self._caps[(dataset, metric)],
                "n_images": len(per_image),
                "per_image": per_image,
                "eval_epoch": epoch,
            }
            for (dataset, metric), per_image in self._rows.items()
        ]
        metrics = {f"{entry['dataset']}/{entry['metric']}": entry["value"] for entry in entries}
        return Evaluation(metrics=metrics, results=_json_entries(entries), summary=_table(entries, epoch))

    def _full(self, per_image: List[Dict[str, Any]]) -> bool:
        return 0 < self.max_images_per_dataset <= len(per_image)

    def _evaluate_batch(self, model: torch.nn.Module, batch: DepthBatch) -> List[float]:
        """Per-item metric values of one batch."""
        disparity = model(batch.without_ground_truth(), evaluation_mode=EvaluationMode.EVALUATION)["disparity"]
        gt = next((v for v in (batch.depth_map, batch.disparity_map) if v is not None), batch.image_rgb)
        if disparity.shape[-2:] != gt.shape[-2:]:
            disparity = F.interpolate(disparity, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        return [frame_metric(disparity[i, 0].float(), batch, i) for i in range(len(batch))]


def _json_entries(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Entries with NaN values (dataset and per image) as None, for JSON."""
    return [
        dict(
            entry,
            value=json_number(entry["value"]),
            per_image=[dict(row, value=json_number(row["value"])) for row in entry["per_image"]],
        )
        for entry in entries
    ]


def _table(entries: List[Dict[str, Any]], epoch: Optional[int]) -> str:
    title = "Depth evaluation" + ("" if epoch is None else f", epoch {epoch}")
    width = max([len(entry["dataset"]) for entry in entries] + [7])
    lines = [title, f"  {'dataset':<{width}}  {'metric':<9}  {'value':>10}  unit   images"]
    lines += [
        f"  {e['dataset']:<{width}}  {e['metric']:<9}  {e['value']:10.4f}  {e['unit']:<5}  {e['n_images']:6d}"
        for e in entries
    ]
    return "\n".join(lines)
