"""Implicitron's RenderedMeshDatasetMapProvider: a mesh (the cow by default) rendered on the fly.

As Implicitron: the mesh is centred on its vertex mean and scaled so its largest |coordinate| is 1
(`normalize_to_unit_cube`: it fits in [-1, 1]^3; the cow's farthest vertex is 1.25 from the
origin). View k of num_views sits at azimuth `linspace(-azimuth_range, azimuth_range)[k] + 180`
degrees (inclusive: with the default 180 the first and last views coincide), elevation 0,
`distance` from the origin, looking at it with +Y up; azimuth 180 is on the -Z side, in front of
the cow. Cameras are Implicitron's default FoV cameras: 60 degrees (NDC focal 1 / tan(30 deg) =
1.7321), square images of `resolution` pixels.

Shading (our ray-cast renderer, not pytorch3d's rasteriser): with use_point_light, Lambertian under
a point light fixed at world (0, 0, -3) with pytorch3d's default PointLights weights (ambient 0.5,
diffuse 0.3; the view-dependent specular term is left out); otherwise the unlit texture (pytorch3d's
AmbientLights). Images are premultiplied on black, masks exact 0/1; frames are "train_known".

Implicitron has train only (val = test = None); holdout_every > 0 holds out views for evaluation.
The views are ViewRecords (`rendered_views`) from which the FrameData items are made (frame_data.view_frame_data).
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, List, Optional

import numpy as np
import torch

from recon_trainer.config import registry
from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras
from recon_trainer.data.dataset_map_provider import DatasetMapProviderBase
from recon_trainer.data.providers.blender import single_scene_dataset_map
from recon_trainer.data.records import ViewRecord, opencv_view_from_cameras
from recon_trainer.data.splits import DatasetMap
from recon_trainer.data.frame_data import view_frame_data

if TYPE_CHECKING:
    from recon_trainer.data.scene_rendering import MeshRendering

# Keenan Crane's public-domain cow, shipped as package data (assets/cow_mesh/README.md).
COW_OBJ = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "cow_mesh", "cow.obj")
FOV_DEGREES = 60.0  # pytorch3d FoVPerspectiveCameras' default field of view
POINT_LIGHT_LOCATION = (0.0, 0.0, -3.0)  # world position of the point light (Implicitron's)
POINT_LIGHT_AMBIENT, POINT_LIGHT_DIFFUSE = 0.5, 0.3  # pytorch3d PointLights' default colour weights


def view_azimuths(num_views: int, azimuth_range: float) -> np.ndarray:
    """(num_views,) azimuths in degrees: evenly spaced in [-range, +range] (inclusive), plus 180."""
    return np.linspace(-azimuth_range, azimuth_range, num_views) + 180.0


def orbit_cameras(azimuths_deg: np.ndarray, distance: float, resolution: int) -> PerspectiveCameras:
    """Cameras at elevation 0 and the given azimuths (degrees), looking at the origin, 60 degree FoV.

    Azimuth a puts the camera at distance * (sin a, 0, cos a), as pytorch3d's look_at_view_transform.
    """
    azimuth = torch.tensor(np.radians(azimuths_deg), dtype=torch.float64)
    eye = distance * torch.stack([torch.sin(azimuth), torch.zeros_like(azimuth), torch.cos(azimuth)], dim=1)
    n = len(eye)
    cameras = look_at_cameras(
        eye,
        torch.zeros(n, 3, dtype=torch.float64),
        torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64).expand(n, 3),
        focal_length=1.0 / math.tan(math.radians(FOV_DEGREES) / 2.0),
        image_size_hw=(resolution, resolution),
    )
    return PerspectiveCameras(
        R=cameras.R.float(),
        T=cameras.T.float(),
        focal_length=cameras.focal_length.float(),
        principal_point=cameras.principal_point.float(),
        image_size=cameras.image_size,
    )


@registry.register
class RenderedMeshDatasetMapProvider(DatasetMapProviderBase):
    """Renders of a mesh from a ring of cameras at elevation 0 (this module's doc); the cow by default."""

    PATH_FIELD = "data_file"

    num_views: int = 40  # number of rendered views
    data_file: Optional[str] = None  # mesh file (OBJ, PLY, GLB); None = the cow shipped with the package
    azimuth_range: float = 180  # views are spread over [-azimuth_range, azimuth_range] + 180 degrees
    distance: float = 2.7  # camera distance from the mesh centre
    resolution: int = 128  # image height and width in pixels
    use_point_light: bool = True  # Lambertian under a point light at (0, 0, -3); False: unlit (ambient) texture
    holdout_every: int = 0  # 0: train only (Implicitron); k: views k // 2, k // 2 + k, ... are val = test
    n_known_frames_for_test: Optional[int] = None  # k: each test batch is a test frame + k random train frames

    def __post_init__(self) -> None:
        problems = [
            (self.num_views < 1, f"num_views must be >= 1, got {self.num_views}"),
            (self.resolution < 1, f"resolution must be >= 1, got {self.resolution}"),
            (self.distance <= 0, f"distance must be > 0, got {self.distance}"),
            (self.holdout_every < 0 or self.holdout_every == 1, f"holdout_every must be 0 or >= 2, got "
             f"{self.holdout_every}"),
            (self.n_known_frames_for_test is not None and self.holdout_every == 0,
             "n_known_frames_for_test needs held-out test views: set holdout_every"),
        ]
        messages = [message for failed, message in problems if failed]
        if messages:
            raise ValueError("RenderedMeshDatasetMapProvider: " + "; ".join(messages))

    def data_path(self) -> Optional[str]:
        return self.data_file or COW_OBJ

    def held_out_views(self) -> List[int]:
        """The indices of the views held out as val and test (none when holdout_every is 0)."""
        if self.holdout_every == 0:
            return []
        return [k for k in range(self.num_views) if k % self.holdout_every == self.holdout_every // 2]

    def get_dataset_map(self) -> DatasetMap:
        # Imported here: trimesh is slow to import, and only rendering needs it.
        from recon_trainer.data import scene_rendering
        from recon_trainer.data.providers.scene_meshes import load_mesh_file, normalize_to_unit_cube

        path = self.data_path()
        mesh = normalize_to_unit_cube(load_mesh_file(path))
        cameras = orbit_cameras(view_azimuths(self.num_views, self.azimuth_range), self.distance, self.resolution)
        size = (self.resolution, self.resolution)
        if self.use_point_light:
            rendering = scene_rendering.render_mesh(
                mesh, cameras, size, light_location=POINT_LIGHT_LOCATION, ambient=POINT_LIGHT_AMBIENT,
                diffuse=POINT_LIGHT_DIFFUSE,
            )
        else:
            rendering = scene_rendering.render_mesh(mesh, cameras, size, ambient=1.0)
        name = os.path.splitext(os.path.basename(path))[0]
        held_out = set(self.held_out_views())
        mask_crop = torch.ones(1, *size)
        splits = {"train": [], "test": []}
        for k, view in enumerate(rendered_views(cameras, rendering, name)):
            split = "test" if k in held_out else "train"
            splits[split].append(view_frame_data(view, "test_unseen" if split == "test" else "train_known", mask_crop))
        test = splits["test"] if held_out else None
        return single_scene_dataset_map(splits["train"], test, test, self.n_known_frames_for_test)


def rendered_views(cameras: PerspectiveCameras, rendering: "MeshRendering", sequence_name: str) -> List[ViewRecord]:
    """The N views of a rendering (scene_rendering.render_mesh) by N cameras as ViewRecords: image
    (3, H, W), mask_fg the exact 0/1 coverage (float32), depth the view-space z (0 = no surface,
    unknown; scene units, depth_kind "metric"), K and camera_to_world from the cameras, frame k,
    label type "synthetic"; no path (nothing is read from disk)."""
    intrinsics, camera_to_world = opencv_view_from_cameras(cameras)
    return [
        ViewRecord(
            image=rendering.rgb[k].permute(2, 0, 1).contiguous(),
            depth=rendering.depth[k],
            depth_kind="metric",
            intrinsics=intrinsics[k],
            camera_to_world=camera_to_world[k],
            mask_fg=rendering.mask[k],
            sequence=sequence_name,
            frame=k,
            label_type="synthetic",
        )
        for k in range(len(cameras))
    ]
