"""Write tiny CO3D-layout datasets (v1 or v2 files) rendered from meshes with known geometry.

Each category holds `n_sequences` sequences of one mesh ("builtin" procedural scene or a mesh
file), each under its own rotation about +Y and colour tint, filmed by `n_frames` cameras on a
ring around the object (azimuth 360 k / n_frames plus a per-sequence offset, a per-sequence
elevation, distance `distance`, a small per-sequence principal-point offset). Images are exact
ray-cast renders (scene_rendering.render_mesh) stored as JPEGs; masks and depth masks as PNGs;
depth as float16 PNGs with `DEPTH_SCALE` as scale_adjustment; a pointcloud.ply of surface points.

Splits. Sequences: the first half are "train" (seen) sequences, the rest "test" (unseen).
Frames: frame k is unseen (held out) when k % 4 == 1, else known.
- v1 (`version="v1"`, intrinsics "ndc_norm_image_bounds"): set_lists.json with
  train_known / train_unseen / test_known / test_unseen, and eval_batches_singlesequence.json
  (targets: unseen frames of the test sequences) and eval_batches_multisequence.json (targets:
  unseen frames of every sequence); each batch is the target followed by n_src known frames of its
  sequence, n_src cycling through 1, 3, 5, 7, 9 (capped by the known frames available).
- v2 (`version="v2"`, intrinsics "ndc_isotropic"): set_lists/set_lists_<subset>.json and
  eval_batches/eval_batches_<subset>.json for "manyview_dev_0" (the first test sequence: train =
  its known frames, val = test = its unseen frames, batches = single targets) and "fewview_dev"
  (train = all frames of the train sequences, val = test = all frames of the test sequences,
  batches as in v1 multisequence but over the test sequences only).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras
from recon_trainer.data.providers.co3d import blobs
from recon_trainer.data.providers.co3d.annotations import (
    DepthAnnotation,
    FrameAnnotation,
    ImageAnnotation,
    MaskAnnotation,
    PointCloudAnnotation,
    SequenceAnnotation,
    to_json,
    write_jgz,
)
from recon_trainer.data.providers.co3d.viewpoints import viewpoint_from_camera

VERSIONS = {"v1": "ndc_norm_image_bounds", "v2": "ndc_isotropic"}
DEPTH_SCALE = 0.25  # scale_adjustment of the written depth PNGs (stored value = depth / DEPTH_SCALE)
FPS = 30.0  # frame_timestamp = frame_number / FPS
EVAL_N_SRC = (1, 3, 5, 7, 9)
N_POINT_CLOUD = 2000  # surface points in each sequence's pointcloud.ply


@dataclasses.dataclass
class SequenceSpec:
    """One rendered sequence: its name, category, mesh, pose of the object and camera ring."""

    name: str
    category: str
    scene: str  # "builtin" or a mesh file path
    seen: bool  # a train (seen) sequence, else a test (unseen) one
    rotation_deg: float  # object rotation about +Y, degrees
    tint: Tuple[float, float, float]  # RGB multiplier of the rendered colours
    elevation_deg: float  # camera ring elevation, degrees
    azimuth_offset_deg: float  # azimuth of frame 0, degrees
    principal_point: Tuple[float, float]  # NDC principal point of every frame


def default_sequences(scenes: Dict[str, str], n_sequences: int) -> List[SequenceSpec]:
    """n_sequences per category of {category: scene}; the first half of each is seen."""
    specs = []
    for c, (category, scene) in enumerate(sorted(scenes.items())):
        for s in range(n_sequences):
            rng = np.random.default_rng(1000 * c + s)
            specs.append(
                SequenceSpec(
                    name=f"{category}_{s:03d}",
                    category=category,
                    scene=scene,
                    seen=s < max(1, n_sequences // 2),
                    rotation_deg=float(rng.uniform(0.0, 360.0)),
                    tint=tuple(float(t) for t in rng.uniform(0.6, 1.0, size=3)),
                    elevation_deg=float(rng.uniform(-10.0, 40.0)),
                    azimuth_offset_deg=float(rng.uniform(0.0, 360.0)),
                    principal_point=tuple(float(p) for p in rng.uniform(-0.08, 0.08, size=2)),
                )
            )
    return specs


def is_unseen_frame(k: int) -> bool:
    """Frame k of a sequence is held out (unseen) when k % 4 == 1."""
    return k % 4 == 1


def sequence_cameras(spec: SequenceSpec, n_frames: int, image_size_hw: Tuple[int, int], distance: float,
                     fov_degrees: float) -> PerspectiveCameras:
    """The n_frames cameras of a sequence (fov along the shorter image side)."""
    azimuth = np.radians(spec.azimuth_offset_deg + 360.0 * np.arange(n_frames) / n_frames)
    elevation = math.radians(spec.elevation_deg)
    eye = distance * np.stack(
        [math.cos(elevation) * np.sin(azimuth), np.full(n_frames, math.sin(elevation)),
         math.cos(elevation) * np.cos(azimuth)], axis=1
    )
    cameras = look_at_cameras(
        torch.tensor(eye, dtype=torch.float32),
        torch.zeros(n_frames, 3),
        torch.tensor([[0.0, 1.0, 0.0]]).expand(n_frames, 3),
        focal_length=1.0 / math.tan(math.radians(fov_degrees) / 2.0),
        image_size_hw=image_size_hw,
    )
    cameras.principal_point = torch.tensor([spec.principal_point] * n_frames, dtype=torch.float32)
    return cameras


def sequence_mesh(spec: SequenceSpec):
    """The normalised mesh of spec.scene rotated by spec.rotation_deg about +Y (a trimesh.Trimesh)."""
    import trimesh  # imported here: slow to import, only rendering needs it

    from recon_trainer.data.providers.scene_meshes import load_scene_mesh

    mesh = load_scene_mesh(spec.scene)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(math.radians(spec.rotation_deg), (0, 1, 0)))
    return mesh


def write_co3d_dataset(
    out_root: str,
    version: str,
    sequences: Sequence[SequenceSpec],
    n_frames: int = 8,
    image_size_hw: Tuple[int, int] = (32, 40),
    distance: float = 4.0,
    fov_degrees: float = 40.0,
) -> Dict[str, List[str]]:
    """Render and write the dataset (module doc) under out_root; returns {category: sequence names}."""
    from recon_trainer.data import scene_rendering

    if version not in VERSIONS:
        raise ValueError(f"write_co3d_dataset: version {version!r}, expected one of {list(VERSIONS)}")
    if n_frames < 4:
        raise ValueError(f"write_co3d_dataset: n_frames={n_frames}, expected at least 4 (one unseen frame in 4)")
    by_category: Dict[str, List[SequenceSpec]] = {}
    for spec in sequences:
        by_category.setdefault(spec.category, []).append(spec)
    for category, specs in by_category.items():
        if all(s.seen for s in specs) or not any(s.seen for s in specs):
            raise ValueError(f"write_co3d_dataset: category {category!r} needs both seen and unseen sequences")
        frames, sequence_records = [], []
        for spec in specs:
            mesh = sequence_mesh(spec)
            cameras = sequence_cameras(spec, n_frames, image_size_hw, distance, fov_degrees)
            rendering = scene_rendering.render_mesh(mesh, cameras, image_size_hw)
            frames += _write_sequence(out_root, spec, cameras, rendering, VERSIONS[version])
            sequence_records.append(_write_point_cloud(out_root, spec, mesh))
        folder = os.path.join(out_root, category)
        write_jgz(os.path.join(folder, "frame_annotations.jgz"), to_json(frames))
        write_jgz(os.path.join(folder, "sequence_annotations.jgz"), to_json(sequence_records))
        (_write_v1_lists if version == "v1" else _write_v2_lists)(folder, specs, frames)
    return {category: [s.name for s in specs] for category, specs in by_category.items()}


def _write_sequence(out_root: str, spec: SequenceSpec, cameras: PerspectiveCameras, rendering,
                    intrinsics_format: str) -> List[FrameAnnotation]:
    n, h, w = rendering.mask.shape
    relative = os.path.join(spec.category, spec.name)
    for sub in ("images", "masks", "depths", "depth_masks"):
        os.makedirs(os.path.join(out_root, relative, sub), exist_ok=True)
    tint = torch.tensor(spec.tint)
    frames = []
    for k in range(n):
        stem = f"frame{k + 1:06d}"
        paths = {
            "image": os.path.join(relative, "images", stem + ".jpg"),
            "mask": os.path.join(relative, "masks", stem + ".png"),
            "depth": os.path.join(relative, "depths", stem + ".jpg.geometric.png"),
            "depth_mask": os.path.join(relative, "depth_masks", stem + ".png"),
        }
        blobs.save_image(os.path.join(out_root, paths["image"]), rendering.rgb[k] * tint)
        blobs.save_mask(os.path.join(out_root, paths["mask"]), rendering.mask[k])
        blobs.save_depth(os.path.join(out_root, paths["depth"]), rendering.depth[k], DEPTH_SCALE)
        blobs.save_mask(os.path.join(out_root, paths["depth_mask"]), (rendering.depth[k] > 0).float())
        frames.append(
            FrameAnnotation(
                sequence_name=spec.name,
                frame_number=k,
                frame_timestamp=k / FPS,
                image=ImageAnnotation(paths["image"], (h, w)),
                depth=DepthAnnotation(paths["depth"], DEPTH_SCALE, paths["depth_mask"]),
                mask=MaskAnnotation(paths["mask"], float(rendering.mask[k].sum())),
                viewpoint=viewpoint_from_camera(cameras[k], (h, w), intrinsics_format),
            )
        )
    return frames


def _write_point_cloud(out_root: str, spec: SequenceSpec, mesh) -> SequenceAnnotation:
    import trimesh  # imported here: slow to import, only rendering needs it

    path = os.path.join(spec.category, spec.name, "pointcloud.ply")
    points = trimesh.sample.sample_surface(mesh, N_POINT_CLOUD, seed=0)[0]
    trimesh.PointCloud(points).export(os.path.join(out_root, path))
    return SequenceAnnotation(
        sequence_name=spec.name,
        category=spec.category,
        point_cloud=PointCloudAnnotation(path, quality_score=1.0, n_points=N_POINT_CLOUD),
        viewpoint_quality_score=1.0,
    )


def _ref(frame: FrameAnnotation) -> list:
    return [frame.sequence_name, frame.frame_number, frame.image.path]


def _eval_batches(frames: List[FrameAnnotation], sequence_names: Sequence[str], with_sources: bool) -> List[list]:
    """Batches of the unseen frames of the given sequences: target, then n_src known frames."""
    batches, b = [], 0
    for name in sequence_names:
        sequence = [f for f in frames if f.sequence_name == name]
        known = [f for f in sequence if not is_unseen_frame(f.frame_number)]
        for target in (f for f in sequence if is_unseen_frame(f.frame_number)):
            n_src = min(EVAL_N_SRC[b % len(EVAL_N_SRC)], len(known)) if with_sources else 0
            offset = target.frame_number % len(known)
            sources = (known[offset:] + known[:offset])[:n_src]
            batches.append([_ref(target)] + [_ref(f) for f in sources])
            b += 1
    return batches


def _write_json(path: str, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def _write_v1_lists(folder: str, specs: List[SequenceSpec], frames: List[FrameAnnotation]) -> None:
    seen = {s.name: s.seen for s in specs}
    sets = {name: [] for name in ("train_known", "train_unseen", "test_known", "test_unseen")}
    for frame in frames:
        split = "train" if seen[frame.sequence_name] else "test"
        sets[f"{split}_{'unseen' if is_unseen_frame(frame.frame_number) else 'known'}"].append(_ref(frame))
    _write_json(os.path.join(folder, "set_lists.json"), sets)
    test_names = [s.name for s in specs if not s.seen]
    _write_json(os.path.join(folder, "eval_batches_singlesequence.json"), _eval_batches(frames, test_names, True))
    all_names = [s.name for s in specs]
    _write_json(os.path.join(folder, "eval_batches_multisequence.json"), _eval_batches(frames, all_names, True))


def _write_v2_lists(folder: str, specs: List[SequenceSpec], frames: List[FrameAnnotation]) -> None:
    test_names = [s.name for s in specs if not s.seen]
    first = [f for f in frames if f.sequence_name == test_names[0]]
    manyview = {
        "train": [_ref(f) for f in first if not is_unseen_frame(f.frame_number)],
        "val": [_ref(f) for f in first if is_unseen_frame(f.frame_number)],
        "test": [_ref(f) for f in first if is_unseen_frame(f.frame_number)],
    }
    test_frames = [_ref(f) for f in frames if f.sequence_name in test_names]
    fewview = {
        "train": [_ref(f) for f in frames if f.sequence_name not in test_names],
        "val": test_frames,
        "test": test_frames,
    }
    for subset, lists, batches in (
        ("manyview_dev_0", manyview, _eval_batches(frames, test_names[:1], False)),
        ("fewview_dev", fewview, _eval_batches(frames, test_names, True)),
    ):
        _write_json(os.path.join(folder, "set_lists", f"set_lists_{subset}.json"), lists)
        _write_json(os.path.join(folder, "eval_batches", f"eval_batches_{subset}.json"), batches)
