"""The training_loop slot of Experiment: how the model is trained and evaluated."""
import abc
from typing import Any, Dict, Optional

import torch

from recon_trainer.config import ConfigError, ReplaceableBase, registry, run_auto_creation
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.data_source import DataLoaderMap
from recon_trainer.evaluation.evaluator import EvaluatorBase
from recon_trainer.training.accelerator_setup import create_accelerator, prepare_for_training
from recon_trainer.training.loggers import LoggingSettings
from recon_trainer.training.session import TrainingSession
from recon_trainer.training.trainer import Trainer

MIXED_PRECISION_CHOICES = ("no", "bf16", "fp16")


class TrainingLoopBase(ReplaceableBase):
    """Trains the model on the loaders, evaluates it and writes results into exp_dir.

    A loop needing nothing but the prepared objects implements `run`; one that resumes, uses
    the accelerator or stores the config overrides `run_in_session` too.
    """

    def accelerator_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of the run's accelerate.Accelerator (none by default)."""
        return {}

    def writes_checkpoints(self) -> bool:
        """Whether this loop trains and saves TrainingCheckpoints into exp_dir; then a run that
        starts afresh first moves an earlier run's checkpoints aside (none by default)."""
        return False

    def run_in_session(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
        dataloaders: DataLoaderMap,
        exp_dir: str,
        session: TrainingSession,
    ) -> None:
        """Experiment.run's entry point; by default `run` (the session is not needed)."""
        self.run(model=model, optimizer=optimizer, scheduler=scheduler, dataloaders=dataloaders, exp_dir=exp_dir)

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


@registry.register
class ReconTrainingLoop(TrainingLoopBase):
    """Epochs of training with validation and test evaluations, checkpoints, stats and loggers.

    Runs through accelerate: one process, or several under `accelerate launch` (gradients are
    averaged; only the main process writes files). Each epoch e re-seeds every generator with
    seed + e, so a resumed run continues exactly where a killed one stopped. A non-finite
    objective stops the run before the optimizer steps, naming the batch and the loss terms;
    with skip_nonfinite_steps that step is skipped instead (as MoGe's trainer does), the
    gradients zeroed, and the count logged as "skipped_steps".
    Submodules whose parameters are all frozen stay in eval mode while the rest trains. With
    ema_decay > 0 an exponential moving average of the weights is kept (and checkpointed) and,
    with ema_for_evaluation, used for validation, test evaluations and visualisations.
    """

    evaluator: Optional[EvaluatorBase]
    evaluator_class_type: Optional[str] = "NVSEvaluator"  # None: no validation / test evaluations
    eval_only: bool = False  # only evaluate the test split (writes results_test.json), no training
    max_epochs: int = 1000  # the run ends after this many epochs
    max_steps: int = -1  # budget of optimizer steps over the whole run; -1: no budget
    validation_interval: int = 1  # validate after epoch e when e % interval == 0; <= 0: never
    test_interval: int = -1  # evaluate the test split after epoch e when e % interval == 0; <= 0: never
    test_when_finished: bool = False  # evaluate the test split at the end and write results_test.json
    separate_test_sets: bool = False  # evaluate each named test set of the data source on its own (DUSt3R-style)
    clip_grad: float = 0.0  # clip the gradients' total norm to this; 0: no clipping
    # skip the optimizer step of a batch whose objective or gradients are not finite (MoGe), instead of stopping
    skip_nonfinite_steps: bool = False
    gradient_accumulation_steps: int = 1  # batches whose gradients are summed per optimizer step
    mixed_precision: str = choice_field("no", MIXED_PRECISION_CHOICES)  # no, bf16 (GPU/CPU autocast) or fp16 (GPU)
    store_checkpoints: bool = True  # save a checkpoint after every epoch
    checkpoint_keep_last: int = 2  # end-of-epoch checkpoints kept (the newest readable ones); 0: keep all
    checkpoint_interval_steps: int = 0  # also save every N optimizer steps inside an epoch; 0: never
    metric_print_interval: int = 5  # print the status line every N batches; 0: never
    progress_bar: bool = True  # a tqdm bar on a terminal (never when the output is not a terminal)
    ema_decay: float = 0.0  # keep an EMA of the weights, updated after every optimizer step (MoGe: 0.999); 0: no EMA
    ema_for_evaluation: bool = True  # with an EMA: validation, test evaluations and visualisations use its weights
    logging: LoggingSettings  # loggers, their intervals and settings, visualisations

    def __post_init__(self) -> None:
        run_auto_creation(self)
        check_choices(self)
        if self.gradient_accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps={self.gradient_accumulation_steps}: expected >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ReconTrainingLoop.ema_decay={self.ema_decay}: expected 0 (no EMA) or 0 < decay < 1")

    def writes_checkpoints(self) -> bool:
        return not self.eval_only and self.store_checkpoints

    def accelerator_kwargs(self) -> Dict[str, Any]:
        return {
            "mixed_precision": self.mixed_precision,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    def run_in_session(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
        dataloaders: DataLoaderMap,
        exp_dir: str,
        session: TrainingSession,
    ) -> None:
        Trainer(
            self, model=model, optimizer=optimizer, scheduler=scheduler, dataloaders=dataloaders,
            exp_dir=exp_dir, session=session,
        ).run()

    def run(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
        dataloaders: DataLoaderMap,
        exp_dir: str,
    ) -> None:
        """Outside an Experiment: a fresh run (no resume) with an accelerator of its own,
        seeded with torch's initial seed."""
        accelerator = create_accelerator(**self.accelerator_kwargs())
        model.to(accelerator.device)
        model, optimizer, dataloaders = prepare_for_training(accelerator, model, optimizer, dataloaders)
        session = TrainingSession(accelerator=accelerator, seed=torch.initial_seed())
        self.run_in_session(
            model=model, optimizer=optimizer, scheduler=scheduler, dataloaders=dataloaders, exp_dir=exp_dir,
            session=session,
        )
