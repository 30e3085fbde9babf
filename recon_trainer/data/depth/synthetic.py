"""Synthetic monocular-depth data: rendered indoor scenes with dense exact depth, and writers that
store them in the on-disk layouts of the original depth datasets (ReDWeb, TUM RGB-D, DIW here;
KITTI, NYU, Sintel and ETH3D in their own modules).

A scene is a closed box room seen from inside (floor, walls and ceiling each painted with a checker
of two random colours and its own cell size) holding a few objects standing on the floor: the
procedural shapes of `scene_meshes.procedural_scene_mesh`, the textured cow and checkered boxes,
each randomly scaled, turned about +Y and placed. Every ray hits a surface, so depth is dense.
Lighting: a point light under the ceiling plus an ambient term (fixed, view independent).

Scale: the room's diagonal is about `depth_range[1]`, and cameras keep at least about
`depth_range[0]` from every wall and object, so view depths fall roughly in `depth_range`
(in the caller's units: metres for KITTI-like or NYU-like data).
Cameras stand at random places inside the room, look at an object or in a random direction, with
+Y up; a new room and layout is drawn every `views_per_scene` views. Everything is seeded.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import os
from typing import TYPE_CHECKING, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.cameras import PerspectiveCameras, join_cameras, look_at_cameras
from recon_trainer.data.formats.poses import matrix_to_quaternion
from recon_trainer.data.providers.rendered_mesh import COW_OBJ
from recon_trainer.data.records import opencv_view_from_cameras

if TYPE_CHECKING:
    import trimesh

_ROOM_SHAPE = np.array([1.0, 0.6, 1.0])  # room extents (x, y, z) before scaling its diagonal to the far depth
_LIGHT_AMBIENT = 0.45  # ambient fraction of the albedo
_CAMERA_TRIES = 64  # candidate positions per camera; the one with the most clearance is kept


@dataclasses.dataclass
class DepthViews:
    """N rendered views.

    rgb: (N, H, W, 3) uint8.
    depth: (N, H, W) float32 view-space depth (pytorch3d Z) in scene units, > 0 at every pixel.
    cameras: the N cameras (pytorch3d conventions, image_size set).
    """

    rgb: np.ndarray
    depth: np.ndarray
    cameras: PerspectiveCameras


@dataclasses.dataclass
class SyntheticRoom:
    """One scene: its mesh (face colours), room extents (x, y, z) (the room spans
    [-x/2, x/2] x [0, y] x [-z/2, z/2]), objects' bounding spheres (K, 4) as (centre, radius)
    and the light position (3,)."""

    mesh: trimesh.Trimesh
    extents: np.ndarray
    objects: np.ndarray
    light: np.ndarray


def render_depth_views(
    n_views: int,
    image_size_hw: Tuple[int, int],
    seed: int = 0,
    depth_range: Tuple[float, float] = (1.0, 10.0),
    fov_degrees: float = 60.0,
    views_per_scene: int = 8,
) -> DepthViews:
    """Render n_views random views of synthetic rooms at image size (H, W) (module doc).

    fov_degrees: the field of view across the shorter image side.
    """
    from recon_trainer.data import scene_rendering  # imported here: trimesh is slow to import

    near, far = (float(d) for d in depth_range)
    if not 0 < near < far:
        raise ValueError(f"render_depth_views: depth_range={depth_range}: expected 0 < near < far")
    if n_views < 1 or views_per_scene < 1:
        raise ValueError(f"render_depth_views: n_views={n_views} and views_per_scene={views_per_scene} must be >= 1")
    rgb, depth, cameras = [], [], []
    for scene_index, start in enumerate(range(0, n_views, views_per_scene)):
        room = synthetic_room(seed, scene_index, depth_range)
        rng = np.random.default_rng([seed, scene_index, 1])
        cams = room_cameras(room, min(views_per_scene, n_views - start), near, fov_degrees, image_size_hw, rng)
        rendering = scene_rendering.render_mesh(room.mesh, cams, image_size_hw, light_location=room.light,
                                                ambient=_LIGHT_AMBIENT)
        if not bool((rendering.mask > 0).all()):
            raise RuntimeError(f"render_depth_views: a ray left the room (seed {seed}, scene {scene_index})")
        rgb.append(np.round(rendering.rgb.numpy() * 255.0).astype(np.uint8))
        depth.append(rendering.depth.numpy().astype(np.float32))
        cameras.append(cams)
    return DepthViews(rgb=np.concatenate(rgb), depth=np.concatenate(depth), cameras=join_cameras(cameras))


def synthetic_room(seed: int, scene_index: int, depth_range: Tuple[float, float]) -> SyntheticRoom:
    """The room and objects of scene `scene_index` for `seed` (deterministic)."""
    rng = np.random.default_rng([seed, scene_index, 0])
    shape = _ROOM_SHAPE * rng.uniform(0.8, 1.2, size=3)
    extents = shape / np.linalg.norm(shape) * float(depth_range[1])
    parts = [_room_surfaces(extents, rng)]
    spheres = []
    for _ in range(int(rng.integers(3, 6))):
        template = [_shapes_template, _cow_template, _box_template][int(rng.integers(0, 3))]
        vertices, faces, colours = template(rng)
        radius = rng.uniform(0.1, 0.2) * min(extents[0], extents[2])
        angle = rng.uniform(0.0, 2.0 * np.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        vertices = vertices @ np.array([[cos, 0.0, -sin], [0.0, 1.0, 0.0], [sin, 0.0, cos]]) * radius
        xz = rng.uniform(-0.5, 0.5, size=2) * (extents[[0, 2]] - 2.0 * radius)
        offset = np.array([xz[0], -vertices[:, 1].min(), xz[1]])
        parts.append((vertices + offset, faces, colours))
        spheres.append([*offset, radius])
    mesh = _join(parts)
    light = np.array([0.1 * extents[0], 0.9 * extents[1], -0.1 * extents[2]])
    return SyntheticRoom(mesh=mesh, extents=extents, objects=np.asarray(spheres), light=light)


def room_cameras(
    room: SyntheticRoom,
    n: int,
    near: float,
    fov_degrees: float,
    image_size_hw: Tuple[int, int],
    rng: np.random.Generator,
) -> PerspectiveCameras:
    """n cameras inside `room`, each at a random place at least about `near` from walls and object
    spheres (the clearest of a few candidates when none is), looking at an object (probability 0.6)
    or at the farthest of a few random points in the room."""
    half = room.extents / 2.0
    margin = np.minimum(near, 0.4 * room.extents)
    low = np.array([-half[0], 0.0, -half[2]]) + margin
    high = np.array([half[0], room.extents[1], half[2]]) - margin
    eyes, targets = [], []
    for _ in range(n):
        candidates = rng.uniform(low, high, size=(_CAMERA_TRIES, 3))
        distances = np.linalg.norm(candidates[:, None] - room.objects[None, :, :3], axis=-1) - room.objects[None, :, 3]
        clearance = distances.min(axis=1)
        clear = np.nonzero(clearance >= margin.min())[0]
        eye = candidates[int(clear[0]) if len(clear) else int(np.argmax(clearance))]
        if rng.uniform() < 0.6:
            target = room.objects[int(rng.integers(0, len(room.objects))), :3] + rng.normal(0.0, 0.05, 3) * half
        else:
            points = rng.uniform(low, high, size=(_CAMERA_TRIES, 3))
            target = points[int(np.argmax(np.linalg.norm(points[:, [0, 2]] - eye[[0, 2]], axis=1)))]
        eyes.append(eye)
        targets.append(target)
    eye_t = torch.tensor(np.asarray(eyes), dtype=torch.float32)
    return look_at_cameras(
        eye_t,
        torch.tensor(np.asarray(targets), dtype=torch.float32),
        torch.tensor([[0.0, 1.0, 0.0]]).expand(n, 3),
        focal_length=1.0 / math.tan(math.radians(fov_degrees) / 2.0),
        image_size_hw=tuple(image_size_hw),
    )


Part = Tuple[np.ndarray, np.ndarray, np.ndarray]  # vertices (V, 3), faces (F, 3), face colours (F, 3) in [0, 1]


def _join(parts: Sequence[Part]) -> trimesh.Trimesh:
    """One face-coloured mesh from parts."""
    import trimesh  # imported here: slow to import, only rendering needs it

    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts[:-1]])
    colours = np.concatenate([c for _, _, c in parts])
    rgba = np.concatenate([np.round(colours * 255.0), np.full((len(colours), 1), 255.0)], axis=1).astype(np.uint8)
    return trimesh.Trimesh(
        np.concatenate([v for v, _, _ in parts]),
        np.concatenate([f + o for (_, f, _), o in zip(parts, offsets)]),
        face_colors=rgba,
        process=False,
    )


def _room_surfaces(extents: np.ndarray, rng: np.random.Generator) -> Part:
    """The six inner surfaces of the room, each a grid of checker quads of two random colours.

    Each surface overhangs the room by one cell, so the edges and corners are closed for rays.
    """
    lo = np.array([-extents[0] / 2.0, 0.0, -extents[2] / 2.0])
    hi = lo + extents
    parts = []
    for axis in range(3):
        u_axis, v_axis = [a for a in range(3) if a != axis]
        for side in (lo[axis], hi[axis]):
            cell = extents[1] * rng.uniform(0.08, 0.3)
            colours = rng.uniform(0.1, 0.95, size=(2, 3))
            nu = int(np.ceil(extents[u_axis] / cell)) + 2
            nv = int(np.ceil(extents[v_axis] / cell)) + 2
            u = lo[u_axis] - cell + cell * np.arange(nu + 1)
            v = lo[v_axis] - cell + cell * np.arange(nv + 1)
            grid = np.zeros((nu + 1, nv + 1, 3))
            grid[..., axis] = side
            grid[..., u_axis] = u[:, None]
            grid[..., v_axis] = v[None, :]
            index = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
            a, b, c, d = index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]
            faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
            checker = ((np.arange(nu)[:, None] + np.arange(nv)[None, :]) % 2).reshape(-1)
            parts.append((grid.reshape(-1, 3), faces, colours[np.concatenate([checker, checker])]))
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] + o for p, o in zip(parts, np.cumsum([0] + [len(p[0]) for p in parts[:-1]]))]),
        np.concatenate([p[2] for p in parts]),
    )


@functools.lru_cache(maxsize=None)
def _unit_shapes() -> Part:
    from recon_trainer.data.providers.scene_meshes import normalize_to_unit_sphere, procedural_scene_mesh

    mesh = normalize_to_unit_sphere(procedural_scene_mesh())
    return mesh.vertices.copy(), mesh.faces.copy(), mesh.visual.face_colors[:, :3] / 255.0


@functools.lru_cache(maxsize=None)
def _unit_cow() -> Part:
    """The cow with its texture sampled at each face's centre (face colours)."""
    import trimesh  # imported here: slow to import, only rendering needs it

    from recon_trainer.data.providers.scene_meshes import load_mesh_file, normalize_to_unit_sphere
    from recon_trainer.data.scene_rendering import sample_texture_bilinear

    mesh = load_mesh_file(COW_OBJ)
    uv = np.asarray(mesh.visual.uv, dtype=np.float64)[mesh.faces].mean(axis=1)
    texture = np.asarray(mesh.visual.material.image.convert("RGB"), dtype=np.float64) / 255.0
    colours = sample_texture_bilinear(texture, uv)
    mesh = normalize_to_unit_sphere(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False))
    return mesh.vertices.copy(), mesh.faces.copy(), colours


