"""SSCEvaluator: semantic scene completion metrics over a test set, as the original's SSCMetrics.

Every voxel with a known label (not 255) of every sample counts; the counts are summed over the
dataset before the ratios (recon_trainer/evaluation/ssc_metrics.py):
- completion (occupied = class > 0): IoU, precision, recall;
- per class: IoU = TP / (TP + FP + FN); mIoU is their mean over the classes other than empty.

metrics (the trainer's stats, fractions in [0, 1]): "IoU", "Precision", "Recall", "mIoU" and
"iou_<class>". results_test.json: {"metrics": {...}, "per_class_iou": {<class>: iou},
"n_samples": n, "eval_epoch": e}. With predictions_dir each sample's predicted labels are saved
as <name>.npy (uint8 (X, Y, Z)), as the original's generate_outputs.py does for its visualiser.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from recon_trainer.config import registry
from recon_trainer.evaluation.evaluator import Evaluation, EvaluatorBase
from recon_trainer.evaluation.ssc_metrics import SSCMetricAccumulator
from recon_trainer.fileio import atomic_path

from .batch import SSCBatch


@registry.register
class SSCEvaluator(EvaluatorBase):
    """The original's SSC metrics over everything processed (module doc)."""

    class_names: Tuple[str, ...] = ()  # names of the classes 0..C-1 (class 0 is empty); (): class_<i>
    predictions_dir: str = ""  # save each sample's predicted labels as <name>.npy here; "": none

    def __post_init__(self) -> None:
        self._accumulator: Optional[SSCMetricAccumulator] = None
        self._names: List[str] = []

    def reset(self, device: torch.device) -> None:
        self._accumulator, self._names = None, []

    def process(self, model: torch.nn.Module, batch: SSCBatch) -> None:
        if not isinstance(batch, SSCBatch):
            raise TypeError(f"SSCEvaluator: a test batch is a {type(batch).__name__}; the data source's "
                            "batch_builder_class_type must be SSCBatchBuilder")
        if batch.target is None:
            raise ValueError("SSCEvaluator: the test batch has no target voxels")
        logits = model(batch)["ssc_logits"]
        prediction = logits.argmax(dim=1)
        if self._accumulator is None:
            self._accumulator = SSCMetricAccumulator(int(logits.shape[1]))
        self._accumulator.update(prediction, batch.target)
        self._names.extend(batch.name)
        if self.predictions_dir:
            self._save(prediction, batch.name)

    def _save(self, prediction: torch.Tensor, names: List[str]) -> None:
        os.makedirs(self.predictions_dir, exist_ok=True)
        for labels, name in zip(prediction.to(torch.uint8).cpu().numpy(), names):
            path = os.path.join(self.predictions_dir, name.replace("/", "_") + ".npy")
            with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as file:
                np.save(file, labels)

    def class_name(self, index: int) -> str:
        """The name of class `index` (class_names, else class_<index>)."""
        return self.class_names[index] if index < len(self.class_names) else f"class_{index}"

    def compute(self, epoch: Optional[int] = None) -> Evaluation:
        if self._accumulator is None:
            empty = {"IoU": float("nan"), "Precision": float("nan"), "Recall": float("nan"), "mIoU": float("nan")}
            return Evaluation(empty, {"metrics": {}, "n_samples": 0, "eval_epoch": epoch}, "SSC: no test samples")
        scores = self._accumulator.compute()
        per_class = {self.class_name(i): float(v) for i, v in enumerate(scores["per_class_iou"])}
        metrics: Dict[str, float] = {"IoU": float(scores["iou"]), "Precision": float(scores["precision"]),
                                     "Recall": float(scores["recall"]), "mIoU": float(scores["miou"])}
        metrics.update({f"iou_{name}": value for name, value in per_class.items()})
        results = {"metrics": {key: metrics[key] for key in ("IoU", "Precision", "Recall", "mIoU")},
                   "per_class_iou": per_class, "n_samples": len(self._names), "eval_epoch": epoch}
        return Evaluation(metrics, results, self.summary(metrics, per_class))

    @staticmethod
    def summary(metrics: Dict[str, float], per_class: Dict[str, float]) -> str:
        """A console table in percent: completion, then per class."""
        lines = ["SSC (%): " + "  ".join(f"{key} {100 * metrics[key]:.2f}" for key in ("IoU", "Precision", "Recall",
                                                                                          "mIoU"))]
        lines.append("  ".join(f"{name} {100 * value:.2f}" for name, value in list(per_class.items())[1:]))
        return "\n".join(lines)
