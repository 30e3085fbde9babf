"""The evaluator slot of the training loop: runs a model over a loader and reports metrics.

Evaluators work in two phases (as mmengine's metrics do): `process` runs the model on one batch
and keeps what it needs of the result (per-item rows), `compute` turns everything processed since
`reset` into an Evaluation: the flat metrics the trainer logs, the entries of results_test.json
and a printed summary. `evaluate` strings them together over a loader; `run` also prints the
summary and writes the results. The metric functions
themselves live in evaluation/*_metrics.py; an evaluator reads the batch's typed fields.
"""
from __future__ import annotations

import abc
import dataclasses
import json
import math
import os
from typing import Any, Dict, Iterable, List, Optional

import torch

from recon_trainer.config import ReplaceableBase
from recon_trainer.fileio import atomic_write

RESULTS_FILE = "results_test.json"  # in exp_dir: the test evaluation, written when dump_to_json


@dataclasses.dataclass
class Evaluation:
    """What one evaluation pass gives.

    metrics: {name: value} averaged over the items (NaN: no item had a value); the trainer's stats.
    results: the content of results_test.json (JSON-ready: no NaN).
    summary: a table for the console.
    """

    metrics: Dict[str, float]
    results: Any
    summary: str


class EvaluatorBase(ReplaceableBase):
    """Evaluates a model on a loader in two phases (module doc); with `dump_to_json` `run`
    writes exp_dir/results_test.json."""

    def reset(self, device: torch.device) -> None:
        """Forget every processed batch and prepare a pass on `device` (e.g. load a metric network)."""

    @abc.abstractmethod
    def process(self, model: torch.nn.Module, batch: Any) -> None:
        """Run `model` (in eval mode, without gradients) on one batch, already on the device, and
        keep its per-item results."""

    @abc.abstractmethod
    def compute(self, epoch: Optional[int] = None) -> Evaluation:
        """The Evaluation of everything processed since `reset`; `epoch` is recorded in the results."""

    def evaluate(
        self, *, model: torch.nn.Module, dataloader: Iterable, device: torch.device, epoch: Optional[int] = None
    ) -> Evaluation:
        """reset, process every batch of the loader (model in eval mode, no gradients; its mode is
        restored after), compute."""
        self.reset(device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in dataloader:
                    self.process(model, batch.to(device) if hasattr(batch, "to") else batch)
        finally:
            model.train(was_training)
        return self.compute(epoch)

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
        """`evaluate`, print the summary and, with dump_to_json, write exp_dir/results_test.json
        atomically. Returns the metrics."""
        if dump_to_json and exp_dir is None:
            raise ValueError(f"{type(self).__name__}.run: dump_to_json=True needs exp_dir")
        evaluation = self.evaluate(model=model, dataloader=dataloader, device=device, epoch=epoch)
        print(evaluation.summary)
        if dump_to_json:
            write_results(exp_dir, evaluation.results)
        return evaluation.metrics


def write_results(exp_dir: str, results: Any) -> str:
    """exp_dir/results_test.json with `results` (JSON-ready), written atomically; its path."""
    path = os.path.join(exp_dir, RESULTS_FILE)
    atomic_write(path, json.dumps(results, indent=2))
    return path


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
