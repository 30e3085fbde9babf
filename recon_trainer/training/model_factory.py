"""The model_factory slot of Experiment: builds the model to train."""
import abc

import torch

from recon_trainer.config import ReplaceableBase


class ModelFactoryBase(ReplaceableBase):
    """Builds the model to train (and restores it from a checkpoint where that applies)."""

    @abc.abstractmethod
    def __call__(self, *, exp_dir: str) -> torch.nn.Module:
        """The model; `exp_dir` holds the experiment's outputs and checkpoints."""
