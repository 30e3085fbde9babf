"""DepthEvaluator: zero-shot relative-depth evaluation with the MiDaS protocol, per dataset.

Each test frame names its dataset and metric in its meta (see recon_trainer/data/depth/base.py):
"dataset", "eval_metric" ("delta1.25", "absrel" or "whdr"), "depth_cap" and, for ordinal datasets,
"ordinal_pairs". The model's disparity is resized bilinearly to the ground truth and scored per image
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

import dataclasses
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from recon_trainer.config import registry
from recon_trainer.evaluation import depth_metrics
from recon_trainer.evaluation.evaluator import EvaluatorBase, Evaluation, average_rows, json_number
from recon_trainer.models.base import EvaluationMode

METRIC_UNITS = {"delta1.25": "%", "absrel": "ratio", "whdr": "%"}
DELTA_THRESHOLD = 1.25
# Ground-truth fields the model must not see.
GROUND_TRUTH_FIELDS = ("depth_map", "disparity_map", "depth_mask")


def frame_metric(pred_disparity: torch.Tensor, batch: Any, index: int, meta: Dict[str, Any]) -> float:
    """The metric named in `meta` for frame `index` of `batch`; pred_disparity (H, W) at the ground-truth size."""
    metric = meta["eval_metric"]
    if metric not in METRIC_UNITS:
        raise ValueError(f"DepthEvaluator: unknown eval_metric {metric!r}; expected one of {', '.join(METRIC_UNITS)}")
    if metric == "whdr":
        if "ordinal_pairs" not in meta:
            raise ValueError(f"DepthEvaluator: a {meta['dataset']} frame with eval_metric 'whdr' has no ordinal_pairs")
        return depth_metrics.whdr_percent(pred_disparity, meta["ordinal_pairs"])
    gt = batch.depth_map if batch.depth_map is not None else batch.disparity_map
    if gt is None:
        raise ValueError(f"DepthEvaluator: a {meta['dataset']} frame ({metric}) has no depth_map or disparity_map")
    gt = gt[index, 0]
    mask = gt > 0
    if batch.depth_mask is not None:
        mask &= batch.depth_mask[index, 0] > 0.5
    if not bool(mask.any()):
        return math.nan
    cap = float(meta.get("depth_cap", 0.0))
    if batch.depth_map is not None:
        depth = depth_metrics.aligned_depth_from_disparity(pred_disparity, gt, mask, cap)
    else:  # relative ground truth: score against its inverse
        depth = depth_metrics.aligned_depth_from_gt_disparity(pred_disparity, gt, mask, cap)
        gt = torch.where(mask, 1.0 / gt.clamp(min=1e-12), torch.ones_like(gt))
    if metric == "delta1.25":
        return depth_metrics.delta_bad_percent(depth, gt, mask, DELTA_THRESHOLD)
    return depth_metrics.abs_rel(depth, gt, mask)


def _frame_metas(batch: Any) -> List[Dict[str, Any]]:
    """The per-frame meta dicts of a collated batch, each checked for the keys the evaluator needs."""
    frames = batch.meta.get("frames") if isinstance(batch.meta, dict) else None
    if not frames or len(frames) != len(batch):
        raise ValueError(
            "DepthEvaluator: each test batch needs meta['frames'], one dict per frame (from collate) with "
            "'dataset' and 'eval_metric' (depth datasets' evaluation items)"
        )
    for meta in frames:
        missing = [key for key in ("dataset", "eval_metric") if key not in meta]
        if missing:
            raise ValueError(f"DepthEvaluator: a test frame's meta {sorted(meta)} lacks {', '.join(missing)}")
    return frames


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

    def process(self, model: torch.nn.Module, batch: Any) -> None:
        """Score each frame of the batch (a batch whose datasets are all full is skipped unread)."""
        metas = _frame_metas(batch)
        keys = [(meta["dataset"], meta["eval_metric"]) for meta in metas]
        if all(self._full(self._rows.get(key, [])) for key in keys):
            return
        values = self._evaluate_batch(model, batch, metas)
        paths = batch.image_path if isinstance(batch.image_path, list) else [batch.image_path] * len(keys)
        for key, meta, path, value in zip(keys, metas, paths, values):
            if not self._full(self._rows.setdefault(key, [])):
                self._rows[key].append({"image_path": path, "value": value})
                self._caps.setdefault(key, float(meta.get("depth_cap", 0.0)))

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

    def _evaluate_batch(self, model: torch.nn.Module, batch: Any, metas: List[Dict[str, Any]]) -> List[float]:
        """Per-frame metric values of one batch."""
        withheld = dataclasses.replace(batch, **{name: None for name in GROUND_TRUTH_FIELDS})
        disparity = model(withheld, evaluation_mode=EvaluationMode.EVALUATION)["disparity"]
        gt = next((v for v in (batch.depth_map, batch.disparity_map) if v is not None), batch.image_rgb)
        if disparity.shape[-2:] != gt.shape[-2:]:
            disparity = F.interpolate(disparity, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        return [frame_metric(disparity[i, 0].float(), batch, i, meta) for i, meta in enumerate(metas)]


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
