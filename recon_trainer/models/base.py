"""The model protocol: what the training loop, the evaluators and the visualizer call."""
from __future__ import annotations

import abc
import enum
from typing import Any, Dict, Tuple

import torch

from recon_trainer.config import ReplaceableBase
from recon_trainer.errors import NonFiniteError


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


def require_finite(name: str, tensor: torch.Tensor) -> None:
    """NonFiniteError naming `name` when `tensor` holds NaN or inf.

    Call it on a model output before an operation that fails on such values instead of
    returning NaN (e.g. binary_cross_entropy): the training loop then reports it like a
    non-finite objective. Costs one reduction and one device sync.
    """
    finite = torch.isfinite(tensor.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise NonFiniteError(f"{name} holds {bad} NaN or infinite value(s) of {tensor.numel()}")
