"""Experiment: the root of every config, with its four slots and the run-wide settings."""
import logging
import os

import torch
from omegaconf import DictConfig, OmegaConf

from recon_trainer.config import Configurable, remove_unused_components, run_auto_creation
from recon_trainer.data.data_source import DataSourceBase
from recon_trainer.training.accelerator_setup import create_accelerator, prepare_for_training
from recon_trainer.training.checkpoints import config_differences, config_digest, restore_optimizer_and_scheduler
from recon_trainer.training.model_factory import ModelFactoryBase
from recon_trainer.training.optimizer_factory import OptimizerFactoryBase
from recon_trainer.training.random_state import seed_all
from recon_trainer.training.training_loop import TrainingLoopBase, TrainingSession

logger = logging.getLogger(__name__)

__all__ = ["Experiment", "seed_all"]

MAX_LISTED_CHANGES = 20


class Experiment(Configurable):
    """A whole experiment: data source, model factory, optimizer factory and training loop."""

    data_source: DataSourceBase
    model_factory: ModelFactoryBase
    optimizer_factory: OptimizerFactoryBase
    training_loop: TrainingLoopBase
    seed: int = 42  # seeds python, numpy and torch before any slot is built
    detect_anomaly: bool = False  # torch.autograd anomaly detection: slow, for hunting NaNs
    exp_dir: str = "./runs/default_experiment"  # every output of the run goes here

    data_source_class_type: str = "ReconDataSource"
    model_factory_class_type: str = "ReconModelFactory"
    optimizer_factory_class_type: str = "ReconOptimizerFactory"
    training_loop_class_type: str = "ReconTrainingLoop"

    def __post_init__(self) -> None:
        seed_all(self.seed)
        run_auto_creation(self)

    def resolved_config(self) -> DictConfig:
        """This experiment's config: interpolations resolved, only the chosen implementations' args."""
        config = OmegaConf.structured(self)
        remove_unused_components(config)
        OmegaConf.resolve(config)
        return config

    def run(self) -> None:
        """Accelerator, data, model, optimizer, resume, then the training loop.

        One process normally, several under `accelerate launch`; only the main process writes.
        """
        accelerator = create_accelerator(**self.training_loop.accelerator_kwargs())
        if accelerator.is_main_process:
            os.makedirs(self.exp_dir, exist_ok=True)
        torch.autograd.set_detect_anomaly(self.detect_anomaly)
        _, dataloaders = self.data_source.get_datasets_and_dataloaders()
        model = self.model_factory(exp_dir=self.exp_dir)
        checkpoint = self.model_factory.resumed_checkpoint()
        model.to(accelerator.device)
        optimizer, scheduler = self.optimizer_factory(model=model, exp_dir=self.exp_dir)
        config_yaml = OmegaConf.to_yaml(self.resolved_config())
        if checkpoint is not None:
            restore_optimizer_and_scheduler(checkpoint, optimizer, scheduler)
            if accelerator.is_main_process and checkpoint.config_digest != config_digest(config_yaml):
                self._warn_config_changes(checkpoint.path, checkpoint.config_yaml, config_yaml)
        model, optimizer, dataloaders = prepare_for_training(accelerator, model, optimizer, dataloaders)
        session = TrainingSession(
            accelerator=accelerator, seed=self.seed, config_yaml=config_yaml, checkpoint=checkpoint
        )
        self.training_loop.run_in_session(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            dataloaders=dataloaders,
            exp_dir=self.exp_dir,
            session=session,
        )

    @staticmethod
    def _warn_config_changes(path: str, saved_yaml: str, current_yaml: str) -> None:
        changes = config_differences(saved_yaml, current_yaml) if saved_yaml else []
        if changes:
            listed = changes[:MAX_LISTED_CHANGES]
            more = len(changes) - len(listed)
            logger.warning(
                "Resuming from %s with a config that differs in %d key(s):\n  %s%s",
                path, len(changes), "\n  ".join(listed), f"\n  ... and {more} more" if more > 0 else "",
            )
