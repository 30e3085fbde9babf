"""BlendedMVS as released (low-res set), the layout Spann3R's BlendMVS reads, and the MVSNet files
it shares with DTU (formats/dtu.py): PFM maps, camera text files and pair.txt view clusters.

    ROOT/<split>_list.txt                               one scene id a line
    ROOT/<scene>/blended_images/<8 digits>.jpg          (the <8 digits>_masked.jpg beside them are not read)
    ROOT/<scene>/rendered_depth_maps/<8 digits>.pfm     float32 depth, scene units, 0 or NaN unknown
    ROOT/<scene>/cams/<8 digits>_cam.txt                MVSNet camera (below)
    ROOT/<scene>/cams/pair.txt                          MVSNet view clusters (below)

MVSNet camera file: the word `extrinsic`, 16 numbers (4x4 world-to-camera, row major), the word
`intrinsic`, 9 numbers (3x3 K, integer pixel centres), then optionally depth_min, depth_interval
(and depth_num, depth_max). pair.txt: the number of views N, then per view two lines: the
reference view id, and "M id_1 score_1 ... id_M score_M" (its M neighbours, best first).

PFM: a header "Pf" (one channel) or "PF" (three), "W H", a scale whose sign gives the byte order
(negative: little endian), then float32 rows from the bottom of the image to the top.
"""
from __future__ import annotations

import os
import re
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.depth.image_files import read_rgb
from recon_trainer.data.formats.scene_files import list_folder, read_list_file
from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

VIEW_NAME = re.compile(r"^(\d{8})\.jpg$")


# ------------------------------------------------------------------------------------ PFM


def read_pfm(path: str) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 of a PFM file, first row at the top of the image."""
    try:
        with open(path, "rb") as file:
            kind = file.readline().strip()
            size = file.readline().split()
            scale = float(file.readline())
            data = file.read()
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read a PFM header: {error}") from None
    if kind not in (b"Pf", b"PF") or len(size) != 2 or not all(s.isdigit() for s in size):
        raise DataFileError(f"{path}: not a PFM file (expected 'Pf' or 'PF' then 'W H', got {kind!r} {size!r})")
    width, height = int(size[0]), int(size[1])
    channels = 3 if kind == b"PF" else 1
    count = width * height * channels
    if len(data) < 4 * count:
        raise DataFileError(f"{path}: PFM of {width}x{height}x{channels} needs {4 * count} bytes, has {len(data)}")
    values = np.frombuffer(data[: 4 * count], dtype="<f4" if scale < 0 else ">f4").astype(np.float32)
    image = values.reshape(height, width, channels)[::-1]
    return np.ascontiguousarray(image[..., 0] if channels == 1 else image)


def write_pfm(path: str, array: np.ndarray) -> None:
    """Write (H, W) or (H, W, 3) values as a little-endian PFM (scale -1)."""
    values = np.asarray(array, dtype="<f4")
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] != 3):
        raise ValueError(f"write_pfm: expected (H, W) or (H, W, 3), got {values.shape}")
    header = f"{'PF' if values.ndim == 3 else 'Pf'}\n{values.shape[1]} {values.shape[0]}\n-1\n".encode()
    with open(path, "wb") as file:
        file.write(header + np.ascontiguousarray(values[::-1]).tobytes())


# ------------------------------------------------------------------------------------ MVSNet cameras


class MvsnetCamera(NamedTuple):
    """An MVSNet camera: K (3, 3) float64 with integer pixel centres, world_to_camera (4, 4) float64
    and the depth-range numbers that follow (0 to 4 of them)."""

    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    depth_range: Tuple[float, ...]


def read_mvsnet_cam(path: str) -> MvsnetCamera:
    """The camera of an MVSNet `_cam.txt` (module doc)."""
    try:
        with open(path, encoding="utf-8") as file:
            words = file.read().split()
        if len(words) < 27 or words[0] != "extrinsic" or words[17] != "intrinsic":
            raise ValueError(f"expected 'extrinsic' + 16 numbers, 'intrinsic' + 9 numbers, got {len(words)} words")
        extrinsic = np.array(words[1:17], dtype=np.float64).reshape(4, 4)
        intrinsic = np.array(words[18:27], dtype=np.float64).reshape(3, 3)
        depth_range = tuple(float(w) for w in words[27:31])
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read an MVSNet camera: {error}") from None
    return MvsnetCamera(intrinsic, extrinsic, depth_range)


def write_mvsnet_cam(path: str, intrinsics_opencv: np.ndarray, world_to_camera: np.ndarray,
                     depth_range: Sequence[float] = (0.1, 0.01)) -> None:
    """Write an MVSNet camera file: K (3, 3) with integer pixel centres, world_to_camera (4, 4),
    depth_range (depth_min, depth_interval[, depth_num[, depth_max]])."""
    rows = ["extrinsic", *(" ".join(f"{v:.10g}" for v in row) for row in np.asarray(world_to_camera)), "",
            "intrinsic", *(" ".join(f"{v:.10g}" for v in row) for row in np.asarray(intrinsics_opencv)), "",
            " ".join(f"{v:.10g}" for v in depth_range)]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(rows) + "\n")


# ------------------------------------------------------------------------------------ pair.txt

Cluster = Tuple[int, List[Tuple[int, float]]]  # (reference view id, [(neighbour id, score), ...] best first)


def read_pair_file(path: str) -> List[Cluster]:
    """The view clusters of an MVSNet pair.txt, in file order (module doc)."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.split() for line in file.read().splitlines()]
        count = int(lines[0][0])
        clusters = []
        for k in range(count):
            reference, info = int(lines[2 * k + 1][0]), lines[2 * k + 2]
            neighbours = int(info[0])
            if len(info) < 1 + 2 * neighbours:
                raise ValueError(f"cluster {k} announces {neighbours} neighbours and lists {(len(info) - 1) // 2}")
            clusters.append((reference, [(int(info[1 + 2 * j]), float(info[2 + 2 * j])) for j in range(neighbours)]))
    except (OSError, ValueError, IndexError) as error:
        raise DataFileError(f"{path}: cannot read an MVSNet pair file: {error}") from None
    return clusters


