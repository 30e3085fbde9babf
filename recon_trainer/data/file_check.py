"""The data check before training: a cheap look at every file each item of every split reads.

A dataset takes part by following `CheckableDataset`: `item_files(index)` lists the files item
`index` reads (as `DataFile`s, without reading them) and `drop_items(indices)` removes items,
keeping the rest of the dataset consistent (its length, eval batches). Datasets held in memory
have no such methods and take no part. Providers that load every frame at construction list their
items first as `FileItems`, so that the check runs before the loading.

`check_file` looks at one file by its format, reading headers and a few KiB, never decoding
pixels: images (anything PIL opens; JPEG and PNG also need their end marker, so truncation shows),
Sintel .dpt (header and size), .npy / .npz (header and size), HDF5 and MATLAB files (they open),
anything else (a regular file with a first byte). `check_split_files` checks the datasets of
every split at once, with a small thread pool (the work is I/O bound), and either raises one
DataFileError listing every bad file or, with skip_unreadable, drops the items that read them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import zipfile
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Generic,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    TypeVar,
    runtime_checkable,
)

import numpy as np
from PIL import Image

from recon_trainer.data.formats.sintel_dpt import DPT_HEADER, dpt_shape
from recon_trainer.data.mixing.combinators import label_of
from recon_trainer.errors import DataFileError

logger = logging.getLogger(__name__)

TAIL_BYTES = 16 * 1024  # an image's end marker is looked for in its last 16 KiB (room for trailing metadata)
END_MARKERS = {"JPEG": (b"\xff\xd9", "end-of-image marker FF D9"), "PNG": (b"IEND\xaeB`\x82", "IEND chunk")}
MAX_LISTED = 50  # bad files listed in a message; the rest are counted
WORKERS = 8  # threads reading headers
CHUNK = 4096  # files handed to the pool at a time (bounds the pending futures of huge datasets)
_EXTENSION_FORMATS = {".dpt": "dpt", ".npy": "npy", ".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".mat": "mat"}


class DataFile(NamedTuple):
    """A file an item reads and the format it is checked as: image, dpt, npy, npz, hdf5, mat, file
    (exists and has a first byte), or "auto": by the extension (`file_format`). Readers name the
    format when the extension misleads (ETH3D's raw depth files end in .JPG, DIW's JPEGs in .thumb)."""

    path: str
    format: str = "auto"


@runtime_checkable
class CheckableDataset(Protocol):
    """A dataset whose items' files can be checked before training, and whose items can be dropped."""

    def __len__(self) -> int:
        """The number of items."""

    def item_files(self, index: int) -> Sequence[DataFile]:
        """The files item `index` reads (nothing is read)."""

    def drop_items(self, indices: Collection[int]) -> None:
        """Remove these items; the others keep their order and are renumbered 0..len-1."""


T = TypeVar("T")


def without(items: Sequence[T], indices: Collection[int]) -> List[T]:
    """`items` less the positions in `indices`, in order."""
    dropped = set(indices)
    return [item for i, item in enumerate(items) if i not in dropped]


@dataclasses.dataclass
class FileItems(Generic[T]):
    """A split listed before loading: items[i] is what the loader needs for item i and files[i]
    the files it reads. The CheckableDataset of providers that load every frame at construction."""

    items: List[T]
    files: List[Tuple[DataFile, ...]]

    def __len__(self) -> int:
        return len(self.items)

    def item_files(self, index: int) -> Sequence[DataFile]:
        return self.files[index]

    def drop_items(self, indices: Collection[int]) -> None:
        self.items, self.files = without(self.items, indices), without(self.files, indices)


# ---------------------------------------------------------------------------------------------
# One file


def file_format(path: str) -> str:
    """The format of `path` by its extension: dpt, npy, npz, hdf5, mat, image (an extension PIL
    registers) or file."""
    extension = os.path.splitext(path)[1].lower()
    if extension in _EXTENSION_FORMATS:
        return _EXTENSION_FORMATS[extension]
    Image.init()
    return "image" if extension in Image.registered_extensions() else "file"


