"""Synthetic box rooms written in NYUv2's exact SSC layout (SSCNet depthbin + MonoScene pkl), for
tests and tiny runs of the NYU semantic scene completion code.

    data_root/NYU<split>/<name>.bin         SSCNet volume: 240 x 144 x 240 at 0.02 m (nyu_ssc module doc)
    data_root/NYU<split>/<name>_color.jpg   RGB rendered with NYU's fixed K (scaled to image_hw)
    data_root/NYU<split>/<name>.png         depth, SSCNet's uint16 (mm * 8; / 8000 = metres)
    label_root/NYU<split>/<name>.pkl        MonoScene's pkl (depthbin_to_pkl_content)

The conventions are the real data's (checked against SSCNet's demo NYU0001_0000.bin): world z up
with the floor at z = 0, the camera at (0, 0, h) (h 1.0..1.5 m) looking along +y turned by a yaw of
up to +-25 degrees and pitched down 0..15 degrees, OpenCV camera axes, and SSCNet's volume placement
(voxel_origin = R @ (0, 0, 3.4) + t - (2.4, 2.4, 1.44), z = -0.05), so 50..70 % of the volume is
in view as in NYU. A room is an axis-aligned box (floor, ceiling, four walls 8 cm thick, a window
in the far wall) with 3..5 pieces of furniture (boxes of SSCNet ids whose 12-class map gives bed,
table, chair, sofa, furniture) standing on the floor, and an object or a TV on one of them. As
SSCNet labels NYU, in-room voxels outside the camera's view are empty (0) and empty voxels
outside the room's floor plan are 255. Rooms depend on (seed, name).

image_hw other than (480, 640) renders a smaller image with NYU's K scaled to it (readers rescale
K to the image they find); the labels and the view test always use the 640 x 480 camera.
"""
from __future__ import annotations

import dataclasses
import os
import zlib
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.formats import nyu_ssc
from recon_trainer.data.records import intrinsics_centre_to_corner, rescale_intrinsics

# SSCNet class ids (0..36) used, and what SEG_CLASS_MAP makes of them
CEILING, FLOOR, WALL, WINDOW = 1, 2, 3, 4
CHAIR, BED, SOFA, TABLE, FURNITURE, OBJECT, TV = 6, 7, 8, 9, 11, 14, 16
# furniture standing on the floor: id, (width, depth, height) ranges in metres
_FURNITURE = {
    BED: ((1.4, 2.0), (1.0, 1.6), (0.4, 0.6)),
    TABLE: ((0.8, 1.4), (0.6, 1.0), (0.7, 0.8)),
    CHAIR: ((0.4, 0.5), (0.4, 0.5), (0.8, 1.0)),
    SOFA: ((1.4, 2.0), (0.7, 0.9), (0.7, 0.9)),
    FURNITURE: ((0.6, 1.2), (0.4, 0.6), (0.8, 1.6)),
}
_COLOURS = {CEILING: (235, 235, 230), FLOOR: (150, 110, 80), WALL: (200, 190, 170), WINDOW: (150, 200, 240),
            CHAIR: (180, 60, 50), BED: (90, 120, 200), SOFA: (70, 150, 90), TABLE: (120, 80, 40),
            FURNITURE: (160, 140, 100), OBJECT: (230, 200, 60), TV: (30, 30, 35)}
_WALL_THICKNESS = 0.08  # metres
_VOLUME_AHEAD = 3.4  # metres: SSCNet centres the volume this far along the optical axis
_FLOOR_Z = -0.05  # metres: SSCNet's voxel_origin z (height_belowfloor)
_LIGHT = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


@dataclasses.dataclass
class SyntheticNYURoom:
    """One room. camera_pose: (4, 4) float64 camera-to-world (OpenCV axes); voxel_origin: (3,) world
    metres; room: (x0, x1, y0, y1, height) of the interior; boxes: (lo (3,), hi (3,), SSCNet id);
    window: (x0, x1, z0, z1) on the far wall y = y1."""

    camera_pose: np.ndarray
    voxel_origin: np.ndarray
    room: Tuple[float, float, float, float, float]
    boxes: List[Tuple[np.ndarray, np.ndarray, int]]
    window: Tuple[float, float, float, float]


