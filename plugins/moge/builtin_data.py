"""MoGe's built-in data: synthetic box rooms (synthetic_rooms.py) written as tiny datasets in MoGe's
layout (recon_trainer/data/formats/moge.py), read by the moge configs when no data_root is given.

    Rooms/        training, label 'synthetic': exact metric depth with sky (+inf) through a skylight
                  and a window, normal.png, FOVs 45-100 degrees, principal points off-centre by <= 2 %
    RoomsSfM/     training, label 'sfm': depth known only near image texture (NaN elsewhere, and no
                  sky), in an arbitrary unit per room (not metric), no normals
    EvalRooms/    benchmark: exact metric depth, segmentation.png with its labels
    EvalObjects/  benchmark: cameras looking at objects (sharp depth boundaries), segmentation.png

These are the defaults (DATASETS); the generator writes each kind under any names it is given, so a
config whose expressions name MoGe's datasets lists those names. Each dataset has its own rooms (the
benchmarks stay unseen). Mix them as, e.g.:

    train: "MoGeDataset(root='Rooms', label_type='synthetic', depth_unit=1.0)
            + MoGeDataset(root='RoomsSfM', label_type='sfm', finite_depth_mask='only_known')"
    test:  "MoGeDataset(root='EvalRooms', augment=False, depth_unit=1.0)
            + MoGeDataset(root='EvalObjects', augment=False, depth_unit=1.0, has_sharp_boundary=True)"
"""
from __future__ import annotations

import os
import shutil
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from recon_trainer.config import registry
from recon_trainer.data.builtin_data import BuiltinDataBase
from recon_trainer.data.formats import moge as moge_format

from . import synthetic_rooms as rooms

VIEWS_PER_ROOM = 4
DATASETS = {"Rooms": "synthetic", "RoomsSfM": "sfm", "EvalRooms": "benchmark", "EvalObjects": "sharp_benchmark"}


def _write_dataset(root: str, n_views: int, size_hw: Tuple[int, int], rng: np.random.Generator,
                   make_room: Callable[[np.random.Generator], rooms.Room],
                   write_view: Callable[[str, rooms.Room, rooms.Rendering, np.random.Generator, int], None],
                   at_object: Callable[[int], bool], fov_degrees: Tuple[float, float], centre_jitter: float,
                   depth_copies: Sequence[str] = ()) -> None:
    """n_views views of rooms, VIEWS_PER_ROOM per room, each written by write_view into
    root/room_RRR/view_V (its depth.png also copied to each name of depth_copies), and the index."""
    instances: List[str] = []
    room, scale = None, 1.0
    for k in range(n_views):
        if k % VIEWS_PER_ROOM == 0:
            room = make_room(rng)
            scale = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
        position, rotation = rooms.look_from(room, rng, at_object=at_object(k))
        intrinsics = rooms.random_intrinsics(rng, size_hw, fov_degrees, centre_jitter)
        rendering = rooms.render(room, position, rotation, intrinsics, size_hw)
        instance = os.path.join(root, f"room_{k // VIEWS_PER_ROOM:03d}", f"view_{k % VIEWS_PER_ROOM}")
        os.makedirs(instance, exist_ok=True)
        write_view(instance, room, rendering, rng, scale)
        for name in depth_copies:
            shutil.copyfile(os.path.join(instance, "depth.png"), os.path.join(instance, name))
        instances.append(instance)
    moge_format.write_index(root, instances)


def _write_exact(instance: str, rendering: rooms.Rendering) -> None:
    moge_format.write_instance(instance, rendering.rgb, rendering.depth, rendering.intrinsics)


def _write_synthetic(instance: str, room: rooms.Room, rendering: rooms.Rendering, rng: np.random.Generator,
                     scale: float) -> None:
    _write_exact(instance, rendering)
    moge_format.write_normal(os.path.join(instance, "normal.png"), rendering.normal)


def _write_sfm(instance: str, room: rooms.Room, rendering: rooms.Rendering, rng: np.random.Generator,
               scale: float) -> None:
    depth = rooms.sfm_depth(rendering, rng) * np.float32(scale)
    moge_format.write_instance(instance, rendering.rgb, depth, rendering.intrinsics)


def _write_benchmark(instance: str, room: rooms.Room, rendering: rooms.Rendering, rng: np.random.Generator,
                     scale: float) -> None:
    _write_exact(instance, rendering)
    moge_format.write_segmentation(os.path.join(instance, "segmentation.png"), rendering.surface,
                                   rooms.labels_present(room, rendering.surface))


KINDS = ("synthetic", "sfm", "benchmark", "sharp_benchmark")


