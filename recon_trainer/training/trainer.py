"""One training run of ReconTrainingLoop: epochs, evaluations, checkpoints, stats and loggers.

The loop's config (ReconTrainingLoop) stays a plain settings object; the state of a run (step
counters, stats, loggers) lives here.

SIGINT and SIGTERM during training are honoured at the next point where the run can be saved:
after the current optimizer step (a mid-epoch checkpoint is written) or after the epoch's
validation and end-of-epoch checkpoint; the run then ends with RunInterrupted. Where nothing
would be lost (an evaluation-only run, the final test) it stops at once.

Per training batch: the data's epoch hooks at the start of each epoch, the model's
`on_train_step_start(global_step, epoch)` and `train_step(batch, context)`, the finite check,
backward and optimizer step; after each optimizer step the EMA of the weights (if any), the
learning-rate schedule (a ScheduleLR is set from (epoch, step) after every step and every
epoch; another torch scheduler steps once per epoch), the step's logs and visualisations.
"""
import contextlib
import io
import itertools
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any, ContextManager, Dict, Iterable, List, Mapping, Optional

import torch
import tqdm

from recon_trainer.config import ConfigError
from recon_trainer.data import epoch_hooks
from recon_trainer.data.data_source import DataLoaderMap
from recon_trainer.errors import NonFiniteError, RunInterrupted
from recon_trainer.evaluation.evaluator import write_results
from recon_trainer.models.base import EvaluationMode, TrainStepContext
from recon_trainer.training.checkpoints import (
    TrainingCheckpoint,
    checkpoint_problem,
    config_digest,
    purge_checkpoints,
    save_checkpoint,
    scheduler_state_dict,
)
from recon_trainer.training.ema import WeightEMA
from recon_trainer.training.finite_guard import check_finite_step, gradients_finite
from recon_trainer.training.interrupts import InterruptHandler, interrupted_message, shield_loader_workers
from recon_trainer.training.loggers import LoggerSettings, MetricLogger, create_loggers
from recon_trainer.training.loggers.image_files import ImageFolderLogger
from recon_trainer.training.random_state import get_rng_state, seed_all, set_rng_state
from recon_trainer.training.schedules import ScheduleLR
from recon_trainer.training.stats import TrainingStats, status_line
from recon_trainer.training.train_mode import set_train_mode
from recon_trainer.training.session import TrainingSession

if TYPE_CHECKING:
    from recon_trainer.training.training_loop import ReconTrainingLoop

logger = logging.getLogger(__name__)

STATS_PLOT = "train_stats.png"


