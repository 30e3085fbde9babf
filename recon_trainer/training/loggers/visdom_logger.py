"""The visdom logger: one line plot per logged name (x: epoch, a trace per stat set); one image
window per visualisation name (the newest image).

Visdom is optional. The server is probed once with a short TCP connection before the client is
created; when nothing answers (or a later request fails) one warning says so and the logger
falls silent for the rest of the run, instead of the client's stream of ConnectionErrors.
"""
import logging
import socket
import urllib.parse
import warnings
from typing import Any, Mapping, Optional, Set

import torch

from recon_trainer.training.loggers.base import LoggerSettings, MetricLogger, exp_dir_name, to_uint8_image

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0


def visdom_server_answers(server: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether something accepts TCP connections at the server's host and `port`."""
    host = urllib.parse.urlsplit(server).hostname or server
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class VisdomLogger(MetricLogger):
    """Plots the per-epoch averages into visdom environment `env` (window = logged name)."""

    def __init__(self, settings: LoggerSettings) -> None:
        self.env = settings.visdom_env or exp_dir_name(settings.exp_dir)
        self.address = f"{settings.visdom_server}:{settings.visdom_port}"
        self.viz: Optional[Any] = None
        self._windows: Set[str] = set()
        if not visdom_server_answers(settings.visdom_server, settings.visdom_port):
            self._disable("no server answers")
            return
        import visdom

        logging.getLogger("visdom").setLevel(logging.ERROR)  # its per-session notices are not ours to show
        try:
            with warnings.catch_warnings():  # the client itself calls the deprecated Logger.warn
                warnings.simplefilter("ignore", DeprecationWarning)
                self.viz = visdom.Visdom(
                    server=settings.visdom_server, port=settings.visdom_port, env=self.env,
                    use_incoming_socket=False, raise_exceptions=True,
                )
        except Exception as error:  # noqa: BLE001  (whatever goes wrong, visdom must not stop training)
            self._disable(f"{type(error).__name__}: {error}")

    def _disable(self, reason: str) -> None:
        self.viz = None
        logger.warning(
            "visdom logging is off for this run: %s at %s. Start a server with "
            "`python -m visdom.server -port %s` or drop 'visdom' from the loggers.",
            reason, self.address, self.address.rsplit(":", 1)[1],
        )

    def log_epoch(self, stat_set: str, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self._append(name, stat_set, epoch, value, xlabel="epoch")

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self._append(f"{name} (per step)", "train", step, value, xlabel="step")

    def log_images(self, step: int, images: Mapping[str, torch.Tensor]) -> None:
        for name, image in images.items():
            if self.viz is None:
                return
            array = to_uint8_image(image, name)
            try:
                self.viz.image(
                    array.transpose(2, 0, 1) if array.ndim == 3 else array, win=f"vis/{name}", env=self.env,
                    opts={"title": f"{name} (step {step})", "caption": f"step {step}"},
                )
            except Exception as error:  # noqa: BLE001  (as above)
                self._disable(f"{type(error).__name__}: {error}")

    def _append(self, window: str, trace: str, x: float, y: float, xlabel: str) -> None:
        if self.viz is None:
            return
        try:
            # A window that exists already (this run, or the run it resumes) is appended to.
            exists = window in self._windows or self.viz.win_exists(window, env=self.env)
            self.viz.line(
                X=[x], Y=[y], win=window, env=self.env, name=trace, update="append" if exists else None,
                opts={"title": window, "xlabel": xlabel, "showlegend": True},
            )
            self._windows.add(window)
        except Exception as error:  # noqa: BLE001  (as above)
            self._disable(f"{type(error).__name__}: {error}")
