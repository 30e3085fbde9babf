"""Rendered sequences for the tiny synthetic copies of the multi-view datasets: the box rooms of
data/depth/synthetic.py seen along a smooth camera path, with exact depth.

- `render_room_walk`: the camera glides along an arc of an ellipse inside the room, at about
  three quarters of its height, looking across the room (ScanNet-like, 7-Scenes, NRGBD, BlendedMVS).
- `render_object_orbit`: the camera circles one object of the room from above, looking at it (CO3D, DTU);
  `object_mask` marks that object's pixels (the surface points inside its bounding sphere, above
  the floor).

Depth is the camera z in scene units (metres unless `scale` says otherwise), > 0 at every pixel
(the room is closed). Of a few random paths the one keeping farthest from walls and objects is
rendered. Everything is seeded by (seed, scene_index).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
import torch

from recon_trainer.data.cameras import cameras_from_opencv, look_at_cameras
from recon_trainer.data.depth.synthetic import SyntheticRoom, synthetic_room
from recon_trainer.data.records import (
    depth_to_points,
    intrinsics_corner_to_centre,
    invert_pose,
    opencv_view_from_cameras,
    transform_points,
)

_PATH_TRIES = 16  # random paths drawn; the one with the most clearance is kept
_LIGHT_AMBIENT = 0.45  # ambient fraction of the albedo (as depth/synthetic.py)


@dataclasses.dataclass
class RenderedSequence:
    """N views of one scene along a camera path.

    rgb: (N, H, W, 3) uint8. depth: (N, H, W) float32 camera z in scene units, 0 where no surface.
    intrinsics: (3, 3) float64 K in pixels, records' convention (pixel centres at + 0.5).
    camera_to_world: (N, 4, 4) float64 OpenCV camera-to-world poses.
    object_mask: (N, H, W) bool pixels of the orbited object (all False for a room walk).
    """

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    camera_to_world: np.ndarray
    object_mask: np.ndarray

    def intrinsics_opencv(self) -> np.ndarray:
        """(3, 3) float64 K with integer pixel centres (OpenCV, DUSt3R, the files' convention)."""
        return intrinsics_corner_to_centre(torch.from_numpy(self.intrinsics)).numpy()


def default_intrinsics(image_size_hw: Tuple[int, int], fov_degrees: float = 60.0) -> np.ndarray:
    """(3, 3) float64 K (records' convention) with a centred principal point and square pixels whose
    field of view across the shorter side is fov_degrees."""
    h, w = image_size_hw
    focal = min(h, w) / 2.0 / math.tan(math.radians(fov_degrees) / 2.0)
    return np.array([[focal, 0.0, w / 2.0], [0.0, focal, h / 2.0], [0.0, 0.0, 1.0]])


def render_room_walk(
    n_frames: int, image_size_hw: Tuple[int, int], seed: int = 0, scene_index: int = 0,
    depth_range: Tuple[float, float] = (0.5, 6.0), intrinsics: Optional[np.ndarray] = None,
    arc_degrees: float = 90.0, scale: float = 1.0,
) -> RenderedSequence:
    """n_frames views along a smooth arc of `arc_degrees` inside room `scene_index` (module doc).
    intrinsics: (3, 3) K in pixels (records' convention); None: 60 degrees, centred. scale
    multiplies every length (1000 gives millimetres for metre-sized rooms)."""
    room = synthetic_room(seed, scene_index, depth_range)
    rng = np.random.default_rng([seed, scene_index, 2])
    half = room.extents / 2.0
    best = None
    for _ in range(_PATH_TRIES):
        radii = rng.uniform(0.15, 0.35, size=2) * room.extents[[0, 2]]
        start = rng.uniform(0.0, 2.0 * np.pi)
        angles = start + np.radians(arc_degrees) * np.linspace(0.0, 1.0, n_frames)
        height = rng.uniform(0.6, 0.8) * room.extents[1]
        eyes = np.stack([radii[0] * np.cos(angles), np.full(n_frames, height), radii[1] * np.sin(angles)], axis=-1)
        clearance = _clearance(room, eyes)
        if best is None or clearance > best[0]:
            targets = np.stack([-0.8 * half[0] * np.cos(angles + 0.3), np.full(n_frames, 0.3 * room.extents[1]),
                                -0.8 * half[2] * np.sin(angles + 0.3)], axis=-1)
            best = (clearance, eyes, targets)
    return _render(room, best[1], best[2], image_size_hw, intrinsics, scale, None)


def render_object_orbit(
    n_frames: int, image_size_hw: Tuple[int, int], seed: int = 0, scene_index: int = 0,
    depth_range: Tuple[float, float] = (0.5, 6.0), intrinsics: Optional[np.ndarray] = None,
    arc_degrees: float = 360.0, scale: float = 1.0, distance: Tuple[float, float] = (1.5, 3.0),
) -> RenderedSequence:
    """n_frames views on a circle of `arc_degrees` around the object of room `scene_index` with
    the most free space around it, looking at its centre; object_mask marks it (module doc).
    distance: the range of the circle's radius, in object radii. intrinsics and scale as
    render_room_walk."""
    room = synthetic_room(seed, scene_index, depth_range)
    rng = np.random.default_rng([seed, scene_index, 3])
    best = None
    for index, (cx, cy, cz, radius) in enumerate(room.objects):
        for _ in range(_PATH_TRIES):
            span = radius * rng.uniform(*distance)
            start = rng.uniform(0.0, 2.0 * np.pi)
            angles = start + np.radians(arc_degrees) * np.arange(n_frames) / max(n_frames, 1)
            height = cy + radius * rng.uniform(1.0, 3.0)  # mostly above the other objects
            eyes = np.stack([cx + span * np.cos(angles), np.full(n_frames, height),
                             cz + span * np.sin(angles)], axis=-1)
            clearance = _clearance(room, eyes)
            if best is None or clearance > best[0]:
                best = (clearance, eyes, np.tile([[cx, cy, cz]], (n_frames, 1)), index)
    return _render(room, best[1], best[2], image_size_hw, intrinsics, scale, room.objects[best[3]])


def _clearance(room: SyntheticRoom, eyes: np.ndarray) -> float:
    """The smallest distance from the eyes (N, 3) to a wall, the floor, the ceiling or an object's sphere."""
    half = room.extents / 2.0
    walls = np.minimum.reduce([half[0] - np.abs(eyes[:, 0]), half[2] - np.abs(eyes[:, 2]), eyes[:, 1],
                               room.extents[1] - eyes[:, 1]])
    objects = np.linalg.norm(eyes[:, None] - room.objects[None, :, :3], axis=-1) - room.objects[None, :, 3]
    return float(min(walls.min(), objects.min()))


def _render(
    room: SyntheticRoom, eyes: np.ndarray, targets: np.ndarray, image_size_hw: Tuple[int, int],
    intrinsics: Optional[np.ndarray], scale: float, sphere: Optional[np.ndarray],
) -> RenderedSequence:
    """Render the room from cameras at `eyes` (N, 3) looking at `targets` (N, 3) (+Y up) with K."""
    from recon_trainer.data import scene_rendering  # imported here: trimesh is slow to import

    h, w = image_size_hw
    n = len(eyes)
    k = default_intrinsics(image_size_hw) if intrinsics is None else np.asarray(intrinsics, dtype=np.float64)
    look = look_at_cameras(torch.tensor(eyes, dtype=torch.float64), torch.tensor(targets, dtype=torch.float64),
                           torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64).expand(n, 3), focal_length=1.0,
                           image_size_hw=(h, w))
    pose = opencv_view_from_cameras(look)[1].double()  # float32 inside: re-orthonormalise in float64
    rotation = torch.linalg.svd(pose[:, :3, :3])
    pose[:, :3, :3] = rotation.U @ rotation.Vh
    world_to_camera = invert_pose(pose)
    cameras = cameras_from_opencv(world_to_camera[:, :3, :3], world_to_camera[:, :3, 3],
                                  torch.tensor(k).expand(n, 3, 3), torch.tensor([[h, w]] * n))
    rendering = scene_rendering.render_mesh(room.mesh, cameras, (h, w), light_location=room.light,
                                            ambient=_LIGHT_AMBIENT)
    depth = rendering.depth.double() * (rendering.mask > 0)
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    if sphere is not None:
        points = _world_points(depth, torch.tensor(k), pose)
        inside = (points - torch.tensor(sphere[:3])).norm(dim=-1) < float(sphere[3])
        mask = inside & (points[..., 1] > 1e-3 * room.extents[1]) & (depth > 0)
    camera_to_world = pose.numpy().copy()
    camera_to_world[:, :3, 3] *= scale
    return RenderedSequence(
        rgb=np.round(rendering.rgb.numpy() * 255.0).astype(np.uint8),
        depth=(depth.numpy() * scale).astype(np.float32),
        intrinsics=k,
        camera_to_world=camera_to_world,
        object_mask=mask.numpy(),
    )


def _world_points(depth: torch.Tensor, intrinsics: torch.Tensor, camera_to_world: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) world points of depth (N, H, W) with K (3, 3) and poses (N, 4, 4), float64."""
    camera = depth_to_points(depth, intrinsics.expand(len(depth), 3, 3))
    return transform_points(camera_to_world, camera)


DTU_ORBIT = {"arc_degrees": 120.0, "scale": 1000.0, "distance": (1.0, 1.5)}  # DTU-like: a near arc, in millimetres