def check_file(file: DataFile) -> Optional[str]:
    """None when `file` looks readable, else a short reason (without the path): "missing",
    "truncated JPEG: ...", ... Reads its header and at most TAIL_BYTES more, never the pixels."""
    path, kind = file.path, file.format
    if kind == "auto":
        kind = file_format(path)
    if kind not in _CHECKS:
        raise ValueError(f"check_file: format {kind!r} of {path!r} is not one of auto, {', '.join(_CHECKS)}")
    try:
        if not os.path.exists(path):
            return "missing"
        if not os.path.isfile(path):
            return "not a regular file"
        with open(path, "rb") as handle:
            if not handle.read(1):
                return "empty file"
        return _CHECKS[kind](path)
    except Exception as error:  # any failure to read the file is the file's problem, reported as such
        return f"cannot be read ({type(error).__name__}: {error})"


def _check_image(path: str) -> Optional[str]:
    try:
        with Image.open(path) as image:
            kind = image.format
    except Image.UnidentifiedImageError:
        return "not an image PIL can identify"
    except (OSError, SyntaxError, ValueError) as error:
        return f"image header cannot be read ({error})"
    if kind not in END_MARKERS:
        return None
    marker, what = END_MARKERS[kind]
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read()
    if marker not in tail:
        return f"truncated {kind}: no {what} at its end"
    return None


def _check_dpt(path: str) -> Optional[str]:
    with open(path, "rb") as handle:
        header = handle.read(DPT_HEADER.itemsize)
        size = os.fstat(handle.fileno()).st_size
    try:
        dpt_shape(header, size)
    except ValueError as error:
        return str(error)
    return None


def _npy_problem(handle, size: int) -> Optional[str]:
    """Why the .npy data at `handle` (positioned at its start, `size` bytes long) is malformed, or None."""
    try:
        version = np.lib.format.read_magic(handle)
        # version 3.0 has the 2.0 layout (it only allows utf-8 field names)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
    except ValueError as error:
        return f"not a .npy array ({error})"
    if dtype.hasobject:
        return None  # pickled objects: the size is not known from the header
    expected = handle.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        return f"{size} bytes, expected {expected} for {dtype} {tuple(shape)}"
    return None


def _check_npy(path: str) -> Optional[str]:
    with open(path, "rb") as handle:
        return _npy_problem(handle, os.fstat(handle.fileno()).st_size)


def _check_npz(path: str) -> Optional[str]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        return f"not a .npz (zip) archive ({error})"
    with archive:
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                with archive.open(info) as member:
                    problem = _npy_problem(member, info.file_size)
                if problem:
                    return f"{info.filename}: {problem}"
    return None


def _check_hdf5(path: str) -> Optional[str]:
    import h5py  # imported here: only HDF5 readers need it

    try:
        h5py.File(path, "r").close()
    except OSError as error:
        return f"not an HDF5 file h5py can open ({error})"
    return None


def _check_mat(path: str) -> Optional[str]:
    """MATLAB v7.3 is HDF5 (after a 512-byte header); older versions have a header scipy reads."""
    import h5py  # imported here: only MATLAB / HDF5 readers need these
    from scipy.io.matlab import matfile_version

    if h5py.is_hdf5(path):
        return _check_hdf5(path)
    try:
        with open(path, "rb") as handle:
            matfile_version(handle)
    except ValueError as error:
        return f"not a MATLAB file ({error})"
    return None


_CHECKS: Dict[str, Callable[[str], Optional[str]]] = {
    "image": _check_image, "dpt": _check_dpt, "npy": _check_npy, "npz": _check_npz, "hdf5": _check_hdf5,
    "mat": _check_mat, "file": lambda path: None,  # check_file has read its first byte
}


