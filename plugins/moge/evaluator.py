"""MoGeEvaluator: MoGe's benchmark evaluation (moge/scripts/eval_baseline.py) per dataset.

For each test image the model's `predict_geometry(batch)` (MoGe's infer_for_evaluation: any of
points_metric / points_scale_invariant / points_affine_invariant (B, H, W, 3), depth_metric /
depth_scale_invariant / depth_affine_invariant / disparity_affine_invariant (B, H, W), intrinsics
(B, 3, 3) normalised; other keys such as "mask" are ignored, as MoGe ignores them) is scored
against the MoGeBatch's ground truth by `metrics.compute_metrics`: depth, depth_mask_fin (valid
pixels), the GT point map, intrinsics, is_metric, sharp_boundary and the segmentation. The
segments scored by local_points are those of MoGe's evaluation loader: the labels named
undefined / unannotated / background / sky are dropped, and of the others the `max_segments`
largest with at least `min_segment_area` pixels are kept. An image labelled "invalid" (no finite
depth left after the crop; MoGe's script would score its placeholder depth of 1) or without a valid
pixel is skipped and counted in "n_skipped".

A benchmark's value of a metric is the mean over its images that have it; "mean" is the mean over
the benchmarks that have it (MoGe's key_average, NaN left out).

metrics (the trainer's stats): "<kind>/<metric>" for the mean over benchmarks (e.g.
"points_affine_invariant/rel", "local_points/delta1", "fov_x/mae", "boundary/radius1_f1") and
"<benchmark>/<kind>/<metric>" per benchmark.

results_test.json (written atomically when `dump_to_json`):

    {"metrics": {"NYUv2": {"points_affine_invariant": {"rel": 0.06, "delta1": 0.95}, ...}, ...,
                 "mean": {...}},                     # the shape of MoGe's eval_baseline output
     "n_images": {"NYUv2": 654, ...}, "n_skipped": {"NYUv2": 0, ...}, "eval_epoch": 3}

with NaN written as null.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import torch

from recon_trainer.config import registry
from recon_trainer.evaluation.evaluator import EvaluatorBase, Evaluation, json_number

from .batch import INVALID, MoGeBatch
from .metrics import Metrics, compute_metrics, flatten_metrics, mean_of_dicts

PREDICTION_KINDS = (
    "points_metric", "points_scale_invariant", "points_affine_invariant",
    "depth_metric", "depth_scale_invariant", "depth_affine_invariant", "disparity_affine_invariant",
)
IGNORED_SEGMENT_LABELS = ("undefined", "unannotated", "background", "sky")
MEAN_ROW = "mean"


def evaluation_segments(
    segmentation: torch.Tensor, labels: Mapping[str, int], min_area: int, max_segments: int
) -> Dict[str, int]:
    """The segments MoGe's evaluation scores: `labels` {name: id} of `segmentation` (H, W) without
    IGNORED_SEGMENT_LABELS, the `max_segments` largest (by pixel count, valid depth or not) with at
    least `min_area` pixels, largest first."""
    ids, counts = torch.unique(segmentation, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    kept = [name for name in labels if name not in IGNORED_SEGMENT_LABELS]
    kept.sort(key=lambda name: area.get(labels[name], 0), reverse=True)
    return {name: labels[name] for name in kept[:max_segments] if area.get(labels[name], 0) >= min_area}


@registry.register
class MoGeEvaluator(EvaluatorBase):
    """MoGe's metrics per benchmark and over benchmarks (module doc). The model must have
    `predict_geometry(batch) -> dict` (MoGeModel); batches are MoGeBatches."""

    max_images_per_dataset: int = 0  # score only the first N images of each dataset (e.g. for validation); 0: all
    min_segment_area: int = 1000  # pixels a segment needs for local_points (MoGe's eval loader: 1000)
    max_segments: int = 100  # largest segments scored per image (MoGe's eval loader: 100)

    def __post_init__(self) -> None:
        self._rows: Dict[str, List[Metrics]] = {}  # dataset -> per-image metrics
        self._skipped: Dict[str, int] = {}

    def reset(self, device: torch.device) -> None:
        self._rows, self._skipped = {}, {}

    def process(self, model: torch.nn.Module, batch: MoGeBatch) -> None:
        """Score each image of the batch (a batch whose datasets are all full is skipped unread)."""
        if not isinstance(batch, MoGeBatch):
            raise TypeError(f"MoGeEvaluator: a test batch is a {type(batch).__name__}; the data source's "
                            "batch_builder_class_type must be MoGeBatchBuilder")
        if MEAN_ROW in batch.dataset:
            raise ValueError(f"MoGeEvaluator: a test item's dataset is named {MEAN_ROW!r}, the name of the "
                             "average over datasets; rename the dataset")
        if all(self._full(dataset) for dataset in batch.dataset):
            return
        predict = getattr(model, "predict_geometry", None)
        if predict is None:
            raise TypeError(f"MoGeEvaluator: the model ({type(model).__name__}) has no predict_geometry(batch); "
                            "use MoGeModel")
        preds = {key: value for key, value in predict(batch).items() if key in PREDICTION_KINDS + ("intrinsics",)}
        _check_shapes(preds, batch.depth.shape)
        gt_points = batch.points()
        for i, dataset in enumerate(batch.dataset):
            if self._full(dataset):
                continue
            self._rows.setdefault(dataset, [])
            self._skipped.setdefault(dataset, 0)
            gt = self._ground_truth(batch, gt_points, i)
            if batch.label_type[i] == INVALID or not bool(gt["depth_mask"].any()):
                self._skipped[dataset] += 1
                continue
            self._rows[dataset].append(compute_metrics({key: value[i].float() for key, value in preds.items()}, gt))

    def compute(self, epoch: Optional[int] = None) -> Evaluation:
        """Per-benchmark and mean metrics, results and summary (module doc)."""
        table = {dataset: mean_of_dicts(rows) for dataset, rows in self._rows.items()}
        table[MEAN_ROW] = mean_of_dicts(list(table.values()))
        metrics = dict(flatten_metrics(table[MEAN_ROW]))
        for dataset, values in table.items():
            if dataset != MEAN_ROW:
                metrics.update({f"{dataset}/{key}": value for key, value in flatten_metrics(values).items()})
        results = {
            "metrics": _json_ready(table),
            "n_images": {dataset: len(rows) for dataset, rows in self._rows.items()},
            "n_skipped": dict(self._skipped),
            "eval_epoch": epoch,
        }
        return Evaluation(metrics=metrics, results=results, summary=_summary(table, results["n_images"], epoch))

    def _full(self, dataset: str) -> bool:
        return 0 < self.max_images_per_dataset <= len(self._rows.get(dataset, ())) + self._skipped.get(dataset, 0)

    def _ground_truth(self, batch: MoGeBatch, gt_points: torch.Tensor, i: int) -> Dict[str, Any]:
        """Item i of the batch as MoGe's evaluation sample (metrics.compute_metrics's `gt`)."""
        gt: Dict[str, Any] = {
            "depth": batch.depth[i].float(),
            "depth_mask": batch.depth_mask_fin[i].bool(),
            "points": gt_points[i].float(),
            "intrinsics": batch.intrinsics[i].float(),
            "is_metric": bool(batch.is_metric[i]),
            "has_sharp_boundary": bool(batch.sharp_boundary[i]),
        }
        labels = None if batch.segmentation is None else batch.segmentation_labels[i]
        if labels is not None:
            segmentation = batch.segmentation[i]
            gt["segmentation_mask"] = segmentation
            gt["segmentation_labels"] = evaluation_segments(
                segmentation, labels, self.min_segment_area, self.max_segments)
        return gt


def _check_shapes(preds: Mapping[str, torch.Tensor], depth_shape: torch.Size) -> None:
    """Every prediction map must have the ground truth's (B, H, W) and intrinsics (B, 3, 3)."""
    if not any(key in preds for key in PREDICTION_KINDS):
        raise ValueError(f"MoGeEvaluator: predict_geometry returned none of {', '.join(PREDICTION_KINDS)}")
    for key, value in preds.items():
        if key == "intrinsics":
            expected = (depth_shape[0], 3, 3)
        else:
            expected = tuple(depth_shape) + ((3,) if "points" in key else ())
        if tuple(value.shape) != expected:
            raise ValueError(f"MoGeEvaluator: predict_geometry's {key!r} has shape {tuple(value.shape)}; "
                             f"expected {expected} (the ground truth's resolution)")


