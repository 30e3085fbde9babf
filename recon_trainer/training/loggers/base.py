"""The interface every metric logger (console, tensorboard, visdom, mlflow) implements."""
import dataclasses
import os
from typing import Mapping


@dataclasses.dataclass
class LoggerSettings:
    """What the loggers need to know about the run.

    exp_dir: the experiment folder (loggers write below it unless told otherwise).
    resume_step: the global step the run continues from (0 for a fresh run).
    config_yaml: the experiment's resolved config.
    """

    exp_dir: str
    resume_step: int = 0
    config_yaml: str = ""
    visdom_server: str = "http://127.0.0.1"
    visdom_port: int = 8097
    visdom_env: str = ""
    mlflow_tracking_uri: str = ""
    mlflow_experiment_name: str = "recon_trainer"
    mlflow_run_name: str = ""


def exp_dir_name(exp_dir: str) -> str:
    """The folder name of exp_dir (the default visdom env and mlflow run name); a trailing
    slash does not make it empty."""
    return os.path.basename(os.path.normpath(os.path.abspath(exp_dir)))


class MetricLogger:
    """Receives the per-epoch averages of each stat set and, optionally, per-step values."""

    def log_epoch(self, stat_set: str, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        """`metrics` are the averages over `epoch` of stat set "train", "val" or "test";
        `step` is the global optimizer step at the end of the epoch."""

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        """The training values of one optimizer step."""

    def close(self) -> None:
        """Flush and release what the logger holds."""
