"""The smallest complete plugin: fit y = slope * x + intercept to noisy points.

It fills every slot of Experiment with a class of its own, the way a user's plugin module would.
Run it through its launcher:

    python -m recon_trainer_plugins.examples.launch_line_fit --config-name example_line_fit exp_dir=runs/line
"""
import json
import os
from typing import Optional, Tuple

import torch

from recon_trainer.config import registry
from recon_trainer.data.data_source import DataLoaderMap, DataSourceBase, DatasetMap
from recon_trainer.fileio import atomic_write
from recon_trainer.training.model_factory import ModelFactoryBase
from recon_trainer.training.optimizer_factory import OptimizerFactoryBase
from recon_trainer.training.training_loop import TrainingLoopBase


@registry.register
class LineDataSource(DataSourceBase):
    """Noisy samples of y = slope * x + intercept with x uniform in [-1, 1]."""

    slope: float = 2.0
    intercept: float = -0.5
    noise_std: float = 0.05  # standard deviation of the Gaussian noise added to y
    n_train: int = 256
    n_test: int = 64
    batch_size: int = 32
    data_seed: int = 0  # the points are the same for every run with this seed

    def _split(self, n: int, generator: torch.Generator) -> torch.utils.data.TensorDataset:
        x = torch.rand(n, 1, generator=generator) * 2 - 1
        y = self.slope * x + self.intercept + self.noise_std * torch.randn(n, 1, generator=generator)
        return torch.utils.data.TensorDataset(x, y)

    def get_datasets_and_dataloaders(self) -> Tuple[DatasetMap, DataLoaderMap]:
        generator = torch.Generator().manual_seed(self.data_seed)
        datasets = DatasetMap(train=self._split(self.n_train, generator), test=self._split(self.n_test, generator))
        loaders = DataLoaderMap(
            train=torch.utils.data.DataLoader(datasets.train, batch_size=self.batch_size, shuffle=True),
            test=torch.utils.data.DataLoader(datasets.test, batch_size=self.batch_size),
        )
        return datasets, loaders


@registry.register
class LineModelFactory(ModelFactoryBase):
    """One linear unit y = w * x + b, randomly initialised."""

    def __call__(self, *, exp_dir: str) -> torch.nn.Module:
        return torch.nn.Linear(1, 1)


@registry.register
class SGDOptimizerFactory(OptimizerFactoryBase):
    """Stochastic gradient descent with momentum and a constant learning rate."""

    lr: float = 0.1
    momentum: float = 0.9

    def __call__(self, *, model: torch.nn.Module, exp_dir: str) -> Tuple[torch.optim.Optimizer, None]:
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum), None


@registry.register
class LineFitLoop(TrainingLoopBase):
    """Minimises the mean squared error, then writes the fitted line to exp_dir/line_fit.json."""

    n_epochs: int = 30

    def run(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
        dataloaders: DataLoaderMap,
        exp_dir: str,
    ) -> None:
        for epoch in range(self.n_epochs):
            for x, y in dataloaders.train:
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
        with torch.no_grad():
            test_mse = sum(torch.nn.functional.mse_loss(model(x), y, reduction="sum") for x, y in dataloaders.test)
            test_mse = float(test_mse) / len(dataloaders.test.dataset)
            result = {"slope": model.weight.item(), "intercept": model.bias.item(), "test_mse": test_mse}
        print(f"fitted y = {result['slope']:.3f} x + {result['intercept']:.3f}, test MSE {test_mse:.5f}")
        atomic_write(os.path.join(exp_dir, "line_fit.json"), json.dumps(result, indent=2))
