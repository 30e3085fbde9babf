"""Small scenes and cameras shared by the rendering tests."""
from typing import Any

import torch

from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras
from recon_trainer.rendering.ray_bundle import RayBundle


def turned_cameras() -> PerspectiveCameras:
    """Two cameras looking at the origin from different sides, non-square focal, off-centre principal point."""
    eye = torch.tensor([[0.5, 1.0, -4.0], [3.0, -1.0, 2.0]])
    cams = look_at_cameras(eye, torch.zeros(2, 3), torch.tensor([[0.0, 1.0, 0.0]] * 2), focal_length=1.0)
    cams.focal_length = torch.tensor([[1.5, 1.8], [2.0, 2.0]])
    cams.principal_point = torch.tensor([[0.1, -0.05], [0.0, 0.2]])
    return cams


def axis_ray(lengths: torch.Tensor, distance: float = 3.0) -> RayBundle:
    """One ray (B = 1, R = 1) from (0, 0, -distance) along +z, the view axis of a camera looking at the origin."""
    return RayBundle(
        origins=torch.tensor([[[0.0, 0.0, -distance]]]),
        directions=torch.tensor([[[0.0, 0.0, 1.0]]]),
        lengths=lengths.reshape(1, 1, -1),
        xys=torch.zeros(1, 1, 2),
    )


class DensitySphere:
    """A ball of density `density` and radius `radius` at the origin (smooth edge), coloured by position.

    Records the ray bundles it is called with in `calls`.
    """

    def __init__(self, radius: float = 1.0, density: float = 50.0, sharpness: float = 100.0) -> None:
        self.radius, self.density, self.sharpness = radius, density, sharpness
        self.calls = []

    def __call__(self, *, ray_bundle: RayBundle, **kwargs: Any):
        self.calls.append(ray_bundle)
        points = ray_bundle.ray_points()
        inside = torch.sigmoid((self.radius - points.norm(dim=-1, keepdim=True)) * self.sharpness)
        features = torch.sigmoid(points)  # any smooth colour
        return self.density * inside, features, {"points_seen": torch.tensor(points.shape[-2])}