@functools.lru_cache(maxsize=None)
def _unit_box() -> Tuple[np.ndarray, np.ndarray]:
    import trimesh  # imported here: slow to import, only rendering needs it

    box = trimesh.creation.box(extents=(1.0, 1.6, 1.0))
    vertices, faces = trimesh.remesh.subdivide_to_size(box.vertices, box.faces, max_edge=0.2)
    return vertices / np.linalg.norm(vertices, axis=1).max(), faces


def _shapes_template(rng: np.random.Generator) -> Part:
    return _unit_shapes()


def _cow_template(rng: np.random.Generator) -> Part:
    return _unit_cow()


def _box_template(rng: np.random.Generator) -> Part:
    """A tall box with a 3D checker of two random colours."""
    vertices, faces = _unit_box()
    colours = rng.uniform(0.1, 0.95, size=(2, 3))
    checker = np.floor(vertices[faces].mean(axis=1) / 0.25).astype(np.int64).sum(axis=1) % 2
    return vertices, faces, colours[checker]


# ---------------------------------------------------------------------------------------------
# Writers: the views in the original datasets' layouts (read back by redweb.py, tum.py, diw.py).

TUM_SEQUENCE = "rgbd_dataset_freiburg2_desk_with_person"  # the sequence MiDaS evaluates on
TUM_DEPTH_SCALE = 5000.0  # TUM depth PNG units per metre
_TUM_START = 1311870426.0  # first timestamp (seconds), as in the freiburg2 sequences


