"""The optimizer_factory slot of Experiment: the optimizer and learning-rate schedule."""
import abc
from typing import Optional, Tuple

import torch

from recon_trainer.config import ReplaceableBase


class OptimizerFactoryBase(ReplaceableBase):
    """Builds the optimizer over a model's parameters and its learning-rate scheduler."""

    @abc.abstractmethod
    def __call__(
        self, *, model: torch.nn.Module, exp_dir: str
    ) -> Tuple[torch.optim.Optimizer, Optional[torch.optim.lr_scheduler.LRScheduler]]:
        """(optimizer, scheduler or None) for `model`."""
