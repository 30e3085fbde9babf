"""A circular fly-around camera path fitted to the training cameras (for the visualizer's videos)."""
import math

import torch

from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras


def optical_axes_intersection(cameras: PerspectiveCameras) -> torch.Tensor:
    """(3,) the world point closest, in the least-squares sense, to every camera's optical axis.

    For parallel axes (no unique point) this is the minimum-norm solution.
    """
    centers = cameras.get_camera_center()
    forward = torch.nn.functional.normalize(cameras.R[:, :, 2], dim=-1)  # view +z in world coordinates
    eye = torch.eye(3, dtype=centers.dtype, device=centers.device)
    projectors = eye - forward[:, :, None] * forward[:, None, :]  # (N, 3, 3): removes the axis component
    lhs = projectors.sum(dim=0)
    rhs = (projectors @ centers[:, :, None]).sum(dim=0)
    return (torch.linalg.pinv(lhs) @ rhs)[:, 0]


def circular_trajectory(
    train_cameras: PerspectiveCameras,
    n_cameras: int,
    *,
    up: torch.Tensor | None = None,
    center: torch.Tensor | None = None,
) -> PerspectiveCameras:
    """n_cameras evenly spaced on a circle around the scene, each looking at its centre.

    train_cameras: the N training cameras the circle is fitted to.
    n_cameras: how many cameras the circle gets.
    up: (3,) world up vector; default: the mean of the cameras' up vectors (view +y).
    center: (3,) the point looked at; default: `optical_axes_intersection(train_cameras)`.
    The circle lies in the plane perpendicular to `up` at the cameras' mean height above
    `center`, with their mean horizontal distance as radius; it starts at the first camera's
    azimuth. Every camera gets the first training camera's intrinsics and image size.
    """
    if n_cameras < 1:
        raise ValueError(f"circular_trajectory: n_cameras must be >= 1, got {n_cameras}")
    centers = train_cameras.get_camera_center()
    dtype, device = centers.dtype, centers.device
    if up is None:
        up = train_cameras.R[:, :, 1].mean(dim=0)
    up = torch.nn.functional.normalize(torch.as_tensor(up, dtype=dtype, device=device), dim=0)
    if center is None:
        center = optical_axes_intersection(train_cameras)
    center = torch.as_tensor(center, dtype=dtype, device=device)

    offsets = centers - center
    heights = offsets @ up
    horizontal = offsets - heights[:, None] * up
    radius = horizontal.norm(dim=-1).mean()
    first = horizontal[0]
    if first.norm() < 1e-8 * max(float(radius), 1.0):
        raise ValueError("circular_trajectory: the first camera is straight above the centre; pass `center` or `up`")
    e1 = torch.nn.functional.normalize(first, dim=0)
    e2 = torch.linalg.cross(up, e1)
    angles = torch.arange(n_cameras, dtype=dtype, device=device) * (2.0 * math.pi / n_cameras)
    ring = angles.cos()[:, None] * e1 + angles.sin()[:, None] * e2
    eyes = center + heights.mean() * up + radius * ring

    posed = look_at_cameras(eyes, center.expand_as(eyes), up.expand_as(eyes), focal_length=1.0)
    image_size = None if train_cameras.image_size is None else train_cameras.image_size[:1].expand(n_cameras, 2)
    return PerspectiveCameras(
        R=posed.R,
        T=posed.T,
        focal_length=train_cameras.focal_length[:1].expand(n_cameras, 2).clone(),
        principal_point=train_cameras.principal_point[:1].expand(n_cameras, 2).clone(),
        image_size=None if image_size is None else image_size.clone(),
    )
