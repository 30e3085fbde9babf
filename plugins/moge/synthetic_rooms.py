"""Synthetic box rooms ray-cast exactly, for MoGe's built-in data (builtin_data.py).

A room is an axis-aligned box (x across, y up, z along; floor at y = 0) seen from inside. Its
ceiling may have a skylight and one wall a window: rays leaving through them see the sky (depth
+inf). It holds a few boxes (turned about +y) standing on the floor and spheres. Every surface
is painted with a checker of two colours and its own cell size, lit by a point light under the
ceiling plus an ambient term, so appearance follows geometry (shading with orientation, checker
cells shrinking with distance). Depth, normals and surface ids are exact per pixel centre.

Cameras (`look_from`) stand inside the room, away from the walls and the objects, and look in a
random direction or at an object, with +y up; intrinsics are normalised (fx, cx per width).
Everything is drawn from the Generator the caller passes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Tuple

import numpy as np

SKY, FLOOR, CEILING, FIRST_WALL = 0, 1, 2, 3  # surface ids; walls 3..6 (x-, x+, z-, z+), objects from 7
FIRST_OBJECT = 7
AMBIENT = 0.35  # ambient fraction of the albedo


@dataclasses.dataclass
class Room:
    """extents (3,) (the room spans [-x/2, x/2] x [0, y] x [-z/2, z/2]); openings: skylight
    (x0, x1, z0, z1) on the ceiling and window (x0, x1, y0, y1) on the z+ wall, or None; boxes
    (K, 7) rows (cx, cy, cz, hx, hy, hz, yaw); spheres (M, 4) rows (cx, cy, cz, r); colours
    (S, 2, 3) two albedos per surface id and cells (S,) their checker cell sizes; light (3,)."""

    extents: np.ndarray
    skylight: Tuple[float, float, float, float] | None
    window: Tuple[float, float, float, float] | None
    boxes: np.ndarray
    spheres: np.ndarray
    colours: np.ndarray
    cells: np.ndarray
    light: np.ndarray

    def labels(self) -> Dict[str, int]:
        """{name: surface id} of every surface (segmentation labels)."""
        names = {"sky": SKY, "floor": FLOOR, "ceiling": CEILING}
        names.update({f"wall_{k}": FIRST_WALL + k for k in range(4)})
        names.update({f"object_{k}": FIRST_OBJECT + k for k in range(len(self.boxes) + len(self.spheres))})
        return names


@dataclasses.dataclass
class Rendering:
    """rgb (H, W, 3) uint8; depth (H, W) float32 camera z (+inf sky); normal (H, W, 3) float32
    OpenCV camera axes (NaN for sky); surface (H, W) uint8 ids; intrinsics (3, 3) normalised."""

    rgb: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    surface: np.ndarray
    intrinsics: np.ndarray


def random_room(rng: np.random.Generator, skylight: bool, window: bool, n_boxes: Tuple[int, int] = (2, 4),
                n_spheres: Tuple[int, int] = (1, 2)) -> Room:
    """A room of 4-8 m by 2.6-3.4 m with objects and the openings asked for (module doc)."""
    extents = np.array([rng.uniform(4.0, 8.0), rng.uniform(2.6, 3.4), rng.uniform(4.0, 8.0)])
    half_x, height, half_z = extents[0] / 2, extents[1], extents[2] / 2
    sky = None
    if skylight:
        w, d = rng.uniform(0.3, 0.6) * extents[0], rng.uniform(0.3, 0.6) * extents[2]
        x0, z0 = rng.uniform(-half_x + 0.3, half_x - 0.3 - w), rng.uniform(-half_z + 0.3, half_z - 0.3 - d)
        sky = (x0, x0 + w, z0, z0 + d)
    win = None
    if window:
        w = rng.uniform(0.3, 0.5) * extents[0]
        x0 = rng.uniform(-half_x + 0.3, half_x - 0.3 - w)
        win = (x0, x0 + w, rng.uniform(0.7, 1.0), height - rng.uniform(0.4, 0.7))
    boxes = []
    for _ in range(int(rng.integers(n_boxes[0], n_boxes[1] + 1))):
        half = np.array([rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.6)])
        centre = [rng.uniform(-half_x + 0.9, half_x - 0.9), half[1], rng.uniform(-half_z + 0.9, half_z - 0.9)]
        boxes.append([*centre, *half, rng.uniform(0, math.pi)])
    spheres = []
    for _ in range(int(rng.integers(n_spheres[0], n_spheres[1] + 1))):
        radius = rng.uniform(0.25, 0.5)
        spheres.append([rng.uniform(-half_x + 0.9, half_x - 0.9), radius + rng.uniform(0.0, 0.8),
                        rng.uniform(-half_z + 0.9, half_z - 0.9), radius])
    n_surfaces = FIRST_OBJECT + len(boxes) + len(spheres)
    base = rng.uniform(0.25, 0.95, size=(n_surfaces, 1, 3))
    colours = np.concatenate([base, base * rng.uniform(0.45, 0.75, size=(n_surfaces, 1, 1))], axis=1)
    return Room(
        extents=extents, skylight=sky, window=win,
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 7),
        spheres=np.array(spheres, dtype=np.float64).reshape(-1, 4),
        colours=colours, cells=rng.uniform(0.15, 0.6, size=n_surfaces),
        light=np.array([rng.uniform(-0.3, 0.3) * extents[0], height - 0.3, rng.uniform(-0.3, 0.3) * extents[2]]),
    )


def _clearance(room: Room, position: np.ndarray) -> float:
    """Distance (horizontal for boxes' bounding circles) from a point to the nearest wall or object."""
    half = room.extents / 2
    gaps = [half[0] - abs(position[0]), half[2] - abs(position[2])]
    for box in room.boxes:
        gaps.append(math.hypot(position[0] - box[0], position[2] - box[2]) - math.hypot(box[3], box[5]))
    for sphere in room.spheres:
        gaps.append(float(np.linalg.norm(position - sphere[:3])) - sphere[3])
    return min(gaps)


def look_from(room: Room, rng: np.random.Generator, pitch_degrees: Tuple[float, float] = (-25.0, 40.0),
              at_object: bool = False, tries: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """A camera inside the room: (position (3,), camera-to-world rotation (3, 3) whose columns are
    the camera's x (right), y (down) and z (forward) axes in world coordinates, OpenCV-style).
    It keeps the most clearance of `tries` candidates; at_object looks at a random object's centre,
    otherwise yaw is uniform and pitch uniform in pitch_degrees."""
    half = room.extents / 2
    candidates = [np.array([rng.uniform(-half[0] + 0.5, half[0] - 0.5), rng.uniform(0.9, 1.9),
                            rng.uniform(-half[2] + 0.5, half[2] - 0.5)]) for _ in range(tries)]
    position = max(candidates, key=lambda p: _clearance(room, p))
    targets = [*room.boxes[:, :3], *room.spheres[:, :3]]
    if at_object and targets:
        forward = targets[int(rng.integers(len(targets)))] - position
        forward /= np.linalg.norm(forward)
    else:
        yaw, pitch = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(*pitch_degrees))
        forward = np.array([math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw)])
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return position, np.stack([right, down, forward], axis=1)


