"""Tiny synthetic copies of SemanticKITTI's and SSCBench-KITTI-360's layouts (formats/semantic_kitti.py):
street scenes (road, sidewalks, terrain, a building, a tree, a pole and a sign, cars) voxelised into
the SSC labels, ray cast through camera 2's real pose into the image and the depth, and written with
the calibration, the occupancy .bin files, the _1_1 / _1_8 labels and the depth .npy files, so the
readers run on them unchanged. For tests and `python tools/make_ssc_datasets.py`.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from recon_trainer.data.formats.semantic_kitti import (
    COARSE_FACTOR,
    GRID_SHAPE,
    KITTI360_DRIVE,
    KITTI360_IMAGE_HW,
    KITTI_360,
    SEMANTIC_KITTI,
    VOXEL_ORIGIN,
    SSCLayout,
    camera_from_calibration,
    downsample_labels,
    frame_paths,
    layout_calibration,
    pack_voxel_bits,
    voxel_size_for,
    write_calibration,
)
from recon_trainer.data.records import IGNORE_LABEL


SKY_DEPTH = 80.0  # metres given to pixels that see nothing (stereo depth has a value everywhere)
CAMERA_HEIGHT = 1.73  # metres of the LiDAR above the road (the ground's top is at z = -1.6 m)
# SemanticKITTI's seq 00 calibration (P2 with camera 2's offset, Tr), for 1241 x 376 images
KITTI_00_P2 = ((718.856, 0.0, 607.1928, 45.38225), (0.0, 718.856, 185.2157, -0.1130887), (0.0, 0.0, 1.0, 3.779761e-3))
KITTI_00_TR = ((4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02),
               (-7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02),
               (9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01))
KITTI_00_HW = (376, 1241)
_PALETTE = {"empty": (0, 0, 0), "car": (100, 150, 245), "road": (255, 0, 255), "sidewalk": (75, 0, 75),
            "building": (255, 200, 0), "vegetation": (0, 175, 0), "trunk": (135, 60, 0), "terrain": (150, 240, 80),
            "pole": (255, 240, 150), "traffic-sign": (255, 0, 0), "parking": (255, 150, 255)}
_SKY = np.array((135, 180, 235), dtype=np.float64)


def _boxes(rng: np.random.Generator) -> List[Tuple[str, Tuple[float, float, float], Tuple[float, float, float]]]:
    """(class name, min corner, max corner) in metres (LiDAR frame) of a synthetic street; later boxes win."""
    ground = -1.6
    boxes = [("terrain", (0.0, -25.6, -2.0), (51.2, 25.6, ground)),
             ("road", (0.0, -4.0, -2.0), (51.2, 5.0, ground)),
             ("sidewalk", (0.0, -7.0, -2.0), (51.2, -4.0, ground)),
             ("sidewalk", (0.0, 5.0, -2.0), (51.2, 7.5, ground)),
             ("parking", (30.0, 7.5, -2.0), (42.0, 12.0, ground)),
             ("building", (6.0 + rng.uniform(0, 4), -25.6, ground), (44.0, -9.0, 2.5 + rng.uniform(0, 1.5))),
             ("vegetation", (12.0, 9.0, ground), (26.0, 16.0, ground + 1.2)),
             ("trunk", (34.0, 9.4, ground), (34.6, 10.0, ground + 2.6)),
             ("vegetation", (32.4, 8.0, ground + 2.6), (36.2, 11.6, ground + 5.2)),
             ("pole", (16.0, -6.2, ground), (16.4, -5.8, ground + 4.4)),
             ("traffic-sign", (15.8, -6.6, ground + 3.4), (16.6, -5.4, ground + 4.2))]
    for lane in (-1.8, 2.6):
        x = rng.uniform(5.0, 14.0)
        while x < 46.0:
            y = lane + rng.uniform(-0.4, 0.4)
            boxes.append(("car", (x, y - 0.9, ground), (x + 4.2, y + 0.9, ground + 1.5)))
            x += rng.uniform(9.0, 20.0)
    return boxes


def synthetic_street_labels(layout: SSCLayout, grid_shape: Sequence[int] = GRID_SHAPE, seed: int = 0
                            ) -> np.ndarray:
    """(X, Y, Z) uint8 labels of a synthetic street in `layout`'s classes (trunk is vegetation where
    the layout has no trunk): a voxel takes the class of the last box overlapping it; the building's
    interior beyond 1 m, the far edge and ~2 % random voxels are 255."""
    rng = np.random.default_rng(seed)
    size = voxel_size_for(grid_shape)
    shape = tuple(int(n) for n in grid_shape)
    labels = np.zeros(shape, dtype=np.uint8)
    lows = [np.asarray(VOXEL_ORIGIN[a]) + size * np.arange(shape[a]) for a in range(3)]
    names = layout.class_names
    for name, low, high in _boxes(rng):
        cls = names.index(name) if name in names else names.index("vegetation")
        spans = [(lows[a] < high[a] - 1e-9) & (lows[a] + size > low[a] + 1e-9) for a in range(3)]
        labels[np.ix_(*spans)] = cls
    interior = (lows[1] + size <= -10.0)[None, :, None]  # more than 1 m behind the building's face: unseen
    labels[(labels == names.index("building")) & interior] = IGNORE_LABEL
    labels[lows[0] >= 50.0] = IGNORE_LABEL
    labels[rng.random(shape) < 0.02] = IGNORE_LABEL
    return labels


def render_labels(labels: np.ndarray, voxel_size: float, intrinsics: np.ndarray, world_to_camera: np.ndarray,
                  image_hw: Tuple[int, int], voxel_origin: Sequence[float] = VOXEL_ORIGIN, chunk: int = 32
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Ray-cast a label volume: (classes (H, W) int64, -1 for sky; depth (H, W) float32 camera z).

    K (3, 3) has integer pixel centres; each pixel's ray is sampled every half voxel (in camera
    depth) from 5 cm to where it leaves the grid, and stops at the first voxel whose label is
    neither 0 nor 255. Rays that leave the grid meet the ground plane (the top of the voxels
    below -1.6 m), given the most frequent class of the grid's top ground layer, or the sky at
    SKY_DEPTH. About 10 s for a 376 x 1241 image of the (256, 256, 32) grid on one CPU core."""
    h, w = image_hw
    labels = np.asarray(labels)
    shape = np.array(labels.shape)
    origin = np.asarray(voxel_origin, dtype=np.float64)
    camera_to_world = np.linalg.inv(np.asarray(world_to_camera, dtype=np.float64))
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    k = np.asarray(intrinsics, dtype=np.float64)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    directions = rays @ camera_to_world[:3, :3].T  # world step per metre of camera depth
    centre = camera_to_world[:3, 3]
    high = origin + shape * voxel_size
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (origin - centre) / directions, (high - centre) / directions
    t_near = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf).max(1).clip(min=0.05)
    t_far = np.nan_to_num(np.maximum(t1, t2), nan=np.inf).min(1)
    classes = np.full(h * w, -1, dtype=np.int64)
    depth = np.full(h * w, np.inf)
    step = 0.5 * voxel_size
    active = np.flatnonzero(t_near < t_far)
    start = 0
    while active.size:
        t = t_near[active, None] + (start + np.arange(chunk) + 0.5) * step  # (n, chunk)
        points = centre + t[..., None] * directions[active, None, :]
        index = np.floor((points - origin) / voxel_size).astype(np.int64)
        inside = ((index >= 0) & (index < shape)).all(-1) & (t <= t_far[active, None])
        index = np.clip(index, 0, shape - 1)
        values = labels[index[..., 0], index[..., 1], index[..., 2]].astype(np.int64)
        solid = inside & (values != 0) & (values != IGNORE_LABEL)
        hit = solid.any(1)
        first = solid.argmax(1)
        rows = active[hit]
        classes[rows] = values[hit, first[hit]]
        depth[rows] = t[hit, first[hit]]
        active = active[~hit & (t[:, -1] <= t_far[active])]
        start += chunk
    ground_layers = max(1, int(math.ceil((-1.6 - origin[2]) / voxel_size - 1e-9)))
    ground_top = origin[2] + ground_layers * voxel_size
    ground_class = int(np.bincount(labels[:, :, ground_layers - 1].reshape(-1) % 255).argmax())
    missed = np.isinf(depth)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (ground_top - centre[2]) / directions[:, 2]
    floor = missed & (directions[:, 2] < 0) & (t_ground > 0) & (t_ground < SKY_DEPTH)
    classes[floor], depth[floor] = ground_class, t_ground[floor]
    depth[np.isinf(depth)] = SKY_DEPTH
    return classes.reshape(h, w), depth.reshape(h, w).astype(np.float32)