def write_redweb(out_dir: str, views: DepthViews) -> str:
    """ReDWeb_V1 layout: Imgs/<i>.jpg (JPEG quality 95, 4:4:4) and RDs/<i>.png, 8-bit relative depth:
    1 / depth normalised per image to 1..255 (larger = closer). Returns out_dir."""
    for folder in ("Imgs", "RDs"):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    for i, (rgb, depth) in enumerate(zip(views.rgb, views.depth)):
        Image.fromarray(rgb).save(os.path.join(out_dir, "Imgs", f"{i:05d}.jpg"), quality=95, subsampling=0)
        Image.fromarray(redweb_rd(depth)).save(os.path.join(out_dir, "RDs", f"{i:05d}.png"))
    return out_dir


def redweb_rd(depth: np.ndarray) -> np.ndarray:
    """(H, W) uint8 ReDWeb-like RD map of a dense depth (H, W): 1 / depth scaled to 1..255."""
    disparity = 1.0 / depth.astype(np.float64)
    span = max(disparity.max() - disparity.min(), 1e-12)
    return np.round(1.0 + 254.0 * (disparity - disparity.min()) / span).astype(np.uint8)


def write_tum(out_dir: str, views: DepthViews, fps: float = 30.0, seed: int = 0) -> str:
    """TUM RGB-D sequence layout: rgb/<t>.png, depth/<t>.png (uint16, metres * 5000; 0 where the
    depth is beyond 65535 / 5000 m), rgb.txt and depth.txt ("timestamp path" lines under '#'
    headers). Frame i is at start + i / fps; its depth timestamp is jittered by up to +-0.3 / fps
    (so association is needed) and depth.txt has one extra frame 1 s after the last, matching no
    image. With views.cameras, groundtruth.txt holds each view's camera-to-world pose (OpenCV axes)
    at its image's time jittered by up to +-0.1 / fps, plus a pose 0.5 / fps before each image's
    (the mocap runs faster than the camera). The views' intrinsics are not stored (TUM's are fixed
    per sensor: depth/tum.py). Returns out_dir."""
    rng = np.random.default_rng(seed)
    for folder in ("rgb", "depth"):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    n = len(views.rgb)
    rgb_times = _TUM_START + np.arange(n) / fps
    depth_times = rgb_times + rng.uniform(-0.3, 0.3, size=n) / fps
    if views.cameras is not None:
        _write_tum_groundtruth(os.path.join(out_dir, "groundtruth.txt"), views.cameras, rgb_times, fps, rng)
    rgb_lines, depth_lines = [], []
    for i in range(n):
        rgb_name, depth_name = f"rgb/{rgb_times[i]:.6f}.png", f"depth/{depth_times[i]:.6f}.png"
        Image.fromarray(views.rgb[i]).save(os.path.join(out_dir, rgb_name))
        Image.fromarray(tum_depth_png(views.depth[i])).save(os.path.join(out_dir, depth_name))
        rgb_lines.append(f"{rgb_times[i]:.6f} {rgb_name}")
        depth_lines.append(f"{depth_times[i]:.6f} {depth_name}")
    extra_time = rgb_times[-1] + 1.0
    extra_name = f"depth/{extra_time:.6f}.png"
    Image.fromarray(tum_depth_png(views.depth[-1])).save(os.path.join(out_dir, extra_name))
    depth_lines.append(f"{extra_time:.6f} {extra_name}")
    for kind, lines in (("rgb", rgb_lines), ("depth", depth_lines)):
        title = "color" if kind == "rgb" else "depth"
        header = [f"# {title} images", f"# file: '{TUM_SEQUENCE}.bag'", "# timestamp filename"]
        with open(os.path.join(out_dir, f"{kind}.txt"), "w") as f:
            f.write("\n".join(header + lines) + "\n")
    return out_dir


