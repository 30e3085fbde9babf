"""The training_loop slot of Experiment: how the model is trained and evaluated."""
import abc
from typing import Optional

import torch

from recon_trainer.config import ReplaceableBase
from recon_trainer.data.data_source import DataLoaderMap


class TrainingLoopBase(ReplaceableBase):
    """Trains the model on the loaders, evaluates it and writes results into exp_dir."""

    @abc.abstractmethod
    def run(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
        dataloaders: DataLoaderMap,
        exp_dir: str,
    ) -> None:
        """Train and evaluate."""