class Trainer:
    """Runs `settings` (a ReconTrainingLoop) on prepared objects; see ReconTrainingLoop."""

    def __init__(
        self,
        settings: "ReconTrainingLoop",
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
        dataloaders: DataLoaderMap,
        exp_dir: str,
        session: TrainingSession,
    ) -> None:
        self.settings = settings
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loaders = dataloaders
        self.exp_dir = exp_dir
        self.session = session
        self.accelerator = session.accelerator
        self.is_main = self.accelerator.is_main_process
        self.stats = TrainingStats()
        self.global_step = 0
        self.start_epoch, self.start_batch = 0, 0
        self.resume_rng: Optional[Dict[str, Any]] = None
        self.skipped_steps = 0  # optimizer steps skipped for non-finite gradients (skip_nonfinite_steps)
        checkpoint = session.checkpoint
        if checkpoint is not None:
            self.stats.load_state_dict(checkpoint.stats)
            self.global_step = checkpoint.global_step
            self.start_epoch, self.start_batch = checkpoint.resume_position
            self.resume_rng = None if checkpoint.epoch_finished else checkpoint.rng
            if checkpoint.grad_scaler is not None and self.accelerator.scaler is not None:
                self.accelerator.scaler.load_state_dict(checkpoint.grad_scaler)
        self.saved_position = None
        self.last_checkpoint = "none"
        self.readable: Dict[str, bool] = {}  # checkpoint path -> whether it can be read (purge counts only these)
        if checkpoint is not None:
            self.saved_position = (checkpoint.epoch, None if checkpoint.epoch_finished else checkpoint.batches_done)
            self.last_checkpoint = checkpoint.path
            self.readable[checkpoint.path] = True
        self.unwrapped = self.accelerator.unwrap_model(model)
        self.log_vars = tuple(getattr(self.unwrapped, "log_vars", ("objective",)))
        self.ema = self._create_ema(checkpoint)
        self.fixed_batch: Any = None  # the batch visualize() sees (when visualize_interval > 0)
        self.loggers: List[MetricLogger] = []
        self.interrupts = InterruptHandler(self._where_interrupted)
        self.position = (self.start_epoch, self.start_batch)  # (epoch, batch) being trained
        self.phase = "training"
        for loader in (self.loaders.train, self.loaders.val, self.loaders.test):
            shield_loader_workers(loader)

    def run(self) -> None:
        """Evaluate only, or train (from the resume position) and evaluate as configured."""
        logging_settings = self.settings.logging
        if self.is_main:
            self.loggers = create_loggers(logging_settings.loggers, self._logger_settings())
            if logging_settings.visualize_interval > 0 and logging_settings.save_visualizations:
                self.loggers.append(ImageFolderLogger(self.exp_dir))
        try:
            with self.interrupts:
                if self.settings.eval_only:
                    self.phase = "the test evaluation"
                    self._evaluate_test(dump_to_json=True)
                else:
                    with self.interrupts.deferred():
                        self._train()
                    if self.settings.test_when_finished:
                        self.phase = "the final test evaluation"
                        self._evaluate_test(dump_to_json=True)
        finally:
            for metric_logger in self.loggers:
                metric_logger.close()
        self.accelerator.wait_for_everyone()  # not after an error: the other processes may be elsewhere

    def _where_interrupted(self, signum: int) -> str:
        """Where a signal that stops the run at once found it, and what is saved."""
        if self.phase != "training":
            return f"during {self.phase}; the newest checkpoint is {self.last_checkpoint}"
        epoch, batch = self.position
        return f"at epoch {epoch}, batch {batch} without saving; the newest checkpoint is {self.last_checkpoint}"

    def _stop_requested(self) -> bool:
        """Whether any process received SIGINT / SIGTERM (the processes agree, so all stop together)."""
        requested = self.interrupts.requested is not None
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([float(requested)], device=self.accelerator.device)
            requested = bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)
        return requested

    def _stop(self, where: str) -> None:
        """End the run after a signal: RunInterrupted naming where and the checkpoint written."""
        signum = self.interrupts.requested or signal.SIGTERM  # another process got it
        if self.settings.store_checkpoints:
            saved = f"saved {self.last_checkpoint}; run the same command to resume"
        else:
            saved = "nothing saved (store_checkpoints=false)"
        raise RunInterrupted(signum, interrupted_message(signum, f"{where}: {saved}"))

    def _logger_settings(self) -> LoggerSettings:
        return self.settings.logging.for_run(self.exp_dir, self.global_step, self.session.config_yaml)

    def _create_ema(self, checkpoint: Optional[TrainingCheckpoint]) -> Optional[WeightEMA]:
        """The EMA of the weights (ema_decay > 0), restored from the checkpoint when it has one."""
        if self.settings.ema_decay <= 0:
            return None
        ema = WeightEMA(self.unwrapped, self.settings.ema_decay)
        if checkpoint is None:
            return ema
        if checkpoint.ema is None:
            if self.is_main:
                logger.warning("Checkpoint %s holds no EMA of the weights: the average starts from its weights.",
                               checkpoint.path)
            return ema
        missing = ema.load_state_dict(checkpoint.ema)
        if missing and self.is_main:
            logger.warning("The EMA in %s lacks %d parameter(s) (%s, ...): they start from the model's values.",
                           checkpoint.path, len(missing), missing[0])
        checkpoint.ema = None  # the averages live in `ema` now
        return ema

    # ---------------------------------------------------------------- training

    def _train(self) -> None:
        if self.loaders.train is None:
            raise ConfigError("the data source gives no train loader: nothing to train on (eval_only=true evaluates)")
        if isinstance(self.scheduler, ScheduleLR):  # the rates where the run starts (or resumes)
            self.scheduler.advance(epoch=self.start_epoch, step=self.global_step)
        if self.settings.logging.visualize_interval > 0 and self.is_main:
            self.fixed_batch = self._first_batch()
        for epoch in range(self.start_epoch, self.settings.max_epochs):
            if self._budget_spent():
                break
            if not self._train_epoch(epoch):
                break
            self._finish_epoch(epoch)
            if self._stop_requested():
                self._stop(f"at the end of epoch {epoch}")
        if self._budget_spent():
            logger.info("Reached max_steps=%d (optimizer steps).", self.settings.max_steps)

    def _budget_spent(self) -> bool:
        return 0 <= self.settings.max_steps <= self.global_step

    def _train_epoch(self, epoch: int) -> bool:
        """Train one epoch from the resume position; False when the step budget ran out in it."""
        s = self.settings
        first = self.start_batch if epoch == self.start_epoch else 0
        resume_rng = self.resume_rng if epoch == self.start_epoch else None
        if first == 0:
            self.stats.start_epoch(epoch)
        self._seed_epoch(epoch)
        epoch_hooks.start_epoch(self.loaders.train, epoch, s.max_epochs)
        n_batches = len(self.loaders.train)
        if resume_rng is not None and first >= n_batches:  # nothing left to train in this epoch
            set_rng_state(resume_rng)
        set_train_mode(self.model)
        bar = tqdm.tqdm(
            total=n_batches, initial=first, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True,
            disable=True if not (self.is_main and s.progress_bar) else None,  # None: only on a terminal
        )
        last_time = time.perf_counter()
        for batch_index, batch in enumerate(self._batches(first), start=first):
            self.position = (epoch, batch_index)
            if batch_index == first and resume_rng is not None:
                set_rng_state(resume_rng)  # the generators as they were after batch `first` - 1
            if self._budget_spent():
                self._save(epoch, batch_index, epoch_finished=False)
                bar.close()
                return False
            values = self._train_step(epoch, batch_index, batch)
            now = time.perf_counter()
            values["sec/it"] = now - last_time
            last_time = now
            self.stats.update("train", values)
            bar.update(1)
            if self.accelerator.sync_gradients:
                self.global_step += 1
                self._after_optimizer_step(epoch, values)
                if s.checkpoint_interval_steps > 0 and self.global_step % s.checkpoint_interval_steps == 0:
                    self._save(epoch, batch_index + 1, epoch_finished=False)
            if self.is_main and s.metric_print_interval > 0 and (batch_index + 1) % s.metric_print_interval == 0:
                bar.write(status_line("train", epoch, self.stats.averages("train"), batch_index + 1, n_batches))
            if self.accelerator.sync_gradients and self._stop_requested():
                bar.close()
                self._save(epoch, batch_index + 1, epoch_finished=False)
                self._stop(f"at epoch {epoch}, batch {batch_index + 1} of {n_batches}")
        bar.close()
        return True

    def _after_optimizer_step(self, epoch: int, values: Mapping[str, float]) -> None:
        """EMA update, the schedule's next rates, the step's values and images to the loggers."""
        logging_settings = self.settings.logging
        if self.ema is not None:
            self.ema.update(self.unwrapped)
        if isinstance(self.scheduler, ScheduleLR):
            self.scheduler.advance(epoch=epoch, step=self.global_step)
        interval = logging_settings.metric_log_interval_steps
        if interval > 0 and self.global_step % interval == 0:
            for metric_logger in self.loggers:
                metric_logger.log_step(self.global_step, values)
        interval = logging_settings.visualize_interval
        if interval > 0 and self.global_step % interval == 0:
            self._visualize()

    def _seed_epoch(self, epoch: int) -> None:
        """Seed every generator with seed + epoch (and the loader's own shuffling generator,
        which accelerate gives a multi-process loader), so the epoch's order is reproducible."""
        seed_all(self.session.seed + epoch)
        generator = getattr(self.loaders.train, "synchronized_generator", None)
        if generator is not None:
            generator.manual_seed(self.session.seed + epoch)

    def _batches(self, first: int) -> Iterable[Any]:
        """The train loader's batches from index `first` on (the earlier ones are not loaded)."""
        loader = self.loaders.train
        if first == 0:
            return loader
        if isinstance(loader, torch.utils.data.DataLoader):
            from accelerate import skip_first_batches

            return skip_first_batches(loader, first)
        return itertools.islice(loader, first, None)

    def _train_step(self, epoch: int, batch_index: int, batch: Any) -> Dict[str, float]:
        """Forward, finite check, backward, clip and step (accumulated as configured); the
        batch's logged values."""
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            if hasattr(batch, "to"):
                batch = batch.to(accelerator.device)
            hook = getattr(self.unwrapped, "on_train_step_start", None)
            if hook is not None:
                hook(self.global_step, epoch)
            try:
                preds, output_problem = self._forward_training(epoch, batch_index, batch), None
            except NonFiniteError as error:  # a model output checked before a loss that fails on it
                preds, output_problem = {}, str(error)
            skipping = self.settings.skip_nonfinite_steps
            if not (skipping and output_problem is None):
                check_finite_step(
                    preds, output_problem, epoch=epoch, batch_index=batch_index, batch=batch, accelerator=accelerator,
                    model=self.model, last_checkpoint=self.last_checkpoint,
                )
            accelerator.backward(preds["objective"])  # non-finite: non-finite (averaged) gradients on every process
            if skipping and accelerator.sync_gradients and not gradients_finite(self.model):
                self.skipped_steps += 1
            else:
                if accelerator.sync_gradients and self.settings.clip_grad > 0:
                    accelerator.clip_grad_norm_(self.model.parameters(), self.settings.clip_grad)
                self.optimizer.step()
            self.optimizer.zero_grad()
        names = [name for name in self.log_vars if name in preds]
        logged = torch.stack([torch.as_tensor(preds[name]).detach().float().reshape(()) for name in names])
        values = dict(zip(names, logged.tolist()))  # one device sync for all values
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.settings.skip_nonfinite_steps:
            values["skipped_steps"] = float(self.skipped_steps)
        return values

    def _forward_training(self, epoch: int, batch_index: int, batch: Any) -> Dict[str, Any]:
        """The model's `train_step` (a ModelBase), or its forward in training mode."""
        train_step = getattr(self.unwrapped, "train_step", None)
        if train_step is None:
            return self.model(batch, evaluation_mode=EvaluationMode.TRAINING)
        context = TrainStepContext(
            global_step=self.global_step, epoch=epoch, batch_index=batch_index, forward=self.model
        )
        return train_step(batch, context)

    def _finish_epoch(self, epoch: int) -> None:
        """Validation, test, LR step, end-of-epoch stats, checkpoint, logs and plot."""
        s = self.settings
        if self.loaders.val is not None and s.validation_interval > 0 and epoch % s.validation_interval == 0:
            self._validate()
        if s.test_interval > 0 and epoch % s.test_interval == 0:
            self._evaluate_test(dump_to_json=False, stat_set="test")
        if self.scheduler is not None:
            before = [group["lr"] for group in self.optimizer.param_groups]
            if isinstance(self.scheduler, ScheduleLR):
                self.scheduler.advance(epoch=epoch + 1, step=self.global_step)
            else:
                self.scheduler.step()
            after = [group["lr"] for group in self.optimizer.param_groups]
            if after != before:
                logger.info("LR change! %s -> %s", _rates(before), _rates(after))
        finished = self.stats.end_epoch()
        self._save(epoch, len(self.loaders.train), epoch_finished=True)
        if self.is_main:
            for stat_set, metrics in finished.items():
                for metric_logger in self.loggers:
                    metric_logger.log_epoch(stat_set, epoch, self.global_step, metrics)
            self.stats.plot(os.path.join(self.exp_dir, STATS_PLOT))

    # -------------------------------------------------------------- evaluation

    def _evaluation_model(self) -> torch.nn.Module:
        self.unwrapped.eval()
        return self.unwrapped

    def _evaluation_weights(self) -> ContextManager[Any]:
        """A block in which the model holds the weights evaluations use: the EMA's (with
        ema_for_evaluation) or its own."""
        if self.ema is not None and self.settings.ema_for_evaluation:
            return self.ema.applied_to(self.unwrapped)
        return contextlib.nullcontext()

    def _first_batch(self) -> Any:
        """The first batch of the val loader (of the train loader without one), on the device,
        for visualize(). Read from the loader's unsplit form (the same batch whatever the number
        of processes) with seeded generators, which are put back as they were afterwards."""
        loader = self.loaders.val if self.loaders.val is not None else self.loaders.train
        loader = getattr(loader, "base_dataloader", loader)
        state = get_rng_state()
        try:
            seed_all(self.session.seed)
            batch = next(iter(loader), None)
        finally:
            set_rng_state(state)
        if batch is not None and hasattr(batch, "to"):
            batch = batch.to(self.accelerator.device)
        return batch

    def _visualize(self) -> None:
        """The model's visualize() of the fixed batch to the loggers (main process; eval mode,
        no_grad; the random generators are left as they were, so training does not change)."""
        visualize = getattr(self.unwrapped, "visualize", None)
        if not self.is_main or self.fixed_batch is None or visualize is None:
            return
        state = get_rng_state()
        try:
            self._evaluation_model()
            with self._evaluation_weights(), torch.no_grad():
                images = visualize(self.fixed_batch)
        finally:
            set_rng_state(state)
            set_train_mode(self.model)
        if images:
            for metric_logger in self.loggers:
                metric_logger.log_images(self.global_step, images)

    def _validate(self) -> None:
        """The evaluator on the val loader (each process its share, averaged) into stats "val";
        only the main process's evaluator prints."""
        if self.settings.evaluator is None:
            return
        quiet = contextlib.nullcontext() if self.is_main else contextlib.redirect_stdout(io.StringIO())
        with quiet, self._evaluation_weights():
            metrics = self.settings.evaluator.run(
                model=self._evaluation_model(), dataloader=self.loaders.val, device=self.accelerator.device,
                exp_dir=self.exp_dir, epoch=self.stats.epoch, dump_to_json=False,
            )
        set_train_mode(self.model)
        self.stats.update("val", self._mean_over_processes(metrics))

    def _mean_over_processes(self, metrics: Mapping[str, float]) -> Dict[str, float]:
        if self.accelerator.num_processes == 1 or not metrics:
            return dict(metrics)
        names = sorted(metrics)
        local = torch.tensor([float(metrics[name]) for name in names], device=self.accelerator.device)
        return dict(zip(names, self.accelerator.reduce(local, reduction="mean").tolist()))

    def _evaluate_test(self, dump_to_json: bool, stat_set: Optional[str] = None) -> None:
        """The evaluator on the whole test loader, on the main process (the others wait).

        With `stat_set` the metrics go into the epoch's stats; otherwise they go to the loggers
        (and, with dump_to_json, to exp_dir/results_test.json, written by the evaluator).
        """
        s = self.settings
        if s.evaluator is None or self.loaders.test is None:
            if s.evaluator is None:
                missing = "an evaluator (evaluator_class_type)"
            else:
                missing = "a test loader from the data source"
            if s.eval_only:
                raise ConfigError(f"eval_only=true needs {missing}")
            logger.warning("No test evaluation: it needs %s.", missing)
            return
        if self.is_main:
            with self._evaluation_weights():
                if s.separate_test_sets and self.loaders.test_sets:
                    metrics = self._evaluate_test_sets(dump_to_json)
                else:
                    metrics = s.evaluator.run(
                        model=self._evaluation_model(), dataloader=self.loaders.test, device=self.accelerator.device,
                        exp_dir=self.exp_dir, epoch=self.stats.epoch, dump_to_json=dump_to_json,
                    )
            set_train_mode(self.model)
            if stat_set is not None:
                self.stats.update(stat_set, metrics)
            else:
                for metric_logger in self.loggers:
                    metric_logger.log_epoch("test", self.stats.epoch, self.global_step, metrics)
        self.accelerator.wait_for_everyone()

    def _evaluate_test_sets(self, dump_to_json: bool) -> Dict[str, float]:
        """The evaluator on each named test set (data source's test_sets) in turn: metrics
        "<set>/<metric>", and results_test.json {set: that set's results}."""
        metrics: Dict[str, float] = {}
        results: Dict[str, Any] = {}
        for name, loader in self.loaders.test_sets.items():
            evaluation = self.settings.evaluator.evaluate(
                model=self._evaluation_model(), dataloader=loader, device=self.accelerator.device,
                epoch=self.stats.epoch,
            )
            print(f"test set {name}:\n{evaluation.summary}")
            metrics.update({f"{name}/{key}": value for key, value in evaluation.metrics.items()})
            results[name] = evaluation.results
        if dump_to_json:
            write_results(self.exp_dir, results)
        return metrics

    # ------------------------------------------------------------- checkpoints

    def _save(self, epoch: int, batches_done: int, epoch_finished: bool) -> None:
        """Save the run's state (main process only); a position already saved is not saved again."""
        position = (epoch, batches_done) if not epoch_finished else (epoch, None)
        if not self.settings.store_checkpoints or position == self.saved_position:
            return
        self.saved_position = position
        if not self.is_main:
            return
        checkpoint = TrainingCheckpoint(
            epoch=epoch,
            batches_done=batches_done,
            epoch_finished=epoch_finished,
            global_step=self.global_step,
            model=self.unwrapped.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=None if self.scheduler is None else scheduler_state_dict(self.scheduler),
            grad_scaler=None if self.accelerator.scaler is None else self.accelerator.scaler.state_dict(),
            stats=self.stats.state_dict(),
            rng=get_rng_state(),
            config_yaml=self.session.config_yaml,
            config_digest=config_digest(self.session.config_yaml),
            ema=None if self.ema is None else self.ema.state_dict(),
        )
        self.last_checkpoint = save_checkpoint(checkpoint, self.exp_dir)
        self.readable[self.last_checkpoint] = True
        purge_checkpoints(self.exp_dir, self.settings.checkpoint_keep_last, self._is_readable)

    def _is_readable(self, path: str) -> bool:
        """Whether a checkpoint file can be read (checked once per file and run; an unreadable
        one is reported once)."""
        if path not in self.readable:
            problem = checkpoint_problem(path)
            if problem is not None:
                logger.warning("Keeping unreadable checkpoint %s (%s): it is not counted among the checkpoints "
                               "kept and not deleted.", path, problem)
            self.readable[path] = problem is None
        return self.readable[path]


def _rates(rates: List[float]) -> str:
    return ", ".join(f"{rate:.6g}" for rate in rates)