def write_pair_file(path: str, clusters: Sequence[Cluster]) -> None:
    """Write an MVSNet pair.txt (module doc)."""
    lines = [str(len(clusters))]
    for reference, neighbours in clusters:
        lines += [str(reference), " ".join([str(len(neighbours))] + [f"{i} {s:.6g}" for i, s in neighbours])]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def nearest_clusters(view_ids: Sequence[int], camera_to_world: np.ndarray, neighbours: int = 10) -> List[Cluster]:
    """Clusters for tiny copies: each view's `neighbours` nearest views by camera distance, scored
    1 / (1 + distance) (real pair files score by shared points)."""
    centres = np.asarray(camera_to_world)[:, :3, 3]
    clusters = []
    for k, view in enumerate(view_ids):
        distance = np.linalg.norm(centres - centres[k], axis=1)
        order = [j for j in np.argsort(distance, kind="stable") if j != k][:neighbours]
        clusters.append((int(view), [(int(view_ids[j]), float(1.0 / (1.0 + distance[j]))) for j in order]))
    return clusters


# ------------------------------------------------------------------------------------ BlendedMVS scenes


def read_scene_list(root: str, split: str) -> List[str]:
    """The scene ids of ROOT/<split>_list.txt."""
    return read_list_file(os.path.join(root, f"{split}_list.txt"), "BlendedMVS split list")


def view_paths(root: str, scene: str, view: int) -> dict:
    """The image, depth and camera files of one view."""
    folder = os.path.join(root, scene)
    return {"image": os.path.join(folder, "blended_images", f"{view:08d}.jpg"),
            "depth": os.path.join(folder, "rendered_depth_maps", f"{view:08d}.pfm"),
            "cam": os.path.join(folder, "cams", f"{view:08d}_cam.txt")}


def pair_path(root: str, scene: str) -> str:
    """ROOT/<scene>/cams/pair.txt."""
    return os.path.join(root, scene, "cams", "pair.txt")