def _write_tum_groundtruth(path: str, cameras: PerspectiveCameras, times: np.ndarray, fps: float,
                           rng: np.random.Generator) -> None:
    """groundtruth.txt of the cameras' poses at the images' times (write_tum): each pose at its
    time jittered by up to +-0.1 / fps, after a decoy 0.5 / fps earlier (the previous view's pose)."""
    poses = opencv_view_from_cameras(cameras)[1].double().numpy()
    jitter = rng.uniform(-0.1, 0.1, size=len(times)) / fps
    lines = []
    for k, (time, offset, pose) in enumerate(zip(times, jitter, poses)):
        for stamp, matrix in ((time - 0.5 / fps, poses[max(k - 1, 0)]), (time + offset, pose)):
            qw, qx, qy, qz = matrix_to_quaternion(matrix[:3, :3])
            values = [stamp, *matrix[:3, 3], qx, qy, qz, qw]
            lines.append(f"{values[0]:.6f} " + " ".join(f"{v:.9f}" for v in values[1:]))
    header = ["# ground truth trajectory", f"# file: '{TUM_SEQUENCE}.bag'", "# timestamp tx ty tz qx qy qz qw"]
    with open(path, "w") as f:
        f.write("\n".join(header + lines) + "\n")


def tum_depth_png(depth: np.ndarray) -> np.ndarray:
    """(H, W) uint16 TUM depth of depth (H, W) in metres: round(depth * 5000), 0 beyond the range."""
    scaled = np.round(depth.astype(np.float64) * TUM_DEPTH_SCALE)
    return np.where(scaled <= 65535, scaled, 0).astype(np.uint16)


