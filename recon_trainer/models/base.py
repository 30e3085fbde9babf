"""The model protocol: what the training loop, the evaluators and the visualizer call."""
from __future__ import annotations

import abc
import dataclasses
import enum
from typing import Any, Callable, Dict, Tuple

import torch

from recon_trainer.config import ReplaceableBase
from recon_trainer.errors import NonFiniteError


class EvaluationMode(enum.Enum):
    """Whether a forward pass trains (sampled rays, noise) or evaluates (full images)."""

    TRAINING = "training"
    EVALUATION = "evaluation"


@dataclasses.dataclass
class TrainStepContext:
    """Where the run is when `ModelBase.train_step` is called, and how to run the forward pass.

    global_step: optimizer steps taken so far (the step this batch contributes to is global_step + 1).
    epoch: the epoch being trained (0-based). batch_index: the batch's index in the epoch.
    forward: the model's forward as the trainer prepared it (the multi-process wrapper that
        averages gradients, autocast under mixed precision); call it, not `self(...)`, for the
        pass whose objective is minimised: `forward(batch, evaluation_mode=EvaluationMode.TRAINING)`.
    """

    global_step: int
    epoch: int
    batch_index: int
    forward: Callable[..., Dict[str, Any]]


class ModelBase(ReplaceableBase, torch.nn.Module):
    """A trainable model.

    `forward(batch, evaluation_mode)` returns a dict of predictions. In training mode it holds
    "objective" (a scalar tensor to minimise) and every loss term as "loss_<name>" (scalars);
    the training loop logs the keys named in `log_vars`.

    Optional hooks the training loop calls (the defaults do nothing special):
    `on_train_step_start(global_step, epoch)` before each training batch (a schedule of the
    model's own: token counts, loss weights, annealing); `train_step(batch, context)`, the
    training pass of one batch (default: forward in TRAINING mode); `visualize(batch)`, images
    of a fixed validation batch for the loggers every `visualize_interval` steps.
    """

    @property
    def log_vars(self) -> Tuple[str, ...]:
        """The prediction keys averaged per epoch and logged."""
        return ("objective",)

    @abc.abstractmethod
    def forward(self, batch: Any, evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION) -> Dict[str, Any]:
        """Implemented by each subclass."""

    def on_train_step_start(self, global_step: int, epoch: int) -> None:
        """Called on every process before each training batch's forward pass: `global_step`
        optimizer steps have been taken (batches accumulated into one step see the same value),
        `epoch` is being trained. Must depend on (global_step, epoch) only, so a resumed run
        behaves like an uninterrupted one. Does nothing by default."""

    def train_step(self, batch: Any, context: TrainStepContext) -> Dict[str, Any]:
        """The predictions of one training batch, with "objective" (which the trainer checks,
        back-propagates and steps on) and the loss terms. Override to own the training pass
        (several forwards, a teacher, ...), running the differentiated pass through
        `context.forward`. Default: `context.forward(batch, evaluation_mode=TRAINING)`."""
        return context.forward(batch, evaluation_mode=EvaluationMode.TRAINING)

    def visualize(self, batch: Any) -> Dict[str, torch.Tensor]:
        """Images of `batch` for the loggers: name -> (3, H, W) or (H, W) float in [0, 1] (the
        name becomes the file name: letters, digits, `_-.`). Called in eval mode under no_grad on
        the main process only, with a fixed validation batch on the model's device. Default: no
        images."""
        return {}


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
