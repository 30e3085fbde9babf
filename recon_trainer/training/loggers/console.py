"""The console logger: one status line per stat set at the end of each epoch."""
from typing import Mapping

import tqdm

from recon_trainer.training.loggers.base import MetricLogger
from recon_trainer.training.stats import status_line


class ConsoleLogger(MetricLogger):
    """Prints `[val] | epoch   3 | psnr: 23.4 | ...` (through tqdm, so a progress bar stays intact)."""

    def log_epoch(self, stat_set: str, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        tqdm.tqdm.write(status_line(stat_set, epoch, metrics))
