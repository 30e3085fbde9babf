"""The evaluator slot of the training loop: runs a model over a loader and reports metrics."""
from __future__ import annotations

import abc
from typing import Dict, Iterable, Optional

import torch

from recon_trainer.config import ReplaceableBase


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
