"""Experiment: the root of every config, with its four slots and the run-wide settings."""
import os
import random

import numpy as np
import torch

from recon_trainer.config import Configurable, run_auto_creation
from recon_trainer.data.data_source import DataSourceBase
from recon_trainer.training.model_factory import ModelFactoryBase
from recon_trainer.training.optimizer_factory import OptimizerFactoryBase
from recon_trainer.training.training_loop import TrainingLoopBase


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Experiment(Configurable):
    """A whole experiment: data source, model factory, optimizer factory and training loop."""

    data_source: DataSourceBase
    model_factory: ModelFactoryBase
    optimizer_factory: OptimizerFactoryBase
    training_loop: TrainingLoopBase
    seed: int = 42  # seeds python, numpy and torch before any slot is built
    detect_anomaly: bool = False  # torch.autograd anomaly detection: slow, for hunting NaNs
    exp_dir: str = "./runs/default_experiment"  # every output of the run goes here

    def __post_init__(self) -> None:
        seed_all(self.seed)
        run_auto_creation(self)

    def run(self) -> None:
        """Build the data, the model and the optimizer, then hand them to the training loop."""
        os.makedirs(self.exp_dir, exist_ok=True)
        torch.autograd.set_detect_anomaly(self.detect_anomaly)
        _, dataloaders = self.data_source.get_datasets_and_dataloaders()
        model = self.model_factory(exp_dir=self.exp_dir)
        optimizer, scheduler = self.optimizer_factory(model=model, exp_dir=self.exp_dir)
        self.training_loop.run(
            model=model, optimizer=optimizer, scheduler=scheduler, dataloaders=dataloaders, exp_dir=self.exp_dir
        )