def sample_room(rng: np.random.Generator) -> SyntheticNYURoom:
    """A random room and camera (module doc)."""
    height, yaw, pitch = rng.uniform(1.0, 1.5), np.radians(rng.uniform(-25, 25)), np.radians(rng.uniform(0, 15))
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.array([np.cos(yaw), -np.sin(yaw), 0.0])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)  # columns: x right, y down, z ahead
    pose[:3, 3] = (0.0, 0.0, height)
    pose = pose.astype(np.float32).astype(np.float64)  # as the file stores it
    origin = pose[:3, :3] @ np.array([0.0, 0.0, _VOLUME_AHEAD]) + pose[:3, 3] - np.array([2.4, 2.4, 1.44])
    origin[2] = _FLOOR_Z
    x0, x1 = -rng.uniform(1.6, 2.6), rng.uniform(1.6, 2.6)
    y0, y1 = -rng.uniform(0.3, 1.0), rng.uniform(3.2, 4.8)
    room = (x0, x1, y0, y1, rng.uniform(2.4, 2.7))
    width = rng.uniform(0.8, 1.4)
    start = rng.uniform(x0 + 0.2, x1 - 0.2 - width)
    window = (start, start + width, rng.uniform(0.8, 1.1), rng.uniform(1.8, 2.1))
    origin = origin.astype(np.float32).astype(np.float64)
    return SyntheticNYURoom(pose, origin, room, _sample_boxes(rng, room, pose), window)


def _sample_boxes(rng: np.random.Generator, room: Tuple[float, ...], pose: np.ndarray
                  ) -> List[Tuple[np.ndarray, np.ndarray, int]]:
    """3..5 non-overlapping furniture boxes, mostly in view (centres 1.3..3.8 m ahead within 25
    degrees of the camera's heading), and an object or a TV on one of them."""
    x0, x1, y0, y1, _ = room
    heading = np.arctan2(pose[0, 2], pose[1, 2])  # of the optical axis, from +y towards +x
    kinds = rng.choice(list(_FURNITURE), size=rng.integers(3, 6), replace=False)
    boxes: List[Tuple[np.ndarray, np.ndarray, int]] = []
    for kind in kinds:
        size = np.array([rng.uniform(*r) for r in _FURNITURE[int(kind)]])
        if rng.random() < 0.5:
            size[[0, 1]] = size[[1, 0]]  # turned by 90 degrees
        for _ in range(30):
            angle, distance = heading + np.radians(rng.uniform(-25, 25)), rng.uniform(1.3, 3.8)
            centre = distance * np.array([np.sin(angle), np.cos(angle)])
            low = np.clip(centre - size[:2] / 2, [x0 + 0.05, max(y0, 0.8)], [x1 - 0.05 - size[0], y1 - 0.05 - size[1]])
            lo, hi = np.append(low, 0.0), np.append(low, 0.0) + size
            if all(np.any(lo[:2] > b_hi[:2] + 0.1) or np.any(hi[:2] < b_lo[:2] - 0.1) for b_lo, b_hi, _ in boxes):
                boxes.append((lo, hi, int(kind)))
                break
    base_lo, base_hi, _ = boxes[int(rng.integers(len(boxes)))]
    kind = TV if rng.random() < 0.3 else OBJECT
    size = np.array([0.8, 0.1, 0.5]) if kind == TV else rng.uniform(0.15, 0.4, size=3)
    size[:2] = np.minimum(size[:2], base_hi[:2] - base_lo[:2])
    lo = np.append(base_lo[:2] + rng.uniform(size=2) * (base_hi[:2] - base_lo[:2] - size[:2]), base_hi[2])
    boxes.append((lo, lo + size, kind))
    return boxes


def _index_range(lo: float, hi: float, origin: float, count: int) -> slice:
    """The voxels (size 0.02) whose centres lie in [lo, hi] along one axis."""
    size = nyu_ssc.DEPTHBIN_VOXEL_SIZE
    first = int(np.ceil((lo - origin) / size - 0.5))
    last = int(np.floor((hi - origin) / size - 0.5))
    return slice(min(max(first, 0), count), min(max(last + 1, 0), count))


