"""File writing that never leaves a half-written file behind."""
import contextlib
import os
import tempfile
from typing import Iterator, Union


def _default_file_mode() -> int:
    """0o666 minus the process umask: the mode open() would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """A temporary path in `path`'s folder to write to; renamed onto `path` when the block succeeds.

    A crash or an exception leaves `path` as it was (and no temporary file). `suffix` keeps the
    extension for writers that look at it (e.g. ".mp4").
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp_" + os.path.basename(path), suffix=suffix)
    os.close(fd)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _default_file_mode())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def atomic_write(path: str, data: Union[str, bytes]) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
