"""exp_dir as one run owns it: a lock, temporary files of killed writers, earlier runs set aside.

    <exp_dir>/.lock                        who runs here: {"pid", "host", "started", "command"}
    <exp_dir>/earlier_runs/<date_time>/    checkpoints (and the run's record files) a new start
                                           would have overwritten, moved here instead of deleted

The lock is a POSIX record lock (`fcntl.lockf`) on `.lock`: the operating system releases it
when the holding process ends in any way, so a run killed with SIGKILL never blocks the next
one; the file's content (left behind by a killed holder) only serves the messages. Such
locks belong to a process, not to its DataLoader workers, and work on NFS with lockd.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
from typing import Dict, List, Optional, Sequence

from recon_trainer.errors import RunDirectoryError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
EARLIER_RUNS = "earlier_runs"
EXPCONFIG_FILE = "expconfig.yaml"  # the resolved config a run was started with
OVERRIDES_FILE = "overrides.yaml"  # the command-line overrides of that start
# The files of a run besides its checkpoints that a fresh start in the same exp_dir rewrites.
RUN_RECORD_FILES = (EXPCONFIG_FILE, OVERRIDES_FILE, "train_stats.png", "results_test.json")
_HELD: Dict[str, "ExpDirLock"] = {}  # real path of exp_dir -> the lock this process holds on it


class ExpDirLock:
    """The lock of one exp_dir; `acquire` refuses at once when another live process holds it."""

    def __init__(self, exp_dir: str) -> None:
        self.exp_dir = exp_dir
        self.path = os.path.join(exp_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Create exp_dir if needed and take its lock; RunDirectoryError naming the holder (PID,
        host, start time, command) when another process has it. A lock left by a process that
        has ended is taken over with a warning naming that process."""
        make_exp_dir(self.exp_dir)
        key = os.path.realpath(self.exp_dir)
        if key in _HELD:
            raise RunDirectoryError(f"exp_dir {self.exp_dir} is already in use by a run of this process")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunDirectoryError(f"exp_dir {self.exp_dir}: cannot open its lock file {self.path}: "
                                    f"{error.strerror}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EACCES, errno.EAGAIN):
                raise RunDirectoryError(
                    f"exp_dir {self.exp_dir} is in use by another run: {describe_holder(holder)}; wait for it to "
                    f"end or stop it, or choose another exp_dir"
                ) from None
            raise RunDirectoryError(f"exp_dir {self.exp_dir}: cannot lock {self.path}: {error.strerror}") from None
        previous = _read_holder(fd)
        if previous:
            logger.warning("Taking over the lock of exp_dir %s from %s, which ended without releasing it.",
                           self.exp_dir, describe_holder(previous))
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        _HELD[key] = self

    def release(self) -> None:
        """Empty the lock file (a free lock) and release the lock."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing releases the record lock
            self._fd = None
            _HELD.pop(os.path.realpath(self.exp_dir), None)


def _read_holder(fd: int) -> Dict[str, object]:
    """The JSON record in the lock file ({} when it is empty or not a record)."""
    try:
        record = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_holder(holder: Dict[str, object]) -> str:
    """"PID 123 on host h (started ..., command: ...)", or a plain phrase when nothing is known."""
    if not holder:
        return "a process that left no record"
    return (f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')} (started {holder.get('started', '?')}, "
            f"command: {holder.get('command', '?')})")


def make_exp_dir(exp_dir: str) -> None:
    """Create exp_dir (and its parents); RunDirectoryError naming the path and the reason."""
    try:
        os.makedirs(exp_dir, exist_ok=True)
    except OSError as error:
        where = f"{error.filename}: " if error.filename and os.fspath(error.filename) != exp_dir else ""
        raise RunDirectoryError(f"exp_dir={exp_dir}: cannot create the folder: {where}{error.strerror}") from None


def set_aside(exp_dir: str, paths: Sequence[str], why: str) -> Optional[str]:
    """Move `paths` (files in exp_dir) into a new folder exp_dir/earlier_runs/<date_time>/; that
    folder (None when there is nothing to move). One warning says what moved where and `why`."""
    present = [path for path in paths if os.path.exists(path)]
    if not present:
        return None
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    target = os.path.join(exp_dir, EARLIER_RUNS, stamp)
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(exp_dir, EARLIER_RUNS, f"{stamp}_{suffix}")
    try:
        os.makedirs(target)
        for path in present:
            shutil.move(path, os.path.join(target, os.path.basename(path)))
    except OSError as error:
        raise RunDirectoryError(f"exp_dir {exp_dir}: cannot move earlier files into {target}: "
                                f"{error.strerror} ({error.filename})") from None
    names = ", ".join(os.path.basename(path) for path in present)
    logger.warning("%s: moved %d file(s) to %s: %s.", why, len(present), target, names)
    return target


def run_record_paths(exp_dir: str) -> List[str]:
    """The paths of RUN_RECORD_FILES in exp_dir."""
    return [os.path.join(exp_dir, name) for name in RUN_RECORD_FILES]
