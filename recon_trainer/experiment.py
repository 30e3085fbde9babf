"""Experiment: the root of every config, with its four slots and the run-wide settings."""
import logging
import os
from typing import TYPE_CHECKING, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from recon_trainer.config import Configurable, remove_unused_components, run_auto_creation
from recon_trainer.data.data_source import DataSourceBase
from recon_trainer.errors import RunDirectoryError
from recon_trainer.fileio import atomic_write, remove_temporary_files
from recon_trainer.training.accelerator_setup import create_accelerator, prepare_for_training
from recon_trainer.training.checkpoints import (
    TrainingCheckpoint,
    config_differences,
    config_digest,
    list_checkpoints,
    restore_optimizer_and_scheduler,
)
from recon_trainer.training.model_factory import ModelFactoryBase
from recon_trainer.training.optimizer_factory import OptimizerFactoryBase
from recon_trainer.training.random_state import seed_all
from recon_trainer.training.run_directory import (
    EXPCONFIG_FILE,
    OVERRIDES_FILE,
    ExpDirLock,
    run_record_paths,
    set_aside,
)
from recon_trainer.training.session import TrainingSession
from recon_trainer.training.training_loop import TrainingLoopBase

if TYPE_CHECKING:  # accelerate is imported where a run starts: --cfg job and --help never load it
    from accelerate import Accelerator

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

    def run(self, overrides: Optional[Sequence[str]] = None) -> None:
        """Lock exp_dir, then data, model, optimizer, resume, the run's config files and the
        training loop.

        One process normally, several under `accelerate launch`; only the main process takes
        the lock and writes. exp_dir/expconfig.yaml gets the resolved config and, when
        `overrides` (the command line's) are given, exp_dir/overrides.yaml gets them. A run
        that trains from scratch where an earlier run left checkpoints moves them (and that
        run's config files) into exp_dir/earlier_runs/<date_time>/ first; one that resumes
        from a checkpoint that is not the newest file moves the newer files there.
        """
        accelerator = create_accelerator(**self.training_loop.accelerator_kwargs())
        lock = ExpDirLock(self.exp_dir)
        self._take_lock(accelerator, lock)
        try:
            if accelerator.is_main_process:
                remove_temporary_files(self.exp_dir)
            self._run_locked(accelerator, overrides)
        finally:
            lock.release()

    def _take_lock(self, accelerator: "Accelerator", lock: ExpDirLock) -> None:
        """The main process takes exp_dir's lock; when it cannot, every process stops."""
        error = None
        if accelerator.is_main_process:
            try:
                lock.acquire()
            except RunDirectoryError as refused:
                error = refused
        if accelerator.num_processes > 1:
            failed = accelerator.reduce(torch.tensor([float(error is not None)], device=accelerator.device), "sum")
            if error is None and failed.item() > 0:
                error = RunDirectoryError(f"the main process could not take the lock of exp_dir {self.exp_dir}")
        if error is not None:
            raise error

    def _run_locked(self, accelerator: "Accelerator", overrides: Optional[Sequence[str]]) -> None:
        torch.autograd.set_detect_anomaly(self.detect_anomaly)
        _, dataloaders = self.data_source.get_datasets_and_dataloaders()
        model = self.model_factory(exp_dir=self.exp_dir)
        checkpoint = self.model_factory.resumed_checkpoint()
        model.to(accelerator.device)
        optimizer, scheduler = self.optimizer_factory(model=model, exp_dir=self.exp_dir)
        config_yaml = OmegaConf.to_yaml(self.resolved_config())
        if accelerator.is_main_process:
            if self.training_loop.writes_checkpoints():
                self._set_aside_earlier_files(checkpoint)
            self._save_run_config(config_yaml, overrides)
        if checkpoint is not None:
            notes = restore_optimizer_and_scheduler(checkpoint, optimizer, scheduler)
            if accelerator.is_main_process and (notes or checkpoint.config_digest != config_digest(config_yaml)):
                self._warn_config_changes(checkpoint.path, checkpoint.config_yaml, config_yaml, notes)
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

    def _set_aside_earlier_files(self, checkpoint: Optional[TrainingCheckpoint]) -> None:
        """Move what this run would overwrite into exp_dir/earlier_runs/<date_time>/: from a
        fresh start, every checkpoint and the earlier run's config, plot and results; from a
        resume, the checkpoint files newer than the one resumed from."""
        files = list_checkpoints(self.exp_dir)
        if checkpoint is None:
            if files:
                paths = [found.path for found in files] + run_record_paths(self.exp_dir)
                set_aside(self.exp_dir, paths, "Starting afresh where an earlier run left checkpoints")
            return
        resumed = next((found for found in files if found.path == checkpoint.path), None)
        newer = [found.path for found in files if resumed is not None and found.order > resumed.order]
        set_aside(self.exp_dir, newer, f"Resuming from {checkpoint.path}, which is not the newest checkpoint file")

    def _save_run_config(self, config_yaml: str, overrides: Optional[Sequence[str]]) -> None:
        """exp_dir/expconfig.yaml and (with overrides) exp_dir/overrides.yaml, each atomically."""
        atomic_write(os.path.join(self.exp_dir, EXPCONFIG_FILE), config_yaml)
        if overrides is not None:
            overrides_yaml = OmegaConf.to_yaml(OmegaConf.create(list(overrides)))
            atomic_write(os.path.join(self.exp_dir, OVERRIDES_FILE), overrides_yaml)

    @staticmethod
    def _warn_config_changes(path: str, saved_yaml: str, current_yaml: str, notes: List[str]) -> None:
        changes = config_differences(saved_yaml, current_yaml) if saved_yaml else []
        listed = changes[:MAX_LISTED_CHANGES]
        more = len(changes) - len(listed)
        lines = ["  " + line for line in listed] + ([f"  ... and {more} more"] if more > 0 else [])
        lines += [f"  Not carried over: {note}" for note in notes]
        logger.warning(
            "Resuming from %s with a config that differs in %d key(s); the new values apply from here on "
            "(learning rates, optimizer settings, epochs, step budget, intervals, loggers, data):\n%s",
            path, len(changes), "\n".join(lines),
        )
