"""The model protocol: what the training loop, the evaluators and the visualizer call."""
from __future__ import annotations

import abc
import enum
from typing import Any, Dict, Tuple

import torch

from recon_trainer.config import ReplaceableBase


class EvaluationMode(enum.Enum):
    """Whether a forward pass trains (sampled rays, noise) or evaluates (full images)."""

    TRAINING = "training"
    EVALUATION = "evaluation"


class ModelBase(ReplaceableBase, torch.nn.Module):
    """A trainable model.

    `forward(batch, evaluation_mode)` returns a dict of predictions. In training mode it holds
    "objective" (a scalar tensor to minimise) and every loss term as "loss_<name>" (scalars);
    the training loop logs the keys named in `log_vars`.
    """

    @property
    def log_vars(self) -> Tuple[str, ...]:
        """The prediction keys averaged per epoch and logged."""
        return ("objective",)

    @abc.abstractmethod
    def forward(self, batch: Any, evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION) -> Dict[str, Any]:
        """Implemented by each subclass."""