def list_views(root: str, scene: str) -> List[int]:
    """The view ids of a scene's blended_images/<8 digits>.jpg, sorted."""
    names = list_folder(os.path.join(root, scene, "blended_images"), "scene's images")
    return sorted(int(match.group(1)) for match in map(VIEW_NAME.match, names) if match)


def read_view(root: str, scene: str, view: int, dataset: str = "") -> ViewRecord:
    """One view: image, depth (NaN -> 0), K (records' convention) and the camera-to-world pose
    (the inverse of the file's world-to-camera)."""
    paths = view_paths(root, scene, view)
    rgb = read_rgb(paths["image"])
    depth = np.nan_to_num(read_pfm(paths["depth"]), nan=0.0)
    if depth.ndim != 2 or depth.shape != rgb.shape[:2]:
        raise DataFileError(f"{paths['depth']}: depth of shape {depth.shape}, expected one channel of the "
                            f"image's size {rgb.shape[:2]}")
    camera = read_mvsnet_cam(paths["cam"])
    return ViewRecord(
        image=image_tensor(rgb),
        depth=torch.from_numpy(depth),
        depth_kind="metric",
        intrinsics=intrinsics_centre_to_corner(torch.tensor(camera.intrinsics, dtype=torch.float32)),
        camera_to_world=torch.tensor(np.linalg.inv(camera.world_to_camera), dtype=torch.float32),
        sequence=scene,
        frame=int(view),
        dataset=dataset,
        label_type="synthetic",
        path=paths["image"],
    )


def write_view(root: str, scene: str, view: int, rgb: np.ndarray, depth: np.ndarray, intrinsics_opencv: np.ndarray,
               camera_to_world: np.ndarray) -> None:
    """Write one view (tiny copies): rgb (H, W, 3) uint8 as JPEG, depth (H, W) as PFM, the MVSNet camera."""
    paths = view_paths(root, scene, view)
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(paths["image"], quality=95, subsampling=0)
    write_pfm(paths["depth"], depth)
    valid = np.asarray(depth)[np.asarray(depth) > 0]
    depth_min = float(valid.min()) if valid.size else 0.1
    write_mvsnet_cam(paths["cam"], intrinsics_opencv, np.linalg.inv(camera_to_world),
                     (depth_min, (float(valid.max()) - depth_min) / 127.0 if valid.size else 0.01))


def write_scene(root: str, split: str, scene: str, rgb: np.ndarray, depth: np.ndarray, intrinsics_opencv: np.ndarray,
                camera_to_world: np.ndarray, neighbours: int = 10) -> None:
    """Write a scene of N views (rgb (N, H, W, 3) uint8, depth (N, H, W), K (3, 3) with integer
    pixel centres, camera_to_world (N, 4, 4)) as views 0..N-1, its pair.txt (nearest_clusters) and
    add it to ROOT/<split>_list.txt."""
    ids = list(range(len(rgb)))
    for view in ids:
        write_view(root, scene, view, rgb[view], depth[view], intrinsics_opencv, camera_to_world[view])
    write_pair_file(pair_path(root, scene), nearest_clusters(ids, camera_to_world, neighbours))
    with open(os.path.join(root, f"{split}_list.txt"), "a", encoding="utf-8") as file:
        file.write(scene + "\n")


def write_synthetic_copy(out_dir: str, n_scenes: int = 2, n_frames: int = 12,
                         image_size_hw: Tuple[int, int] = (48, 64), seed: int = 0) -> str:
    """A tiny copy under out_dir: per split (train, val) n_scenes room walks of n_frames
    (multiview/synthetic_views.py) with pair.txt of the nearest cameras. Returns out_dir."""
    from recon_trainer.data.multiview.synthetic_views import render_room_walk  # imported here: slow to import

    for offset, split in enumerate(("train", "val")):
        for k in range(n_scenes):
            views = render_room_walk(n_frames, image_size_hw, seed, offset * n_scenes + k)
            scene = f"{0x5a0000 + offset * n_scenes + k:024x}"  # BlendedMVS scene ids are 24 hex digits
            write_scene(out_dir, split, scene, views.rgb, views.depth, views.intrinsics_opencv(),
                        views.camera_to_world)
    return out_dir
