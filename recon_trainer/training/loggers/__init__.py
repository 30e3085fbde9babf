"""Metric loggers, chosen by name in the training loop's `logging_args.loggers` list (several at once).

    console      status lines at the end of each epoch
    tensorboard  event files in exp_dir/tensorboard (scalars and images)
    visdom       line plots and images on a visdom server (optional: one warning when none answers)
    mlflow       an mlflow run (default store: exp_dir/mlflow.db; images as artifacts)

Images (the model's `visualize` of a fixed batch every `visualize_interval` steps) also go to
exp_dir/vis/step_<8 digits>/<name>.png unless `save_visualizations` is false.
"""
import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple

from recon_trainer.config import Configurable
from recon_trainer.config.choices import Choices, check_choices, choice_field
from recon_trainer.training.loggers.base import LoggerSettings, MetricLogger, exp_dir_name


def _console(settings: LoggerSettings) -> MetricLogger:
    from recon_trainer.training.loggers.console import ConsoleLogger

    return ConsoleLogger()


def _tensorboard(settings: LoggerSettings) -> MetricLogger:
    from recon_trainer.training.loggers.tensorboard_logger import TensorboardLogger

    return TensorboardLogger(settings)


def _visdom(settings: LoggerSettings) -> MetricLogger:
    from recon_trainer.training.loggers.visdom_logger import VisdomLogger

    return VisdomLogger(settings)


def _mlflow(settings: LoggerSettings) -> MetricLogger:
    from recon_trainer.training.loggers.mlflow_logger import MlflowLogger

    return MlflowLogger(settings)


# Each backend is imported only when chosen (mlflow and tensorboard take seconds to import).
LOGGER_FACTORIES: Dict[str, Callable[[LoggerSettings], MetricLogger]] = {
    "console": _console,
    "tensorboard": _tensorboard,
    "visdom": _visdom,
    "mlflow": _mlflow,
}
LOGGER_NAMES = tuple(LOGGER_FACTORIES)


class LoggingSettings(Configurable):
    """Where a run's values and images go: the loggers, how often, and each backend's settings."""

    loggers: Tuple[str, ...] = choice_field(("console",), LOGGER_NAMES)  # any of console, tensorboard, visdom, mlflow
    metric_log_interval_steps: int = 0  # send the step's values to the loggers every N steps; 0: never
    visualize_interval: int = 0  # every N optimizer steps log the model's visualize() images of a fixed batch; 0: never
    save_visualizations: bool = True  # also write those images to exp_dir/vis/step_<8 digits>/<name>.png
    visdom_server: str = "http://127.0.0.1"  # visdom logger: server address
    visdom_port: int = 8097  # visdom logger: server port
    visdom_env: str = ""  # visdom logger: environment; "": exp_dir's folder name
    mlflow_tracking_uri: str = ""  # mlflow logger: tracking URI; "": sqlite:///<exp_dir>/mlflow.db
    mlflow_experiment_name: str = "recon_trainer"  # mlflow logger: experiment name
    mlflow_run_name: str = ""  # mlflow logger: run name; "": exp_dir's folder name

    def __post_init__(self) -> None:
        check_choices(self)

    def for_run(self, exp_dir: str, resume_step: int = 0, config_yaml: str = "") -> LoggerSettings:
        """The settings the loggers of a run in exp_dir get."""
        run = {"exp_dir": exp_dir, "resume_step": resume_step, "config_yaml": config_yaml}
        backends = {f.name: getattr(self, f.name) for f in dataclasses.fields(LoggerSettings) if f.name not in run}
        return LoggerSettings(**run, **backends)


def check_logger_names(names: Sequence[str], key: str = "loggers") -> None:
    """ConfigError naming the key, each unknown name, the closest logger name and the choices."""
    Choices(LOGGER_NAMES).check(key, names)


def create_loggers(names: Sequence[str], settings: LoggerSettings) -> List[MetricLogger]:
    """One logger per name, in order (a name given twice gives one logger)."""
    check_logger_names(names)
    return [LOGGER_FACTORIES[name](settings) for name in dict.fromkeys(names)]


__all__ = [
    "LOGGER_NAMES", "LoggerSettings", "LoggingSettings", "MetricLogger", "check_logger_names", "create_loggers",
    "exp_dir_name",
]
