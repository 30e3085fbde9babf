"""Errors the command-line tools report as their message alone, and the exit code of each.

    2    a user's mistake or a problem with the user's files: config, command line, data file,
         exp_dir (locked, unreadable checkpoints, under a file), a write that failed (disk full)
    3    the finite guard stopped the run: a NaN or infinite loss or model output
    130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM: 128 + the signal number

Any other exception is a bug and keeps its traceback (exit code 1). `recon_trainer.cli.reporting`
prints these; its `--debug` flag (or RECON_DEBUG=1) adds the traceback.

This module imports nothing of the package, so every layer may raise these.
"""
import signal


class ReportedError(Exception):
    """An error whose message says everything a user needs: printed without a traceback."""

    exit_code: int = 1


class UserError(ReportedError):
    """A mistake the user can fix: the message names the key, file or value and what was expected."""

    exit_code = 2


class DataFileError(UserError, ValueError):
    """A data file that is missing, unreadable or malformed; the message names the file."""


class RunDirectoryError(UserError):
    """exp_dir cannot be used as it is: locked by another run, no readable checkpoint, under a file."""


class WriteError(UserError, OSError):
    """Writing a file failed (disk full, no permission, a file where a folder should be); the
    message names the path and the operating system's reason, and nothing older was harmed."""


class MissingDependencyError(UserError, ImportError):
    """A package one method or format needs is not installed (recon_trainer.dependencies)."""


class NonFiniteError(ReportedError, RuntimeError):
    """The finite guard stopped the run: a loss or a model output is NaN or infinite."""

    exit_code = 3


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped the run (a BaseException, like KeyboardInterrupt, so that no
    `except Exception` swallows it). `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name
