"""The built-in scene: a mesh rendered once from a ring of cameras, cached as a Blender-layout dataset.

Cameras: view k of n_views sits at azimuth 360 * k / n_views degrees, at an elevation drawn uniformly
from `elevation_range` (seeded), `distance` from the origin, looking at the origin with world +Y up.
Split by viewpoint: view k is held out when `k % holdout_every == holdout_every // 2`; held-out
views alternate between val (the 1st, 3rd, ...) and test (the 2nd, 4th, ...); the others are train.
So the three splits are disjoint sets of viewpoints and val / test azimuths interleave the train ones.

Cache: `<cache root>/<scene label>-<hash of the settings>/` holds the Blender layout written by
`write_blender_split` (transforms_{train,val,test}.json, RGBA PNGs, exact depth `.npy` beside each
image) plus `scene.json` with the settings and each view's azimuth and elevation. It is rendered into
a temporary folder that is renamed into place, so a folder that exists is complete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from recon_trainer.config import Configurable, registry, run_auto_creation
from recon_trainer.data.builtin_data import cache_folder, write_folder_atomically
from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras
from recon_trainer.data.dataset_map_provider import DatasetMapProviderBase
from recon_trainer.data.providers.blender import SPLITS, read_blender_dataset_map, write_blender_split
from recon_trainer.data.providers.scene_meshes import BUILTIN_SCENE_NAME, load_scene_mesh
from recon_trainer.data.splits import DatasetMap

# Part of every cache key: bump it when rendering changes so that old caches are not reused.
RENDER_VERSION = 1


def split_view_indices(n_views: int, holdout_every: int) -> Dict[str, List[int]]:
    """{"train", "val", "test"}: the view indices of each split (see the module doc for the rule)."""
    held_out = [k for k in range(n_views) if k % holdout_every == holdout_every // 2]
    return {
        "train": [k for k in range(n_views) if k % holdout_every != holdout_every // 2],
        "val": held_out[0::2],
        "test": held_out[1::2],
    }


def ring_view_angles(n_views: int, elevation_range: Tuple[float, float], seed: int) -> np.ndarray:
    """(n_views, 2) azimuth and elevation in degrees of each view."""
    azimuth = 360.0 * np.arange(n_views) / n_views
    elevation = np.random.default_rng(seed).uniform(elevation_range[0], elevation_range[1], size=n_views)
    return np.stack([azimuth, elevation], axis=1)


def ring_cameras(angles_deg: np.ndarray, distance: float, fov_degrees: float, resolution: int) -> PerspectiveCameras:
    """Square-image cameras at the given (N, 2) azimuth / elevation (degrees) looking at the origin.

    fov_degrees is the horizontal (= vertical) field of view, so the NDC focal is 1 / tan(fov / 2).
    """
    azimuth, elevation = np.radians(angles_deg[:, 0]), np.radians(angles_deg[:, 1])
    eye = distance * np.stack(
        [np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)], axis=1
    )
    n = len(eye)
    return look_at_cameras(
        torch.tensor(eye, dtype=torch.float32),
        torch.zeros(n, 3),
        torch.tensor([[0.0, 1.0, 0.0]]).expand(n, 3),
        focal_length=1.0 / math.tan(math.radians(fov_degrees) / 2.0),
        image_size_hw=(resolution, resolution),
    )


class BuiltinScene(Configurable):
    """A mesh scene rendered from a ring of cameras into a cached Blender-layout dataset (module doc)."""

    scene: str = BUILTIN_SCENE_NAME  # "builtin" (procedural, shipped as code) or a mesh file path (OBJ, PLY, GLB)
    n_views: int = 50  # views around the scene, all splits together
    holdout_every: int = 5  # every holdout_every-th view is held out; held-out views alternate val / test
    resolution: int = 128  # image height and width in pixels
    distance: float = 4.0  # camera distance from the scene centre; the scene fits in the unit sphere
    fov_degrees: float = 39.6  # field of view (Blender's camera_angle_x, 0.691 rad)
    elevation_range: Tuple[float, float] = (-20.0, 60.0)  # degrees; each view's elevation is drawn uniformly
    seed: int = 0  # seeds the elevations
    cache_dir: str = ""  # cache root; "" = $RECON_TRAINER_CACHE or ~/.cache/recon_trainer/scenes
    bg_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB behind the scene when read (not cached)
    n_known_frames_for_test: Optional[int] = None  # k: each test batch is a test frame + k random train frames

    def __post_init__(self) -> None:
        low, high = (float(e) for e in self.elevation_range)
        problems = [
            (self.resolution < 1, f"resolution must be >= 1, got {self.resolution}"),
            (self.holdout_every < 2, f"holdout_every must be >= 2, got {self.holdout_every}"),
            (self.distance <= 1.0, f"distance must be > 1 (outside the unit sphere), got {self.distance}"),
            (not 0.0 < self.fov_degrees < 180.0, f"fov_degrees must be in (0, 180), got {self.fov_degrees}"),
            (not -90.0 < low <= high < 90.0, f"elevation_range must lie in (-90, 90), got {(low, high)}"),
        ]
        if not problems[1][0]:
            sizes = {s: len(v) for s, v in split_view_indices(self.n_views, self.holdout_every).items()}
            empty_split = (
                f"n_views={self.n_views} with holdout_every={self.holdout_every} leaves a split empty "
                f"({sizes}); use n_views >= 2 * holdout_every"
            )
            problems.append((min(sizes.values()) == 0, empty_split))
            n_known = self.n_known_frames_for_test
            problems.append((
                n_known is not None and not 0 <= n_known <= sizes["train"],
                f"n_known_frames_for_test={n_known}: expected between 0 and the {sizes['train']} train views",
            ))
        messages = [message for failed, message in problems if failed]
        if messages:
            raise ValueError("BuiltinScene: " + "; ".join(messages))

    def label(self) -> str:
        """"builtin" or the mesh file's name without extension (letters, digits, - and _)."""
        if self.scene == BUILTIN_SCENE_NAME:
            return BUILTIN_SCENE_NAME
        return re.sub(r"[^A-Za-z0-9_-]", "_", os.path.splitext(os.path.basename(self.scene))[0]) or "mesh"

    def describe(self) -> str:
        """For messages: `'builtin' (50 views, 128x128)`."""
        return f"'{self.scene}' ({self.n_views} views, {self.resolution}x{self.resolution})"

    def settings(self) -> dict:
        """The settings that determine the rendering, as plain JSON values."""
        settings = {
            "scene": self.scene,
            "n_views": self.n_views,
            "holdout_every": self.holdout_every,
            "resolution": self.resolution,
            "distance": float(self.distance),
            "fov_degrees": float(self.fov_degrees),
            "elevation_range": [float(e) for e in self.elevation_range],
            "seed": self.seed,
            "render_version": RENDER_VERSION,
        }
        if self.scene != BUILTIN_SCENE_NAME and os.path.isfile(self.scene):
            settings["scene"] = os.path.abspath(self.scene)
            with open(self.scene, "rb") as f:
                settings["scene_sha256"] = hashlib.sha256(f.read()).hexdigest()
        return settings

    def cache_folder(self) -> str:
        """The folder this scene is (or will be) cached in."""
        return cache_folder(self.label(), self.settings(), self.cache_dir)

    def ensure_rendered(self) -> str:
        """The cache folder, rendered first if it does not exist yet."""
        folder = self.cache_folder()
        if not os.path.isdir(folder):
            self.render_to(folder, exist_ok=True)
        return folder

    def get_dataset_map(self) -> DatasetMap:
        """Train (train_known), val and test (test_unseen) datasets read from the cache."""
        return read_blender_dataset_map(
            self.ensure_rendered(),
            sequence_name=self.label(),
            bg_color=self.bg_color,
            n_known_frames_for_test=self.n_known_frames_for_test,
        )

    def render_to(self, out_dir: str, exist_ok: bool = False) -> None:
        """Render every view into `out_dir` (Blender layout + depth + scene.json), atomically.

        A non-empty out_dir is an error, unless exist_ok (another process rendered it meanwhile).
        """
        write_folder_atomically(out_dir, self._render_into, exist_ok)

    def _render_into(self, folder: str) -> None:
        # Imported here: trimesh takes a second or more to import, and only rendering needs it.
        from recon_trainer.data import scene_rendering

        mesh = load_scene_mesh(self.scene)
        angles = ring_view_angles(self.n_views, tuple(float(e) for e in self.elevation_range), self.seed)
        splits = split_view_indices(self.n_views, self.holdout_every)
        for split in SPLITS:
            cameras = ring_cameras(angles[splits[split]], self.distance, self.fov_degrees, self.resolution)
            rendering = scene_rendering.render_mesh(mesh, cameras, (self.resolution, self.resolution))
            write_blender_split(
                folder,
                split,
                cameras=cameras,
                rgb=rendering.rgb,
                mask=rendering.mask,
                depth=rendering.depth,
                rotation=2.0 * math.pi / self.n_views,
            )
        views = {split: [{"view": k, "azimuth": angles[k, 0], "elevation": angles[k, 1]} for k in splits[split]]
                 for split in SPLITS}
        with open(os.path.join(folder, "scene.json"), "w", encoding="utf-8") as f:
            json.dump({"settings": self.settings(), "views": views}, f, indent=2)


def export_blender_dataset(out_dir: str, **settings) -> str:
    """Render a scene (BuiltinScene fields as keyword arguments) into a new Blender-layout folder."""
    BuiltinScene(**settings).render_to(out_dir)
    return os.path.abspath(out_dir)


@registry.register
class BuiltinSceneDatasetMapProvider(DatasetMapProviderBase):
    """The built-in (or a mesh-file) scene, rendered once and cached by BuiltinScene."""

    scene: BuiltinScene
    n_known_frames_for_test: Optional[int] = None  # k: each test batch is a test frame + k random train frames

    @classmethod
    def scene_tweak_args(cls, member_type: type, args: Any) -> None:
        del args["n_known_frames_for_test"]  # set from this provider's field

    def __post_init__(self) -> None:
        run_auto_creation(self)
        self.scene = dataclasses.replace(self.scene, n_known_frames_for_test=self.n_known_frames_for_test)

    def data_path(self) -> Optional[str]:
        return self.scene.cache_folder()

    def get_dataset_map(self) -> DatasetMap:
        return self.scene.get_dataset_map()