def _plan(kind: str, n_views: int) -> Tuple:
    """(n_views, make_room, write_view, at_object, fov range in degrees, principal-point jitter) of a kind."""
    if kind == "synthetic":
        return (n_views, lambda r: rooms.random_room(r, skylight=True, window=bool(r.integers(2))), _write_synthetic,
                lambda k: k % 2 == 1, (45.0, 100.0), 0.02)
    if kind == "sfm":
        return (n_views, lambda r: rooms.random_room(r, skylight=False, window=True), _write_sfm,
                lambda k: k % 2 == 1, (45.0, 100.0), 0.02)
    if kind == "benchmark":
        return (n_views, lambda r: rooms.random_room(r, skylight=True, window=True), _write_benchmark,
                lambda k: False, (55.0, 85.0), 0.0)
    return (n_views, lambda r: rooms.random_room(r, skylight=False, window=True, n_boxes=(3, 4)),
            _write_benchmark, lambda k: True, (55.0, 85.0), 0.0)


def write_moge_datasets(out_dir: str, datasets: Mapping[str, str], n_train: int = 32, n_sfm: int = 20,
                        n_eval: int = 4, size_hw: Tuple[int, int] = (96, 128), seed: int = 0,
                        depth_copies: Sequence[str] = ()) -> Dict[str, str]:
    """Write each dataset of `datasets` (folder name -> kind of KINDS, module doc) under out_dir:
    {name: folder}. n_train views per synthetic dataset, n_sfm per sfm one, n_eval per benchmark,
    all (H, W) = size_hw; each dataset has rooms of its own. Every depth.png is also copied to
    each file name of depth_copies (datasets whose config reads e.g. depth_completed.png)."""
    if min(n_train, n_sfm, n_eval) < 1 or min(size_hw) < 8:
        raise ValueError(f"write_moge_datasets: n_train={n_train}, n_sfm={n_sfm} and n_eval={n_eval} must be >= 1 "
                         f"and the size {size_hw} at least 8 x 8")
    counts = {"synthetic": n_train, "sfm": n_sfm, "benchmark": n_eval, "sharp_benchmark": n_eval}
    written = {}
    for index, (name, kind) in enumerate(datasets.items()):
        if kind not in KINDS:
            raise ValueError(f"write_moge_datasets: dataset {name!r} has kind {kind!r}; expected one of {KINDS}")
        n_views, make_room, write_view, at_object, fov, jitter = _plan(kind, counts[kind])
        root = os.path.join(out_dir, name)
        _write_dataset(root, n_views, size_hw, np.random.default_rng([seed, index]), make_room, write_view,
                       at_object, fov, jitter, depth_copies)
        written[name] = root
    return written


@registry.register
class MoGeSyntheticDatasets(BuiltinDataBase):
    """Synthetic box rooms (module doc) written under the dataset names a config's expressions use:
    the released configs name MoGe's datasets (TartanAir, NYUv2, ...), so with no data_root the same
    expressions read synthetic stand-ins of them."""

    synthetic: Tuple[str, ...] = ("Rooms",)  # training datasets with exact depth, sky (+inf) and normals
    sfm: Tuple[str, ...] = ("RoomsSfM",)  # training datasets with SfM-like sparse depth in an arbitrary unit
    benchmarks: Tuple[str, ...] = ("EvalRooms",)  # benchmarks of rooms, with segmentation.png
    sharp_benchmarks: Tuple[str, ...] = ("EvalObjects",)  # benchmarks looking at objects (sharp depth boundaries)
    n_train: int = 32  # views of each synthetic dataset
    n_sfm: int = 20  # views of each sfm dataset
    n_eval: int = 4  # views of each benchmark
    height: int = 96  # image height in pixels
    width: int = 128  # image width in pixels
    seed: int = 0  # seeds the rooms and cameras
    depth_copies: Tuple[str, ...] = ()  # other depth file names written beside depth.png (e.g. depth_completed.png)

    def datasets(self) -> Dict[str, str]:
        """Folder name -> kind (KINDS), in the order written."""
        kinds = {"synthetic": self.synthetic, "sfm": self.sfm, "benchmark": self.benchmarks,
                 "sharp_benchmark": self.sharp_benchmarks}
        return {name: kind for kind, names in kinds.items() for name in names}

    def describe(self) -> str:
        parts = [f"{len(self.synthetic)} synthetic ({self.n_train} views each, sky, normals)",
                 f"{len(self.sfm)} sfm-like ({self.n_sfm} each)",
                 f"{len(self.benchmarks) + len(self.sharp_benchmarks)} benchmarks ({self.n_eval} each)"]
        return (f"synthetic box rooms in MoGe's layout under the config's dataset names: {', '.join(parts)}, "
                f"{self.width}x{self.height}")

    def write(self, folder: str) -> None:
        write_moge_datasets(folder, self.datasets(), self.n_train, self.n_sfm, self.n_eval, (self.height, self.width),
                            self.seed, self.depth_copies)