def random_intrinsics(rng: np.random.Generator, size_hw: Tuple[int, int], fov_degrees: Tuple[float, float],
                      centre_jitter: float) -> np.ndarray:
    """Normalised K with a horizontal FOV drawn from fov_degrees, square pixels and the principal
    point within centre_jitter of the image centre."""
    fx = 0.5 / math.tan(math.radians(rng.uniform(*fov_degrees)) / 2)
    fy = fx * size_hw[1] / size_hw[0]
    cx, cy = 0.5 + rng.uniform(-centre_jitter, centre_jitter), 0.5 + rng.uniform(-centre_jitter, centre_jitter)
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


class _Hits:
    """The nearest hit so far of every ray: t, surface id, world normal and texture coordinates."""

    def __init__(self, n: int) -> None:
        self.t = np.full(n, np.inf)
        self.surface = np.zeros(n, dtype=np.int64)
        self.normal = np.zeros((n, 3))
        self.uv = np.zeros((n, 2))

    def update(self, t: np.ndarray, surface, normal: np.ndarray, uv: np.ndarray) -> None:
        closer = t < self.t
        self.t = np.where(closer, t, self.t)
        self.surface = np.where(closer, surface, self.surface)
        self.normal = np.where(closer[:, None], normal, self.normal)
        self.uv = np.where(closer[:, None], uv, self.uv)


