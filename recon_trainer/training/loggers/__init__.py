"""Metric loggers, chosen by name in the training loop's `loggers` list (several at once).

    console      status lines at the end of each epoch
    tensorboard  event files in exp_dir/tensorboard
    visdom       line plots on a visdom server (optional: one warning when none answers)
    mlflow       an mlflow run (default store: exp_dir/mlflow.db)
"""
from typing import Callable, Dict, List, Sequence

from recon_trainer.config.choices import Choices
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


def check_logger_names(names: Sequence[str], key: str = "loggers") -> None:
    """ConfigError naming the key, each unknown name, the closest logger name and the choices."""
    Choices(LOGGER_NAMES).check(key, names)


def create_loggers(names: Sequence[str], settings: LoggerSettings) -> List[MetricLogger]:
    """One logger per name, in order (a name given twice gives one logger)."""
    check_logger_names(names)
    return [LOGGER_FACTORIES[name](settings) for name in dict.fromkeys(names)]


__all__ = ["LOGGER_NAMES", "LoggerSettings", "MetricLogger", "check_logger_names", "create_loggers", "exp_dir_name"]
