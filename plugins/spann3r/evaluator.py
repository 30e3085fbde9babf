"""PointMapEvaluator: Spann3R's reconstruction evaluation (eval.py) and its test criterion, per dataset.

For each test sequence (batch size 1, a full video as SevenScenes(full_video=True, kf_every=20)):

1. the model's online forward, timed: FPS = frames / wall time of the forward pass
   (`model.reconstruct(batch)` returns the per-frame point maps in camera-0 coordinates, their
   confidences and the forward's seconds);
2. the test criterion Regr3D_t_ScaleShiftInv(L21, gt_scale=True) ("loss", Spann3R's loss_med is
   the median over the items);
3. with `reconstruction_metrics`: the prediction aligned to the ground truth (median z shift and
   median-norm scale, the ground truth's shift added back, moved to the world with frame 0's pose),
   the valid pixels of every frame as one point cloud each for prediction and ground truth,
   point-to-point ICP (max correspondence `icp_threshold`, `dataset_icp_thresholds` per dataset:
   DTU is in millimetres), PCA normals, then accuracy, completion and normal consistency, mean and
   median (recon_trainer/evaluation/point_cloud_metrics.py); with `point_cloud_dir` the aligned
   prediction and the ground truth are saved as coloured PLY files.

metrics (the trainer's stats): "<metric>" averaged over the datasets and "<dataset>/<metric>" for
metric in accuracy, accuracy_median, completion, completion_median, chamfer ((accuracy +
completion) / 2, the README's "CD"), nc1, nc1_median, nc2, nc2_median, fps, loss, loss_med.
results_test.json: {"metrics": {<dataset>: {...}, "mean": {...}}, "scenes": {<dataset>: {<scene>:
{...}}}, "n_scenes": {...}, "eval_epoch": e} with NaN written as null (a scene's second and later
items, with num_seq > 1, are <scene>#2, ...).
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
from typing import Dict, List, Optional

import torch

from recon_trainer.config import registry
from recon_trainer.evaluation.evaluator import Evaluation, EvaluatorBase, json_number
from recon_trainer.visualization.point_clouds import write_ply

from .alignment import AlignedPoints, align_to_ground_truth
from .batch import PointMapBatch
from .losses import scale_shift_invariant_error

MEAN_ROW = "mean"
RECONSTRUCTION_KEYS = ("accuracy", "accuracy_median", "completion", "completion_median", "chamfer", "nc1", "nc1_median",
                       "nc2", "nc2_median")


@registry.register
class PointMapEvaluator(EvaluatorBase):
    """Spann3R's evaluation per dataset and over datasets (module doc). The model must have
    `reconstruct(batch) -> Reconstruction` (Spann3RModel, DUSt3RPairModel on pairs)."""

    reconstruction_metrics: bool = True  # accuracy / completion / normal consistency after ICP (else loss and FPS only)
    icp_threshold: float = 0.1  # ICP max correspondence distance in the data's units (Spann3R: 0.1 m)
    # ICP thresholds of the datasets whose label contains the key (Spann3R: 100 for DTU, whose points are millimetres)
    dataset_icp_thresholds: Dict[str, float] = dataclasses.field(default_factory=lambda: {"DTU": 100.0})
    normal_neighbours: int = 30  # neighbours of the PCA normals (open3d's estimate_normals default: 30)
    point_cloud_dir: str = ""  # save each aligned reconstruction and its ground truth as PLY here; "": none
    max_items_per_dataset: int = 0  # evaluate only the first N sequences of each dataset; 0: all

    def __post_init__(self) -> None:
        self._rows: Dict[str, List[Dict[str, float]]] = {}
        self._scenes: Dict[str, List[str]] = {}

    def reset(self, device: torch.device) -> None:
        self._rows, self._scenes = {}, {}

    def process(self, model: torch.nn.Module, batch: PointMapBatch) -> None:
        if not isinstance(batch, PointMapBatch):
            raise TypeError(f"PointMapEvaluator: a test batch is a {type(batch).__name__}; the data source's "
                            "batch_builder_class_type must be PointMapBatchBuilder")
        reconstruct = getattr(model, "reconstruct", None)
        if reconstruct is None:
            raise TypeError(f"PointMapEvaluator: the model ({type(model).__name__}) has no reconstruct(batch)")
        if all(self._full(dataset) for dataset in batch.dataset):
            return
        result = reconstruct(batch)
        if result.order is not None:  # offline mode: the frames in the order they were reconstructed
            batch = batch.frames(result.order)
        fps = batch.num_frames * len(batch) / max(result.seconds, 1e-9)
        aligned = None
        if self.reconstruction_metrics:
            aligned = align_to_ground_truth(result.predictions, batch.points, batch.valid, batch.camera_to_world)
        for i, dataset in enumerate(batch.dataset):
            if self._full(dataset):
                continue
            item = batch.select([i])
            loss, _ = scale_shift_invariant_error(result.predictions.select([i]), item.points, item.valid,
                                                  item.camera_to_world)
            row = {"fps": fps, "loss": float(loss)}
            if aligned is not None:
                row.update(self._reconstruction_row(batch, aligned, i))
            self._rows.setdefault(dataset, []).append(row)
            self._scenes.setdefault(dataset, []).append(batch.sequence[i])

    def _reconstruction_row(self, batch: PointMapBatch, aligned: AlignedPoints, i: int) -> Dict[str, float]:
        """Accuracy, completion and normal consistency of item i after ICP (module doc, step 3)."""
        from recon_trainer.evaluation.point_cloud_metrics import (
            icp_point_to_point,
            reconstruction_metrics,
            transform_points,
        )

        valid = batch.valid[i]
        pred = aligned.points[i][valid].double().cpu().numpy()
        gt = aligned.gt_points[i][valid].double().cpu().numpy()
        if len(gt) < 3:
            return {key: math.nan for key in RECONSTRUCTION_KEYS}
        threshold = next((value for name, value in self.dataset_icp_thresholds.items() if name in batch.dataset[i]),
                         self.icp_threshold)
        pred = transform_points(pred, icp_point_to_point(pred, gt, threshold).transformation)
        metrics = reconstruction_metrics(pred, gt, normal_neighbours=self.normal_neighbours)
        if self.point_cloud_dir:
            colors = batch.rgb[i].permute(0, 2, 3, 1)[valid].cpu().numpy()
            scene = _unique([*self._scenes.get(batch.dataset[i], []), batch.sequence[i]])[-1]
            name = f"{batch.dataset[i]}-{scene}".replace("/", "_")
            os.makedirs(self.point_cloud_dir, exist_ok=True)
            write_ply(os.path.join(self.point_cloud_dir, f"{name}-pred.ply"), pred, colors)
            write_ply(os.path.join(self.point_cloud_dir, f"{name}-gt.ply"), gt, colors)
        return {key: float(metrics[key]) for key in RECONSTRUCTION_KEYS}

    def _full(self, dataset: str) -> bool:
        return 0 < self.max_items_per_dataset <= len(self._rows.get(dataset, ()))

    def compute(self, epoch: Optional[int] = None) -> Evaluation:
        table = {dataset: _summary(rows) for dataset, rows in self._rows.items()}
        names = sorted({key for values in table.values() for key in values})
        table[MEAN_ROW] = {key: _mean([values[key] for values in table.values() if key in values]) for key in names}
        metrics = dict(table[MEAN_ROW])
        for dataset, values in table.items():
            if dataset != MEAN_ROW:
                metrics.update({f"{dataset}/{key}": value for key, value in values.items()})
        results = {
            "metrics": {dataset: {k: json_number(v) for k, v in values.items()} for dataset, values in table.items()},
            "scenes": {dataset: {scene: {k: json_number(v) for k, v in row.items()}
                                 for scene, row in zip(_unique(self._scenes[dataset]), rows)}
                       for dataset, rows in self._rows.items()},
            "n_scenes": {dataset: len(rows) for dataset, rows in self._rows.items()},
            "eval_epoch": epoch,
        }
        return Evaluation(metrics=metrics, results=results, summary=_summary_table(table))


def _unique(names: List[str]) -> List[str]:
    """The names, the second and later items of a sequence suffixed #2, #3, ... (num_seq > 1)."""
    seen: Dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _mean(values: List[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _summary(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """Means over a dataset's sequences, and the median of the test criterion (loss_med)."""
    out = {key: _mean([row[key] for row in rows]) for key in rows[0]}
    losses = [row["loss"] for row in rows if not math.isnan(row["loss"])]
    out["loss_med"] = statistics.median(losses) if losses else math.nan
    return out


def _summary_table(table: Dict[str, Dict[str, float]]) -> str:
    keys = [k for k in (*RECONSTRUCTION_KEYS, "fps", "loss", "loss_med") if any(k in v for v in table.values())]
    widths = [max(9, len(k)) + 1 for k in keys]
    lines = ["dataset".ljust(14) + "".join(k.rjust(w) for k, w in zip(keys, widths))]
    for dataset, values in table.items():
        cells = "".join(f"{values.get(k, math.nan):{w}.4f}" for k, w in zip(keys, widths))
        lines.append(dataset[:14].ljust(14) + cells)
    return "\n".join(lines)