def check_files(files: Iterable[DataFile], workers: int = WORKERS) -> Dict[str, str]:
    """{path: reason} of the files that fail `check_file`, in the order of their first appearance;
    each path is checked once (with the format it first appears with)."""
    unique: Dict[str, DataFile] = {}
    for file in files:
        unique.setdefault(file.path, file)
    listed = list(unique.values())
    bad: Dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(listed)))) as pool:
        for start in range(0, len(listed), CHUNK):
            chunk = listed[start : start + CHUNK]
            for file, reason in zip(chunk, pool.map(check_file, chunk)):
                if reason is not None:
                    bad[file.path] = reason
    return bad


# ---------------------------------------------------------------------------------------------
# Every split


def check_split_files(splits: Mapping[str, Sequence[Any]], skip_unreadable: bool, config_key: str) -> Dict[str, int]:
    """Check the files of every item of the CheckableDatasets in `splits` (split name -> datasets;
    other datasets take no part, a dataset may be in several splits).

    All good: returns {}. Otherwise raises one DataFileError listing every bad file per split
    (at most MAX_LISTED, then a count) that ends with how to skip them (`config_key` is the data
    source's config node, e.g. "data_source_ReconDataSource_args"); with skip_unreadable, drops
    the items that read a bad file, logs one warning line and returns {split: items dropped}.
    A dataset that would be left empty is an error either way.
    """
    members: Dict[int, Tuple[Any, List[str]]] = {}  # id -> (dataset, its splits)
    for split, datasets in splits.items():
        for dataset in datasets:
            if isinstance(dataset, CheckableDataset):
                member_splits = members.setdefault(id(dataset), (dataset, []))[1]
                if split not in member_splits:
                    member_splits.append(split)
    bad = check_files(file for dataset, _ in members.values() for i in range(len(dataset))
                      for file in dataset.item_files(i))
    if not bad:
        return {}
    files_by_split: Dict[str, Dict[str, None]] = {split: {} for split in splits}  # ordered sets
    dropped: List[Tuple[Any, List[str], List[int]]] = []
    for dataset, member_splits in members.values():
        indices = []
        for i in range(len(dataset)):
            paths = [file.path for file in dataset.item_files(i) if file.path in bad]
            if paths:
                indices.append(i)
                for split in member_splits:
                    files_by_split[split].update(dict.fromkeys(paths))
        if indices:
            dropped.append((dataset, member_splits, indices))
    listing = _listing([path for files in files_by_split.values() for path in files], bad)
    if not skip_unreadable:
        counts = ", ".join(f"{len(files)} of the {split} split" for split, files in files_by_split.items() if files)
        raise DataFileError(
            f"{len(bad)} data file{'s' if len(bad) > 1 else ''} failed the check before training ({counts}):\n"
            f"{listing}\nset {config_key}.skip_unreadable=true to skip the items that read them"
        )
    for dataset, member_splits, indices in dropped:
        if len(indices) == len(dataset):
            raise DataFileError(
                f"{label_of(dataset)} ({' and '.join(member_splits)} split): every one of its {len(dataset)} items "
                f"reads a file that failed the check, so {config_key}.skip_unreadable=true would leave it empty:\n"
                f"{listing}"
            )
    skipped = {split: 0 for split in splits}
    for dataset, member_splits, indices in dropped:
        dataset.drop_items(indices)
        for split in member_splits:
            skipped[split] += len(indices)
    skipped = {split: count for split, count in skipped.items() if count}
    counts = ", ".join(f"{n} item{'s' if n > 1 else ''} of the {split} split" for split, n in skipped.items())
    logger.warning("skipped %s (%s.skip_unreadable=true): their files failed the check: %s", counts, config_key,
                   "; ".join(line.strip() for line in listing.splitlines()))
    return skipped


def _listing(paths: Sequence[str], reasons: Mapping[str, str]) -> str:
    """One indented "path: reason" line per unique path (at most MAX_LISTED, then "... and N more")."""
    unique = list(dict.fromkeys(paths))
    lines = [f"  {path}: {reasons[path]}" for path in unique[:MAX_LISTED]]
    if len(unique) > MAX_LISTED:
        lines.append(f"  ... and {len(unique) - MAX_LISTED} more")
    return "\n".join(lines)
