"""The evaluator slot of the training loop: runs a model over a loader and reports metrics."""
from __future__ import annotations

import abc
import math
from typing import Any, Dict, Iterable, List, Optional

import torch

from recon_trainer.config import ReplaceableBase

RESULTS_FILE = "results_test.json"  # in exp_dir: the test evaluation, written when dump_to_json


class EvaluatorBase(ReplaceableBase):
    """Evaluates a model on a loader; with `dump_to_json` writes exp_dir/results_test.json."""

    @abc.abstractmethod
    def run(
        self,
        *,
        model: torch.nn.Module,
        dataloader: Iterable,
        device: torch.device,
        exp_dir: Optional[str] = None,
        epoch: Optional[int] = None,
        dump_to_json: bool = False,
    ) -> Dict[str, float]:
        """Average metrics over the loader, keyed by metric name."""


def average_rows(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """Mean of each float field of the rows over the rows where it is not NaN (NaN when it never is)."""
    names = [k for k in (rows[0] if rows else {}) if isinstance(rows[0][k], float)]
    averages = {}
    for name in names:
        values = [row[name] for row in rows if not math.isnan(row.get(name, math.nan))]
        averages[name] = sum(values) / len(values) if values else math.nan
    return averages


def json_number(value: float) -> Optional[float]:
    """`value`, or None for NaN (JSON has no NaN)."""
    return None if math.isnan(value) else value
