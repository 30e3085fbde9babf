"""TUM RGB-D: Kinect sequences of the freiburg benchmark (MiDaS evaluates on freiburg2_desk_with_person).

On-disk layout of one sequence (as distributed, e.g. rgbd_dataset_freiburg2_desk_with_person.tgz):

    <root>/rgb.txt      lines "timestamp rgb/<timestamp>.png"; lines starting with '#' are comments
    <root>/depth.txt    lines "timestamp depth/<timestamp>.png"
    <root>/rgb/*.png    RGB images
    <root>/depth/*.png  16-bit depth, metres = value / 5000, 0 = no measurement
    <root>/groundtruth.txt  lines "timestamp tx ty tz qx qy qz qw" (motion capture, optional)

Colour and depth are captured at slightly different times; each image is paired with a depth map
the way TUM's associate.py does it: every (rgb, depth) pair closer than `max_time_difference`
seconds is a candidate, candidates are taken in order of increasing |dt|, each image and each depth
map at most once. Split "test" is every associated frame, in time order.

Records: metric depth (label type "sensor"), sequence = the folder's name, frame = the position
among the associated frames. Intrinsics: the colour camera's of the benchmark (TUM's file formats
page, ROS convention with integer pixel centres: half a pixel is added, data/records.py) at
640 x 480 (rescaled for another image size): freiburg1 fx 517.3, fy 516.5, cx 318.6, cy 255.3;
freiburg2 520.9, 521.0, 325.1, 249.7; freiburg3 535.4, 539.2, 320.1, 247.6; `sensor` picks them
("auto": the freiburgN in the folder's name, freiburg2 when it names none). The images are used
as stored (freiburg1 and 2 are not undistorted). camera_to_world: the ground-truth pose (position
and orientation of the colour camera's optical centre, OpenCV axes) nearest in time to the image,
when one is closer than max_time_difference; None otherwise and without groundtruth.txt.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, depth_tensor, image_tensor
from recon_trainer.data.depth.image_files import read_rgb, read_uint16_png
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats.poses import quaternion_to_matrix, rigid_matrix
from recon_trainer.data.records import ViewRecord, intrinsics_centre_to_corner, rescale_intrinsics
from recon_trainer.errors import DataFileError

DEPTH_SCALE = 5000.0  # PNG value per metre
GROUNDTRUTH_FILE = "groundtruth.txt"
# The colour cameras' (fx, fy, cx, cy) at CAMERA_HW, integer pixel centres (TUM RGB-D file formats page).
SENSOR_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
SENSORS = ("auto",) + tuple(SENSOR_INTRINSICS)
CAMERA_HW = (480, 640)


@registry.register
class TUM(DepthDataset):
    """One TUM RGB-D sequence; samples are (rgb path, depth path)."""

    LABEL_TYPE = "sensor"

    split: str = choice_field("test", ("test",))  # test: every associated frame (the only split)
    max_time_difference: float = 0.02  # seconds; an image and a depth map (or a pose) farther apart are never paired
    sensor: str = choice_field("auto", SENSORS)  # intrinsics: freiburg1/2/3, or auto (from the folder's name)
    depth_cap: float = 10.0  # metres
    eval_metric: str = "delta1.25"

    def sample_sequence(self, sample: Tuple[str, str]) -> str:
        """The sequence a sample belongs to (DepthSequences groups by it): the sequence folder."""
        return self.sequence

    def list_samples(self) -> List[Tuple[str, str]]:
        rgb = read_timestamps(os.path.join(self.root, "rgb.txt"))
        depth = read_timestamps(os.path.join(self.root, "depth.txt"))
        pairs = associate([t for t, _ in rgb], [t for t, _ in depth], self.max_time_difference)
        groundtruth = os.path.join(self.root, GROUNDTRUTH_FILE)
        trajectory = read_trajectory(groundtruth) if os.path.isfile(groundtruth) else None
        samples = []
        self._frames: Dict[str, Tuple[int, Optional[np.ndarray]]] = {}  # rgb path -> (frame, (4, 4) pose or None)
        for frame, (i, j) in enumerate(pairs):
            rgb_path, depth_path = os.path.join(self.root, rgb[i][1]), os.path.join(self.root, depth[j][1])
            for path in (rgb_path, depth_path):
                if not os.path.isfile(path):
                    raise ConfigError(f"TUM: {path!r} listed in {self.root!r}/rgb.txt or depth.txt not found")
            pose = None if trajectory is None else nearest_pose(trajectory, rgb[i][0], self.max_time_difference)
            self._frames[rgb_path] = (frame, pose)
            samples.append((rgb_path, depth_path))
        return samples

    @property
    def sequence(self) -> str:
        """The sequence folder's name."""
        return os.path.basename(os.path.normpath(self.root))

    def sensor_name(self) -> str:
        """The sensor whose intrinsics the records get (module doc)."""
        if self.sensor != "auto":
            return self.sensor
        found = re.search(r"freiburg([123])", self.sequence)
        return f"freiburg{found.group(1)}" if found else "freiburg2"

    def record_files(self, sample: Tuple[str, str]) -> Tuple[DataFile, ...]:
        return tuple(DataFile(path) for path in sample)

    def load_sample(self, sample: Tuple[str, str]) -> ViewRecord:
        rgb_path, depth_path = sample
        image = read_rgb(rgb_path)
        depth = read_uint16_png(depth_path) / DEPTH_SCALE
        if depth.shape != image.shape[:2]:
            raise DataFileError(f"TUM: {depth_path!r} is {depth.shape}, expected the image size {image.shape[:2]}")
        frame, pose = self._frames[rgb_path]
        return ViewRecord(
            image=image_tensor(image),
            depth=depth_tensor(depth),
            depth_kind="metric",
            intrinsics=sensor_intrinsics(self.sensor_name(), image.shape[:2]),
            camera_to_world=None if pose is None else torch.from_numpy(pose).float(),
            sequence=self.sequence,
            frame=frame,
            path=rgb_path,
        )