def room_labels(room: SyntheticNYURoom) -> np.ndarray:
    """(240, 144, 240) uint8 SSCNet ids in the stored axis order (world x, z, y) (module doc)."""
    shape = (240, 240, 144)  # world (x, y, z)
    labels = np.zeros(shape, dtype=np.uint8)
    o = room.voxel_origin

    def fill(lo: Sequence[float], hi: Sequence[float], value: int) -> None:
        labels[tuple(_index_range(a, b, c, n) for a, b, c, n in zip(lo, hi, o, shape))] = value

    x0, x1, y0, y1, height = room.room
    t = _WALL_THICKNESS
    fill((x0 - t, y0 - t, -1.0), (x1 + t, y1 + t, 0.02), FLOOR)
    fill((x0 - t, y0 - t, height), (x1 + t, y1 + t, height + 0.06), CEILING)
    for lo, hi in (((x0 - t, y0 - t), (x0, y1 + t)), ((x1, y0 - t), (x1 + t, y1 + t)),
                   ((x0, y0 - t), (x1, y0)), ((x0, y1), (x1, y1 + t))):
        fill((*lo, 0.02), (*hi, height), WALL)
    wx0, wx1, wz0, wz1 = room.window
    fill((wx0, y1, wz0), (wx1, y1 + t, wz1), WINDOW)
    for lo, hi, kind in room.boxes:
        fill(lo, hi, kind)
    occupied = np.nonzero(labels)  # only labelled voxels change when outside the view
    outside = ~_in_view(room, occupied)
    labels[tuple(index[outside] for index in occupied)] = 0
    centres = [o[k] + (np.arange(shape[k]) + 0.5) * nyu_ssc.DEPTHBIN_VOXEL_SIZE for k in range(2)]
    in_plan = ((centres[0] > x0) & (centres[0] < x1))[:, None] & ((centres[1] > y0) & (centres[1] < y1))[None, :]
    labels[~in_plan[:, :, None] & (labels == 0)] = 255
    return np.ascontiguousarray(labels.transpose(0, 2, 1))


def _in_view(room: SyntheticNYURoom, index: Tuple[np.ndarray, ...]) -> np.ndarray:
    """(P,) bool: whether the centres of voxels index = (i, j, k) (world order) are in front of the
    640 x 480 NYU camera and project inside its image (SSCNet's rounding)."""
    rotation, position = room.camera_pose[:3, :3], room.camera_pose[:3, 3]
    offsets = [room.voxel_origin[k] + (index[k] + 0.5) * nyu_ssc.DEPTHBIN_VOXEL_SIZE - position[k] for k in range(3)]
    x, y, z = (_rotate(offsets, rotation[:, c]) for c in range(3))  # R^T (p - t)
    (fx, _, cx), (_, fy, cy), _ = nyu_ssc.NYU_INTRINSICS
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = np.round(fx * x / z + cx), np.round(fy * y / z + cy)
    return (z > 0) & (u >= 0) & (u < 640) & (v >= 0) & (v < 480)


