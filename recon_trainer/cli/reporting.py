"""How the command-line tools end: a reported error is its message and an exit code, never a traceback.

    with reported_errors("recon_runner"):
        ...   # a UserError exits 2, NonFiniteError 3, RunInterrupted 128 + signal, Ctrl-C 130

`--debug` on the command line (taken out by `pop_debug_flag`) or RECON_DEBUG=1 in the
environment prints the traceback as well. Exceptions of any other type are bugs: they pass
through with their traceback.
"""
import contextlib
import os
import sys
import traceback
from typing import Iterator, List, Optional, Sequence, Tuple

from recon_trainer.errors import ReportedError, RunInterrupted

DEBUG_FLAG = "--debug"
DEBUG_ENV = "RECON_DEBUG"
# What torch's DataLoader puts before an exception it re-raises from a worker process.
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def pop_debug_flag(argv: Optional[Sequence[str]]) -> Tuple[List[str], bool]:
    """(argv without `--debug`, whether tracebacks are wanted); `--debug` also sets RECON_DEBUG=1
    so that the processes this one starts show them too."""
    args = list(sys.argv[1:] if argv is None else argv)
    if DEBUG_FLAG in args:
        args = [arg for arg in args if arg != DEBUG_FLAG]
        os.environ[DEBUG_ENV] = "1"
    return args, debug_requested()


def debug_requested() -> bool:
    """Whether RECON_DEBUG asks for tracebacks (any value but "", "0", "false", "no")."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def message_of(error: BaseException) -> str:
    """The error's own message; for one re-raised from a DataLoader worker, the original message
    without the worker's traceback that torch puts in front of it."""
    text = str(error)
    if _WORKER_TRACEBACK in text:
        name = f"{type(error).__module__}.{type(error).__qualname__}: "
        found = text.rfind(name)
        if found >= 0:
            return text[found + len(name) :].strip()
    return text.strip()


@contextlib.contextmanager
def reported_errors(prog: str) -> Iterator[None]:
    """Turn the reported errors of the block into `prog: error: <message>` on stderr and their
    exit code (SystemExit); a RunInterrupted prints `prog: <message>`."""
    try:
        yield
    except RunInterrupted as interrupted:
        _exit(prog, str(interrupted), interrupted.exit_code)
    except ReportedError as error:
        _exit(prog, f"error: {message_of(error)}", error.exit_code)
    except KeyboardInterrupt:
        _exit(prog, "interrupted (SIGINT); nothing was running that could be saved", 130)


def _exit(prog: str, text: str, code: int) -> None:
    if debug_requested():
        traceback.print_exc()
    sys.stdout.flush()
    print(f"{prog}: {text}", file=sys.stderr, flush=True)
    sys.exit(code)
