"""TUM RGB-D: Kinect sequences of the freiburg benchmark (MiDaS evaluates on freiburg2_desk_with_person).

On-disk layout of one sequence (as distributed, e.g. rgbd_dataset_freiburg2_desk_with_person.tgz):

    <root>/rgb.txt      lines "timestamp rgb/<timestamp>.png"; lines starting with '#' are comments
    <root>/depth.txt    lines "timestamp depth/<timestamp>.png"
    <root>/rgb/*.png    RGB images
    <root>/depth/*.png  16-bit depth, metres = value / 5000, 0 = no measurement

Colour and depth are captured at slightly different times; each image is paired with a depth map
the way TUM's associate.py does it: every (rgb, depth) pair closer than `max_time_difference`
seconds is a candidate, candidates are taken in order of increasing |dt|, each image and each depth
map at most once. Split "test" is every associated frame, in time order.
"""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, DepthSample
from recon_trainer.data.depth.image_files import read_rgb, read_uint16_png
from recon_trainer.data.file_check import DataFile
from recon_trainer.errors import DataFileError

DEPTH_SCALE = 5000.0  # PNG value per metre


@registry.register
class TUM(DepthDataset):
    """One TUM RGB-D sequence; records are (rgb path, depth path)."""

    split: str = choice_field("test", ("test",))  # test: every associated frame (the only split)
    max_time_difference: float = 0.02  # seconds; an image and a depth map farther apart are never paired
    depth_cap: float = 10.0  # metres
    eval_metric: str = "delta1.25"

    def list_samples(self) -> List[Tuple[str, str]]:
        rgb = read_timestamps(os.path.join(self.root, "rgb.txt"))
        depth = read_timestamps(os.path.join(self.root, "depth.txt"))
        pairs = associate([t for t, _ in rgb], [t for t, _ in depth], self.max_time_difference)
        records = []
        for i, j in pairs:
            rgb_path, depth_path = os.path.join(self.root, rgb[i][1]), os.path.join(self.root, depth[j][1])
            for path in (rgb_path, depth_path):
                if not os.path.isfile(path):
                    raise ConfigError(f"TUM: {path!r} listed in {self.root!r}/rgb.txt or depth.txt not found")
            records.append((rgb_path, depth_path))
        return records

    def record_files(self, record: Tuple[str, str]) -> Tuple[DataFile, ...]:
        return tuple(DataFile(path) for path in record)

    def load_sample(self, record: Tuple[str, str]) -> DepthSample:
        rgb_path, depth_path = record
        image = read_rgb(rgb_path)
        depth = read_uint16_png(depth_path) / DEPTH_SCALE
        if depth.shape != image.shape[:2]:
            raise DataFileError(f"TUM: {depth_path!r} is {depth.shape}, expected the image size {image.shape[:2]}")
        sequence = os.path.basename(os.path.normpath(self.root))
        return DepthSample(image=image, path=rgb_path, sequence=sequence, depth=depth)


def read_timestamps(path: str) -> List[Tuple[float, str]]:
    """The (timestamp, relative path) lines of a TUM list file, in file order ('#' lines skipped)."""
    if not os.path.isfile(path):
        raise ConfigError(f"TUM: list file {path!r} not found")
    entries = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            try:
                if len(fields) != 2:
                    raise ValueError
                entries.append((float(fields[0]), fields[1]))
            except ValueError:
                raise DataFileError(f"TUM: {path}:{number}: {line!r}, expected 'timestamp path'") from None
    return entries


def associate(rgb_times: List[float], depth_times: List[float], max_difference: float) -> List[Tuple[int, int]]:
    """Greedy unique pairs (rgb index, depth index) with |dt| < max_difference, smallest |dt| first;
    returned in rgb order."""
    depth = np.asarray(depth_times, dtype=np.float64)
    by_time = np.argsort(depth, kind="stable")
    sorted_depth = depth[by_time]
    candidates = []  # (|dt|, rgb index, depth index)
    for i, t in enumerate(rgb_times):
        lo, hi = np.searchsorted(sorted_depth, [t - max_difference, t + max_difference])
        candidates += [(abs(t - depth[j]), i, int(j)) for j in by_time[lo:hi] if abs(t - depth[j]) < max_difference]
    candidates.sort()
    used_rgb, used_depth, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_rgb and j not in used_depth:
            used_rgb.add(i)
            used_depth.add(j)
            pairs.append((i, j))
    return sorted(pairs)