def shade(layout: SSCLayout, classes: np.ndarray, depth: np.ndarray, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 image of rendered classes: a colour per class darkened with distance, sky
    blue, a little noise."""
    palette = np.array([_PALETTE.get(name, (128, 128, 128)) for name in layout.class_names], dtype=np.float64)
    colour = np.where(classes[..., None] >= 0, palette[classes.clip(min=0)], _SKY)
    colour = colour * (0.55 + 0.45 * np.exp(-depth / 40.0))[..., None]
    colour += np.random.default_rng(seed).normal(0.0, 6.0, colour.shape)
    return np.clip(np.round(colour), 0, 255).astype(np.uint8)


def scaled_calibration(p2: np.ndarray, from_hw: Tuple[int, int], to_hw: Tuple[int, int]) -> np.ndarray:
    """P2 (3, 4) of a camera for images resized from from_hw to to_hw (pixel corners map onto each
    other; K has integer pixel centres): rows 0 and 1 scale, the principal point moves by the half pixel."""
    p2 = np.array(p2, dtype=np.float64)
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    scaled = p2.copy()
    scaled[0] = p2[0] * sx + p2[2] * 0.5 * (sx - 1.0)  # u' + 0.5 = (u + 0.5) sx, in homogeneous form
    scaled[1] = p2[1] * sy + p2[2] * 0.5 * (sy - 1.0)
    return scaled


def _write_frame(layout: SSCLayout, paths: Mapping[str, str], labels: Optional[np.ndarray], calibration: Mapping,
                 image_hw: Tuple[int, int], scene_labels: np.ndarray, seed: int, label_dtype: str) -> None:
    for key, path in paths.items():
        if path and (labels is not None or key not in ("labels", "coarse_labels")):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    intrinsics, world_to_camera = camera_from_calibration(calibration["P2"], calibration["Tr"], exact=True)
    classes, depth = render_labels(scene_labels, voxel_size_for(scene_labels.shape), intrinsics, world_to_camera,
                                   image_hw)
    Image.fromarray(shade(layout, classes, depth, seed)).save(paths["image"])
    occupied = (scene_labels != 0) & (scene_labels != IGNORE_LABEL)
    pack_voxel_bits(occupied).tofile(paths["voxels"])
    if labels is not None:
        pack_voxel_bits(labels == IGNORE_LABEL).tofile(os.path.splitext(paths["voxels"])[0] + ".invalid")
        np.save(paths["labels"], labels.astype(label_dtype))
        np.save(paths["coarse_labels"], downsample_labels(labels, COARSE_FACTOR))
    if paths["depth"]:
        np.save(paths["depth"], depth)


def _write_tiny(layout: SSCLayout, root: str, sequences: Sequence[str], frames_per_sequence: int,
                image_hw: Tuple[int, int], grid_shape: Sequence[int], with_depth: bool, seed: int,
                label_dtype: str, calibration: Mapping[str, np.ndarray], data_dir: str) -> Dict[str, str]:
    voxel_size_for(grid_shape)  # checks the grid
    roots = {"data_root": os.path.join(root, data_dir), "label_root": os.path.join(root, "labels"),
             "depth_root": os.path.join(root, "depth") if with_depth else ""}
    for s, sequence in enumerate(sequences):
        for f in range(frames_per_sequence):
            frame = f"{5 * f:06d}"
            paths = frame_paths(layout, roots["data_root"], roots["label_root"], roots["depth_root"], sequence, frame)
            scene = synthetic_street_labels(layout, grid_shape, seed=seed * 1000 + s * 100 + f)
            split = next((name for name, members in layout.splits.items() if sequence in members), "")
            labels = None if split in layout.unlabelled_splits else scene
            _write_frame(layout, paths, labels, calibration, image_hw, scene, seed + s * 100 + f, label_dtype)
    return roots


def write_tiny_semantic_kitti(
    root: str,
    sequences: Sequence[str] = ("00", "08"),
    frames_per_sequence: int = 2,
    image_hw: Tuple[int, int] = KITTI_00_HW,
    grid_shape: Sequence[int] = GRID_SHAPE,
    with_depth: bool = True,
    seed: int = 0,
    label_dtype: str = "uint8",
) -> Dict[str, str]:
    """Write a synthetic SemanticKITTI in the exact layout (module doc) under root/kitti (data),
    root/labels and root/depth; returns {"data_root", "label_root", "depth_root"} ("" depth_root
    without depth). Frames 000000, 000005, ...; each sequence's calib.txt is seq 00's rescaled to
    image_hw (default: seq 00's 376 x 1241, which the 370 x 1220 crop trims). grid_shape: the
    label grid, (256, 256, 32) as the real data or smaller for speed (same 51.2 x 51.2 x 6.4 m
    scene, larger voxels; readers need the same grid_shape). Test-split sequences (11-21) get
    images, voxels/*.bin and depth but no labels. label_dtype: of the _1_1 files (uint8, or
    float32 as MonoScene's script writes them). Images and depth are rendered from the labels
    through camera 2's exact pose (P2's offset included), as the real images are."""
    p2 = scaled_calibration(np.array(KITTI_00_P2), KITTI_00_HW, image_hw)
    tr = np.eye(4)
    tr[:3] = np.array(KITTI_00_TR)
    data_root = os.path.join(root, "kitti")
    for sequence in sequences:
        path = os.path.join(data_root, SEMANTIC_KITTI.calibration_file.format(sequence=sequence))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_calibration(path, p2, tr)
    return _write_tiny(SEMANTIC_KITTI, root, sequences, frames_per_sequence, image_hw, grid_shape, with_depth, seed,
                       label_dtype, {"P2": p2, "Tr": tr}, "kitti")


def write_tiny_kitti360(
    root: str,
    sequences: Sequence[str] = (KITTI360_DRIVE.format(0), KITTI360_DRIVE.format(6)),
    frames_per_sequence: int = 2,
    image_hw: Tuple[int, int] = KITTI360_IMAGE_HW,
    grid_shape: Sequence[int] = GRID_SHAPE,
    with_depth: bool = True,
    seed: int = 0,
) -> Dict[str, str]:
    """Write a synthetic SSCBench-KITTI-360 in its exact layout under root/kitti360 (data),
    root/labels and root/depth (as `write_tiny_semantic_kitti`). The calibration is the layout's
    fixed one, so image_hw must be the real 376 x 1408 for the images to match it (smaller sizes
    are written with the same K, i.e. a crop of the view: for tests of the readers only)."""
    calibration = layout_calibration(KITTI_360, "")
    return _write_tiny(KITTI_360, root, sequences, frames_per_sequence, image_hw, grid_shape, with_depth, seed,
                       "uint8", calibration, "kitti360")