def sensor_intrinsics(sensor: str, image_hw: Tuple[int, int]) -> torch.Tensor:
    """(3, 3) float32 K (records' convention) of a freiburg colour camera for an image of image_hw."""
    fx, fy, cx, cy = SENSOR_INTRINSICS[sensor]
    intrinsics = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return rescale_intrinsics(intrinsics_centre_to_corner(intrinsics), CAMERA_HW, image_hw).float()


def read_trajectory(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(timestamps (T,) sorted, camera-to-world poses (T, 4, 4)) of a groundtruth.txt, float64."""
    times, poses = [], []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                values = [float(v) for v in line.split()]
                if len(values) != 8:
                    raise ValueError
            except ValueError:
                raise DataFileError(f"TUM: {path}:{number}: {line!r}, expected 'timestamp tx ty tz qx qy qz qw'"
                                    ) from None
            qx, qy, qz, qw = values[4:]
            times.append(values[0])
            poses.append(rigid_matrix(quaternion_to_matrix(np.array([qw, qx, qy, qz])), np.array(values[1:4])))
    order = np.argsort(times, kind="stable")
    return np.asarray(times)[order], np.asarray(poses).reshape(-1, 4, 4)[order]


def nearest_pose(
    trajectory: Tuple[np.ndarray, np.ndarray], time: float, max_difference: float
) -> Optional[np.ndarray]:
    """The (4, 4) pose of the trajectory nearest in time to `time`; None when none is closer than max_difference."""
    times, poses = trajectory
    if len(times) == 0:
        return None
    k = int(np.searchsorted(times, time))
    candidates = [c for c in (k - 1, k) if 0 <= c < len(times)]
    best = min(candidates, key=lambda c: abs(times[c] - time))
    return poses[best] if abs(times[best] - time) < max_difference else None


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

