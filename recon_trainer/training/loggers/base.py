"""The interface every metric logger (console, tensorboard, visdom, mlflow) implements."""
import dataclasses
import os
import re
from typing import Mapping

import numpy as np
import torch


@dataclasses.dataclass
class LoggerSettings:
    """What the loggers need to know about the run.

    exp_dir: the experiment folder (loggers write below it unless told otherwise).
    resume_step: the global step the run continues from (0 for a fresh run).
    config_yaml: the experiment's resolved config.
    The others are the backends' settings (see LoggingSettings, the config node).
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


def image_file_stem(name: str) -> str:
    """An image name as a file name stem: characters other than letters, digits, `_-.` become `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "image"


def to_uint8_image(image: torch.Tensor, name: str = "image") -> np.ndarray:
    """A (3, H, W), (1, H, W) or (H, W) float image in [0, 1] as uint8 (H, W, 3) or (H, W), clamped."""
    image = image.detach()
    if image.dim() == 3 and image.shape[0] == 1:
        image = image[0]
    if not (image.dim() == 2 or (image.dim() == 3 and image.shape[0] == 3)):
        raise ValueError(f"image {name!r} has shape {tuple(image.shape)}: expected (3, H, W), (1, H, W) or (H, W)")
    array = (image.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return np.ascontiguousarray(array.transpose(1, 2, 0)) if array.ndim == 3 else array


class MetricLogger:
    """Receives the per-epoch averages of each stat set and, optionally, per-step values and images."""

    def log_epoch(self, stat_set: str, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        """`metrics` are the averages over `epoch` of stat set "train", "val" or "test";
        `step` is the global optimizer step at the end of the epoch."""

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        """The training values of one optimizer step."""

    def log_images(self, step: int, images: Mapping[str, torch.Tensor]) -> None:
        """The model's visualisations after optimizer step `step`: name -> (3, H, W) or (H, W)
        float in [0, 1] (see `to_uint8_image`)."""

    def close(self) -> None:
        """Flush and release what the logger holds."""
