"""File writing that never leaves a half-written file behind, and says why a write failed.

Every file is written to a temporary file `.tmp_<name><random>` in the target's folder, flushed
to disk and renamed onto the target. When writing fails (disk full, file-size limit, no
permission, a file where a folder should be) the target is as it was, the temporary file is
removed and a WriteError names the target and the operating system's reason. A process killed
mid-write leaves its temporary file, which `remove_temporary_files` clears on the next start.
"""
import contextlib
import io
import logging
import os
import tempfile
from typing import Any, Iterator, List, Optional, Union

from recon_trainer.errors import WriteError

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp_"


def _default_file_mode() -> int:
    """0o666 minus the process umask: the mode open() would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_error(path: str, error: OSError) -> WriteError:
    """WriteError naming `path` and the operating system's reason for `error`."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and os.fspath(error.filename) != path else ""
    return WriteError(f"cannot write {path}: {reason}{where}")


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """A temporary path in `path`'s folder to write to; renamed onto `path` when the block succeeds.

    A crash or an exception leaves `path` as it was (and no temporary file); an OSError (in
    the block or in the rename) becomes a WriteError naming `path`. `suffix` keeps the
    extension for writers that look at it (e.g. ".mp4").
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX + os.path.basename(path), suffix=suffix)
        os.close(fd)
    except OSError as error:
        raise write_error(path, error) from error
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _default_file_mode())
        os.replace(tmp_path, path)
    except BaseException as error:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise write_error(path, error) from error
        raise


def atomic_write(path: str, data: Union[str, bytes]) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)


class _RecordingFile(io.RawIOBase):
    """A writable file that remembers the OSError of a failed write: torch.save reports a
    failed write as "unexpected pos N vs M", without the operating system's reason."""

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__()
        self.raw = raw
        self.error: Optional[OSError] = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.raw.write(data)
        except OSError as error:
            self.error = error
            raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save(obj) to `path` atomically; a failed write is a WriteError with its reason."""
    import torch

    with atomic_path(path) as tmp_path, open(tmp_path, "wb", buffering=0) as raw:
        sink = _RecordingFile(raw)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise


def remove_temporary_files(folder: str) -> List[str]:
    """Delete the temporary files that killed writers left in `folder` (not in sub-folders);
    their names. Call it only while no other process writes there (with the folder's lock)."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TEMP_PREFIX) and os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            removed.append(name)
    if removed:
        logger.info("Removed %d temporary file(s) left by an interrupted write in %s.", len(removed), folder)
    return removed