def _hit_room(room: Room, origin: np.ndarray, rays: np.ndarray, hits: _Hits) -> None:
    """The room's inside: the exit face of every ray, or the sky through an opening."""
    low = np.array([-room.extents[0] / 2, 0.0, -room.extents[2] / 2])
    high = np.array([room.extents[0] / 2, room.extents[1], room.extents[2] / 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(rays > 0, high, low)
        t_axes = np.where(rays != 0, (bound - origin) / rays, np.inf)
    axis = np.argmin(t_axes, axis=1)
    t = t_axes[np.arange(len(rays)), axis]
    point = origin + t[:, None] * rays
    positive = rays[np.arange(len(rays)), axis] > 0
    # surface ids: y- floor, y+ ceiling, x- / x+ / z- / z+ walls
    surface = np.select([axis == 1, axis == 0], [np.where(positive, CEILING, FLOOR), FIRST_WALL + positive],
                        FIRST_WALL + 2 + positive)
    normal = np.zeros_like(rays)
    normal[np.arange(len(rays)), axis] = np.where(positive, -1.0, 1.0)
    uv = np.select([axis[:, None] == 1, axis[:, None] == 0], [point[:, [0, 2]], point[:, [2, 1]]], point[:, [0, 1]])
    open_sky = np.zeros(len(rays), dtype=bool)
    if room.skylight is not None:
        x0, x1, z0, z1 = room.skylight
        open_sky |= ((surface == CEILING) & (point[:, 0] > x0) & (point[:, 0] < x1)
                     & (point[:, 2] > z0) & (point[:, 2] < z1))
    if room.window is not None:
        x0, x1, y0, y1 = room.window
        open_sky |= ((surface == FIRST_WALL + 3) & (point[:, 0] > x0) & (point[:, 0] < x1)
                     & (point[:, 1] > y0) & (point[:, 1] < y1))
    hits.update(np.where(open_sky, np.inf, t), np.where(open_sky, SKY, surface), normal, uv)
    hits.surface = np.where(open_sky, SKY, hits.surface)


def _hit_boxes(room: Room, origin: np.ndarray, rays: np.ndarray, hits: _Hits) -> None:
    for k, (cx, cy, cz, hx, hy, hz, yaw) in enumerate(room.boxes):
        cos, sin = math.cos(yaw), math.sin(yaw)
        turn = np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])  # local to world
        local_origin = (origin - [cx, cy, cz]) @ turn
        local_rays = rays @ turn
        half = np.array([hx, hy, hz])
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - local_origin) / local_rays, (half - local_origin) / local_rays
        near = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
        far = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2))
        axis = np.argmax(near, axis=1)
        t_near, t_far = near.max(axis=1), far.min(axis=1)
        hit = (t_near <= t_far) & (t_near > 1e-6)
        t = np.where(hit, t_near, np.inf)
        local_normal = np.zeros_like(rays)
        local_normal[np.arange(len(rays)), axis] = -np.sign(local_rays[np.arange(len(rays)), axis])
        point = local_origin + np.where(hit, t_near, 0.0)[:, None] * local_rays
        uv = np.select([axis[:, None] == 1, axis[:, None] == 0], [point[:, [0, 2]], point[:, [2, 1]]], point[:, [0, 1]])
        hits.update(t, FIRST_OBJECT + k, local_normal @ turn.T, uv)


def _hit_spheres(room: Room, origin: np.ndarray, rays: np.ndarray, hits: _Hits) -> None:
    for k, (cx, cy, cz, radius) in enumerate(room.spheres):
        offset = origin - [cx, cy, cz]
        a = (rays * rays).sum(axis=1)
        b = 2.0 * rays @ offset
        c = offset @ offset - radius ** 2
        disc = b * b - 4 * a * c
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / (2 * a)
        t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
        point = origin + np.where(np.isfinite(t), t, 0.0)[:, None] * rays
        normal = (point - [cx, cy, cz]) / radius
        uv = np.stack(
            [np.arctan2(normal[:, 2], normal[:, 0]), np.arcsin(np.clip(normal[:, 1], -1, 1))], axis=1
        ) * radius * 2
        hits.update(t, FIRST_OBJECT + len(room.boxes) + k, normal, uv)


