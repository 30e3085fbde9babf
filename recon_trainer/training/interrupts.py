"""SIGINT (Ctrl-C) and SIGTERM (what cluster schedulers send before they kill): stop cleanly.

While an `InterruptHandler` is active in the main thread, the first signal either raises
RunInterrupted at once (the default: nothing is lost by stopping now, e.g. while data loads) or,
inside `deferred()`, only records the request: the training loop finishes its optimizer step,
saves a checkpoint and then stops. A second signal always raises at once.

DataLoader workers share the terminal's process group, so Ctrl-C reaches them too, and torch's
workers die of SIGTERM; `shield_loader_workers` makes a loader's workers ignore both, so they
keep serving the main process until it shuts them down.
"""
from __future__ import annotations

import contextlib
import functools
import signal
import threading
from typing import Any, Callable, Dict, Iterator, Optional

import torch

from recon_trainer.errors import RunInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptHandler:
    """Handlers for SIGINT and SIGTERM while the `with` block runs (the earlier ones after it).

    `requested`: the first signal received in deferred mode (None: none). `describe()` gives
    the words RunInterrupted carries when the handler raises.
    """

    def __init__(self, describe: Callable[[int], str] = lambda signum: "") -> None:
        self.describe = describe
        self.requested: Optional[int] = None
        self._deferring = False
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "InterruptHandler":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside the block a first signal is only recorded in `requested`."""
        before = self._deferring
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = before

    def _handle(self, signum: int, frame: Any) -> None:
        if self._deferring and self.requested is None:
            self.requested = signum
            return
        again = self.requested is not None
        self.requested = signum
        raise RunInterrupted(signum, interrupted_message(signum, self.describe(signum), again))


def interrupted_message(signum: int, where: str, again: bool = False) -> str:
    """"interrupted (SIGINT) <where>": the line a user reads when a run stops on a signal."""
    name = signal.Signals(signum).name
    head = f"interrupted again ({name}): stopped at once" if again else f"interrupted ({name})"
    return f"{head}{' ' + where if where else ''}"


def _ignore_interrupts(worker_id: int, then: Optional[Callable[[int], None]]) -> None:
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if then is not None:
        then(worker_id)


def shield_loader_workers(loader: Any) -> None:
    """Make the worker processes of a torch DataLoader (started from now on; also one prepared by
    accelerate) ignore SIGINT and SIGTERM before running the loader's own worker_init_fn; other
    iterables are left alone."""
    loader = getattr(loader, "base_dataloader", loader)  # what accelerate's prepared loader wraps
    if not isinstance(loader, torch.utils.data.DataLoader) or loader.num_workers == 0:
        return
    init = loader.worker_init_fn
    if isinstance(init, functools.partial) and init.func is _ignore_interrupts:
        return
    loader.worker_init_fn = functools.partial(_ignore_interrupts, then=init)
