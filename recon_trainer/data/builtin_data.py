"""Built-in data: what a method trains and evaluates on when its config names no data.

A method declares a generator (a registered `BuiltinDataBase`) that writes small synthetic data in
the method's own on-disk layout; the core writes it once into the cache,
`<cache root>/<generator>-<hash of its settings>/`, and a data source whose data path is empty
reads it from there, saying so on the first line of output. The cache root is
$RECON_TRAINER_CACHE, or ~/.cache/recon_trainer/scenes.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable, ClassVar, Dict

from recon_trainer.config import ReplaceableBase, plain

CACHE_ENV = "RECON_TRAINER_CACHE"  # environment variable overriding the default cache root
DEFAULT_CACHE_ROOT = os.path.join("~", ".cache", "recon_trainer", "scenes")


def default_cache_root() -> str:
    """$RECON_TRAINER_CACHE if set, else ~/.cache/recon_trainer/scenes."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT)


def cache_folder(label: str, settings: Dict[str, Any], cache_dir: str = "") -> str:
    """`<cache root>/<label>-<16 hex digits of the settings' hash>`: the folder of data that
    `settings` (plain JSON values) determine; cache_dir "" is default_cache_root()."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    root = os.path.expanduser(cache_dir) if cache_dir else default_cache_root()
    return os.path.join(root, f"{label}-{digest}")


def write_folder_atomically(out_dir: str, write: Callable[[str], None], exist_ok: bool = False) -> None:
    """Call `write(tmp_folder)` on a fresh folder beside out_dir, then rename it to out_dir, so
    out_dir is either absent or complete. A non-empty out_dir is an error (FileExistsError),
    unless exist_ok (another process wrote it meanwhile: its copy is kept)."""
    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not exist_ok:
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{os.path.basename(out_dir)}-")
    try:
        write(tmp_dir)
        try:
            os.rename(tmp_dir, out_dir)  # atomic; replaces out_dir only if it is an empty folder
        except OSError:
            if not (exist_ok and os.path.isdir(out_dir) and os.listdir(out_dir)):
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


class BuiltinDataBase(ReplaceableBase):
    """A generator of a method's built-in data (module doc).

    Subclasses declare their settings as config fields, `describe` them for the announcement and
    `write` the data into a folder; bump VERSION when what `write` produces changes, so that
    older caches are not reused.
    """

    VERSION: ClassVar[int] = 1

    cache_dir: str = ""  # cache root; "": $RECON_TRAINER_CACHE or ~/.cache/recon_trainer/scenes

    @abc.abstractmethod
    def describe(self) -> str:
        """For the announcement, e.g. "synthetic rooms in the layouts of 7 depth datasets (48 images each)"."""

    @abc.abstractmethod
    def write(self, folder: str) -> None:
        """Write the data into the empty `folder`."""

    def settings(self) -> Dict[str, Any]:
        """The settings that determine the data, as plain JSON values (the cache key)."""
        fields = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "cache_dir"}
        return {"generator": type(self).__name__, "version": self.VERSION, **json.loads(json.dumps(fields))}

    def ensure_written(self) -> str:
        """The cache folder, written first (atomically) if it does not exist yet."""
        folder = cache_folder(type(self).__name__, self.settings(), self.cache_dir)
        if not os.path.isdir(folder):
            write_folder_atomically(folder, self.write, exist_ok=True)
        return folder