def _rotate(columns: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """sum_k weights[k] * columns[k]: one coordinate of a small matrix times many points, without
    a BLAS call (slow on many small rows when the cores are busy)."""
    return columns[0] * weights[0] + columns[1] * weights[1] + columns[2] * weights[2]


def render_room(room: SyntheticNYURoom, image_hw: Tuple[int, int] = (480, 640)) -> Tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) uint8, depth (H, W) float32 camera z in metres) of the room seen by its camera
    with NYU's K scaled to image_hw: exact ray casting of the room's boxes, Lambertian shading."""
    h, w = image_hw
    k = rescale_intrinsics(intrinsics_centre_to_corner(torch.tensor(nyu_ssc.NYU_INTRINSICS, dtype=torch.float64)),
                           (480, 640), (h, w)).numpy()
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    rays = [((u - k[0, 2]) / k[0, 0]).ravel(), ((v - k[1, 2]) / k[1, 1]).ravel(), np.ones(h * w)]
    directions = [_rotate(rays, room.camera_pose[c, :3]) for c in range(3)]  # camera z = 1: t is the depth
    depth, axis, kind = _cast(room, directions)
    eye = room.camera_pose[:3, 3]
    points = [eye[c] + directions[c] * depth for c in range(3)]
    wx0, wx1, wz0, wz1 = room.window
    window = (kind == WALL) & (axis == 1) & (points[1] > room.room[3] - 1e-6) & (points[0] > wx0) & (points[0] < wx1)
    kind = np.where(window & (points[2] > wz0) & (points[2] < wz1), WINDOW, kind)
    albedo = np.zeros((h * w, 3))
    for value, colour in _COLOURS.items():
        albedo[kind == value] = colour
    # a checkerboard of 25 cm squares on every face (the coordinates along the face), Lambertian shading
    squares = sum(np.where(axis == c, 0.0, np.floor(points[c] / 0.25)) for c in range(3))
    facing = sum(np.where(axis == c, np.abs(_LIGHT[c]), 0.0) for c in range(3))
    light = (0.5 + 0.5 * facing) * (0.85 + 0.15 * (squares % 2))
    rgb = np.clip(albedo * light[:, None], 0, 255).astype(np.uint8).reshape(h, w, 3)
    return rgb, depth.astype(np.float32).reshape(h, w)


def _cast(room: SyntheticNYURoom, directions: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, axis of the face hit, SSCNet id of the surface) of rays eye + t * directions (3 arrays of P)."""
    eye = room.camera_pose[:3, 3]
    x0, x1, y0, y1, height = room.room
    lo, hi = (x0, y0, 0.0), (x1, y1, height)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = [1.0 / d for d in directions]
        # the eye is inside the room: each ray leaves it through the nearest of the faces ahead
        exits = [np.where(directions[c] > 0, (hi[c] - eye[c]) * inverse[c], (lo[c] - eye[c]) * inverse[c])
                 for c in range(3)]
        depth, axis = _first(exits, np.minimum, np.less)
        kind = np.where(axis == 2, np.where(directions[2] > 0, CEILING, FLOOR), WALL)
        for box_lo, box_hi, box_kind in room.boxes:
            near = [np.minimum((box_lo[c] - eye[c]) * inverse[c], (box_hi[c] - eye[c]) * inverse[c]) for c in range(3)]
            far = [np.maximum((box_lo[c] - eye[c]) * inverse[c], (box_hi[c] - eye[c]) * inverse[c]) for c in range(3)]
            t_near, near_axis = _first(near, np.maximum, np.greater)
            t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
            hit = (t_near < t_far) & (t_near > 0) & (t_near < depth)
            depth, axis = np.where(hit, t_near, depth), np.where(hit, near_axis, axis)
            kind = np.where(hit, box_kind, kind)
    return depth, axis, kind


def _first(values: List[np.ndarray], reduce: np.ufunc, better: np.ufunc) -> Tuple[np.ndarray, np.ndarray]:
    """(reduce of 3 arrays elementwise, index of the array giving it)."""
    best, index = values[0], np.zeros(len(values[0]), dtype=np.int64)
    for c in (1, 2):
        index = np.where(better(values[c], best), c, index)
        best = reduce(best, values[c])
    return best, index


def room_seed(seed: int, name: str) -> np.random.Generator:
    """The generator of room `name` under `seed`."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def write_synthetic_nyu(data_root: str, label_root: str, split: str, names: Sequence[str],
                        image_hw: Tuple[int, int] = (480, 640), seed: int = 0) -> List[str]:
    """Write rooms `names` (e.g. NYU0001_0000) of split train or test in NYU's layout (module doc);
    returns the .pkl paths."""
    folder, label_folder = os.path.join(data_root, f"NYU{split}"), os.path.join(label_root, f"NYU{split}")
    os.makedirs(folder, exist_ok=True)
    os.makedirs(label_folder, exist_ok=True)
    written = []
    for name in names:
        room = sample_room(room_seed(seed, name))
        bin_path = nyu_ssc.depthbin_path(data_root, split, name)
        nyu_ssc.write_depthbin(bin_path, room.voxel_origin, room.camera_pose, room_labels(room))
        rgb, depth = render_room(room, image_hw)
        Image.fromarray(rgb).save(os.path.join(folder, f"{name}_color.jpg"), quality=95)
        nyu_ssc.write_depth_png(os.path.join(folder, f"{name}.png"), depth)
        pkl_path = os.path.join(label_folder, f"{name}.pkl")
        nyu_ssc.write_pkl(pkl_path, nyu_ssc.depthbin_to_pkl_content(bin_path))
        written.append(pkl_path)
    return written