def render(room: Room, position: np.ndarray, rotation: np.ndarray, intrinsics: np.ndarray,
           size_hw: Tuple[int, int]) -> Rendering:
    """Ray-cast the room from a camera (look_from) with normalised intrinsics at size (H, W)."""
    height, width = size_hw
    v, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    camera_rays = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3) @ np.linalg.inv(intrinsics).T
    rays = camera_rays @ rotation.T  # world directions whose camera z is 1: the hit's t is its depth
    hits = _Hits(len(rays))
    _hit_room(room, position, rays, hits)
    _hit_boxes(room, position, rays, hits)
    _hit_spheres(room, position, rays, hits)
    sky = hits.surface == SKY
    point = position + np.where(sky, 0.0, hits.t)[:, None] * rays
    checker = (np.floor(hits.uv[:, 0] / room.cells[hits.surface])
               + np.floor(hits.uv[:, 1] / room.cells[hits.surface])) % 2
    albedo = room.colours[hits.surface, checker.astype(np.int64)]
    to_light = room.light - point
    distance = np.linalg.norm(to_light, axis=1, keepdims=True)
    lambert = np.clip((hits.normal * to_light).sum(axis=1, keepdims=True) / np.maximum(distance, 1e-9), 0.0, 1.0)
    shade = AMBIENT + (1 - AMBIENT) * lambert * np.clip(3.0 / np.maximum(distance, 1e-9), 0.0, 1.0)
    elevation = np.clip(rays[:, 1] / np.linalg.norm(rays, axis=1), -1, 1)[:, None]
    sky_colour = np.array([0.55, 0.75, 0.95]) * (0.8 + 0.2 * elevation) + np.array([0.15, 0.1, 0.0]) * (1 - elevation)
    colour = np.where(sky[:, None], sky_colour, albedo * shade)
    normal = hits.normal @ rotation  # world to camera axes
    normal = np.where(((normal * camera_rays).sum(axis=1) > 0)[:, None], -normal, normal)
    return Rendering(
        rgb=np.clip(np.round(colour * 255), 0, 255).astype(np.uint8).reshape(height, width, 3),
        depth=np.where(sky, np.inf, hits.t).astype(np.float32).reshape(height, width),
        normal=np.where(sky[:, None], np.nan, normal).astype(np.float32).reshape(height, width, 3),
        surface=hits.surface.astype(np.uint8).reshape(height, width),
        intrinsics=intrinsics,
    )


def sfm_depth(rendering: Rendering, rng: np.random.Generator, keep: float = 0.8) -> np.ndarray:
    """The depth an SfM reconstruction would give: known only near image texture (checker edges,
    object outlines: pixels within 2 px of a colour change), not for the sky, and with a random
    `1 - keep` of the rest missing; unknown is NaN."""
    grey = rendering.rgb.astype(np.float64).mean(axis=-1)
    change = np.zeros_like(grey, dtype=bool)
    change[:, 1:] |= np.abs(np.diff(grey, axis=1)) > 6
    change[1:] |= np.abs(np.diff(grey, axis=0)) > 6
    textured = change.copy()
    for shift in (1, 2):  # grow by 2 px in each direction
        grown = textured.copy()
        grown[shift:] |= textured[:-shift]
        grown[:-shift] |= textured[shift:]
        grown[:, shift:] |= textured[:, :-shift]
        grown[:, :-shift] |= textured[:, shift:]
        textured = grown
    known = textured & np.isfinite(rendering.depth) & (rng.random(grey.shape) < keep)
    return np.where(known, rendering.depth, np.nan).astype(np.float32)


def labels_present(room: Room, surface: np.ndarray) -> Dict[str, int]:
    """The room's labels restricted to the surfaces seen in `surface` (H, W) ids."""
    seen = set(np.unique(surface).tolist())
    return {name: value for name, value in room.labels().items() if value in seen}