def write_diw(out_dir: str, views: DepthViews, pairs_per_image: int = 1, seed: int = 0, split: str = "test") -> str:
    """DIW layout: DIW_<split>/<i>.thumb (JPEG content) and DIW_Annotations/DIW_<split>.csv (split
    "test", or "train_val"), one record per pair: the image path ("./DIW_test/00000.thumb") on
    one line, then "y_A,x_A,y_B,x_B,relation,W,H" (1-based pixels; '<': A is closer than B, '>':
    A is farther). Pairs are random pixels whose depths differ by a factor of at least 1.25.
    Returns out_dir."""
    rng = np.random.default_rng(seed)
    folder = f"DIW_{split}"
    os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "DIW_Annotations"), exist_ok=True)
    lines = []
    for i, (rgb, depth) in enumerate(zip(views.rgb, views.depth)):
        name = f"./{folder}/{i:05d}.thumb"
        Image.fromarray(rgb).save(os.path.join(out_dir, name), format="JPEG", quality=95, subsampling=0)
        h, w = depth.shape
        for y_a, x_a, y_b, x_b in _distinct_depth_pairs(depth, pairs_per_image, rng):
            relation = "<" if depth[y_a, x_a] < depth[y_b, x_b] else ">"
            lines += [name, f"{y_a + 1},{x_a + 1},{y_b + 1},{x_b + 1},{relation},{w},{h}"]
    with open(os.path.join(out_dir, "DIW_Annotations", f"DIW_{split}.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return out_dir


def _distinct_depth_pairs(depth: np.ndarray, n: int, rng: np.random.Generator) -> List[Tuple[int, int, int, int]]:
    """n pixel pairs (y_a, x_a, y_b, x_b), 0-based, with depth ratio >= 1.25 (the most distinct of
    random candidates when none reaches it)."""
    h, w = depth.shape
    pairs = []
    for _ in range(n):
        ys, xs = rng.integers(0, h, size=(64, 2)), rng.integers(0, w, size=(64, 2))
        a, b = depth[ys[:, 0], xs[:, 0]], depth[ys[:, 1], xs[:, 1]]
        ratio = np.maximum(a / b, b / a)
        good = np.nonzero(ratio >= 1.25)[0]
        k = int(good[0]) if len(good) else int(np.argmax(ratio))
        pairs.append((int(ys[k, 0]), int(xs[k, 0]), int(ys[k, 1]), int(xs[k, 1])))
    return pairs


# ---------------------------------------------------------------------------------------------
# All datasets at once (tools/make_depth_datasets.py).

# name -> (folder under the output root, depth_range of the views, module of write_<name> or "" for this one)
DATASET_LAYOUTS: Dict[str, Tuple[str, Tuple[float, float], str]] = {
    "redweb": ("ReDWeb_V1", (1.0, 10.0), ""),
    "tum": (os.path.join("tum", TUM_SEQUENCE), (0.5, 8.0), ""),
    "diw": ("DIW", (1.0, 20.0), ""),
    "kitti": ("kitti", (2.0, 80.0), "kitti"),
    "nyu": ("nyu", (0.5, 10.0), "nyu"),
    "sintel": ("sintel", (1.0, 60.0), "sintel"),
    "eth3d": ("eth3d", (1.0, 60.0), "eth3d"),
}


def _writer(name: str) -> Callable[[str, DepthViews], str]:
    """The write_<name> function; KITTI, NYU, Sintel and ETH3D are imported from their modules."""
    module = DATASET_LAYOUTS[name][2]
    if not module:
        return globals()[f"write_{name}"]
    return getattr(importlib.import_module(f"recon_trainer.data.depth.{module}"), f"write_{name}")


def write_depth_datasets(
    out: str, datasets: Sequence[str], n_images: int = 8, image_size_hw: Tuple[int, int] = (64, 64), seed: int = 0
) -> Dict[str, str]:
    """Render n_images views per dataset (each dataset its own seed and depth range) and write them
    under out/<layout folder> (DATASET_LAYOUTS). Returns {name: folder written}."""
    unknown = [d for d in datasets if d not in DATASET_LAYOUTS]
    if unknown:
        raise ValueError(f"write_depth_datasets: unknown datasets {unknown}, expected some of {list(DATASET_LAYOUTS)}")
    written = {}
    for offset, name in enumerate(DATASET_LAYOUTS):
        if name not in datasets:
            continue
        folder, depth_range, _ = DATASET_LAYOUTS[name]
        views = render_depth_views(n_images, image_size_hw, seed=seed * 100 + offset, depth_range=depth_range)
        path = os.path.join(out, folder)
        _writer(name)(path, views)
        written[name] = path
    return written
