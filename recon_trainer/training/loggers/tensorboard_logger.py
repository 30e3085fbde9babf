"""The tensorboard logger: scalars in exp_dir/tensorboard, tagged `<stat set>/<name>`; images `vis/<name>`."""
import os
from typing import Mapping

import torch

from recon_trainer.training.loggers.base import LoggerSettings, MetricLogger, to_uint8_image

TENSORBOARD_FOLDER = "tensorboard"


class TensorboardLogger(MetricLogger):
    """Writes event files readable by `tensorboard --logdir <exp_dir>/tensorboard`.

    The x axis is the global optimizer step. A resumed run hides what the interrupted run
    logged after the checkpoint it resumed from (tensorboard's purge_step).
    """

    def __init__(self, settings: LoggerSettings) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = os.path.join(settings.exp_dir, TENSORBOARD_FOLDER)
        # events up to the checkpoint's step were logged before it was saved: keep those
        purge_step = settings.resume_step + 1 if settings.resume_step else None
        self.writer = SummaryWriter(log_dir=self.log_dir, purge_step=purge_step)

    def log_epoch(self, stat_set: str, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"{stat_set}/{name}", value, step)
        self.writer.flush()

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"train_step/{name}", value, step)

    def log_images(self, step: int, images: Mapping[str, torch.Tensor]) -> None:
        for name, image in images.items():
            array = to_uint8_image(image, name)
            self.writer.add_image(f"vis/{name}", array, step, dataformats="HWC" if array.ndim == 3 else "HW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