def _json_ready(node: Any) -> Any:
    """Nested dicts of floats with NaN as None."""
    if isinstance(node, Mapping):
        return {key: _json_ready(value) for key, value in node.items()}
    return json_number(node)


def _summary(table: Dict[str, Metrics], n_images: Dict[str, int], epoch: Optional[int]) -> str:
    """Metrics as rows, benchmarks (and the mean) as columns; "-" where a benchmark lacks a metric."""
    title = "MoGe evaluation" + ("" if epoch is None else f", epoch {epoch}")
    columns = list(table)
    flat = {column: flatten_metrics(values) for column, values in table.items()}
    keys = sorted({key for values in flat.values() for key in values})
    width = max([len(key) for key in keys] + [len("images")])
    col_width = max([len(column) for column in columns] + [8])
    header = f"  {'':<{width}}" + "".join(f"  {column:>{col_width}}" for column in columns)
    counts = f"  {'images':<{width}}" + "".join(
        f"  {n_images.get(column, sum(n_images.values())):>{col_width}}" for column in columns)
    lines = [title, header, counts]
    for key in keys:
        cells = (f"{flat[column][key]:.4f}" if key in flat[column] else "-" for column in columns)
        lines.append(f"  {key:<{width}}" + "".join(f"  {cell:>{col_width}}" for cell in cells))
    return "\n".join(lines)
