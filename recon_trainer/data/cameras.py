"""Perspective cameras in pytorch3d's conventions, so data and checkpoints interoperate.

Conventions (the same as pytorch3d's `PerspectiveCameras` with `in_ndc=True`):
- Points are row vectors: a world point X (3,) maps to view space as `X @ R + T`.
- View space: +X points left, +Y up, +Z forward (into the scene), seen from the camera.
- NDC: `x_ndc = fx * X / Z + px`, `y_ndc = fy * Y / Z + py`. The shorter image side spans
  [-1, 1]; the longer one spans [-s, s] with s = long / short. The top-left pixel has the
  largest x and y (x points left, y up).
- Screen (pixel) space, as pytorch3d converts it: with scale = min(H, W) / 2,
  `x_pix = W / 2 - x_ndc * scale` and `y_pix = H / 2 - y_ndc * scale`.
"""
from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple, Union

import torch

Device = Union[str, torch.device]

# View-space axis flips from other conventions to pytorch3d's (x left, y up, z forward).
_FLIP_OPENCV = (-1.0, -1.0, 1.0)  # OpenCV / COLMAP: x right, y down, z forward
_FLIP_OPENGL = (-1.0, 1.0, -1.0)  # OpenGL / Blender / NeRF: x right, y up, z backward


@dataclasses.dataclass
class PerspectiveCameras:
    """A batch of N pinhole cameras with intrinsics in NDC units.

    R: (N, 3, 3) rotation, applied to row vectors (`X @ R`).
    T: (N, 3) translation, world to view.
    focal_length: (N, 2) (fx, fy) in NDC units.
    principal_point: (N, 2) (px, py) in NDC units.
    image_size: (N, 2) (H, W) in pixels, or None when it is not known.
    """

    R: torch.Tensor
    T: torch.Tensor
    focal_length: torch.Tensor
    principal_point: torch.Tensor
    image_size: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.R.shape[0]
        for name, shape in (("R", (n, 3, 3)), ("T", (n, 3)), ("focal_length", (n, 2)), ("principal_point", (n, 2))):
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"PerspectiveCameras.{name} has shape {tuple(value.shape)}, expected {shape}")
        if self.image_size is not None and tuple(self.image_size.shape) != (n, 2):
            raise ValueError(f"PerspectiveCameras.image_size has shape {tuple(self.image_size.shape)}, expected {(n, 2)}")

    def __len__(self) -> int:
        return self.R.shape[0]

    @property
    def device(self) -> torch.device:
        return self.R.device

    def _apply(self, fn) -> "PerspectiveCameras":
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return PerspectiveCameras(**{k: (fn(v) if v is not None else None) for k, v in values.items()})

    def to(self, device: Device) -> "PerspectiveCameras":
        return self._apply(lambda t: t.to(device))

    def clone(self) -> "PerspectiveCameras":
        return self._apply(torch.clone)

    def __getitem__(self, index: Union[int, slice, Sequence[int], torch.Tensor]) -> "PerspectiveCameras":
        """The cameras at `index`; an int keeps the batch dimension (N=1)."""
        if isinstance(index, int):
            index = [index]
        return self._apply(lambda t: t[index])

    def get_camera_center(self) -> torch.Tensor:
        """(N, 3) camera centres in world coordinates: C = -T @ R^T."""
        return -(self.T[:, None, :] @ self.R.transpose(1, 2))[:, 0]

    def world_to_view(self, points: torch.Tensor) -> torch.Tensor:
        """(N, P, 3) world points to (N, P, 3) view-space points."""
        return points @ self.R + self.T[:, None, :]

    def world_to_view_any(self, points: torch.Tensor) -> torch.Tensor:
        """World points (N, ..., 3) of any shape to view-space points of the same shape (camera n for [n])."""
        n = points.shape[0]
        return self.world_to_view(points.reshape(n, -1, 3)).reshape(points.shape)

    def directions_to_view(self, directions: torch.Tensor) -> torch.Tensor:
        """World directions (N, ..., 3) of any shape rotated into the view frames (no translation)."""
        n = directions.shape[0]
        return (directions.reshape(n, -1, 3) @ self.R).reshape(directions.shape)

    def view_to_world(self, points: torch.Tensor) -> torch.Tensor:
        """(N, P, 3) view-space points to (N, P, 3) world points."""
        return (points - self.T[:, None, :]) @ self.R.transpose(1, 2)

    def transform_points_ndc(self, points: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """(N, P, 3) world points to (N, P, 3): NDC x, y and the view-space depth Z."""
        view = self.world_to_view(points)
        z = view[..., 2:3]
        xy = view[..., :2] / z.clamp(min=eps) * self.focal_length[:, None] + self.principal_point[:, None]
        return torch.cat([xy, z], dim=-1)

    def unproject_points(self, xy_depth: torch.Tensor) -> torch.Tensor:
        """(N, P, 3) NDC x, y and view-space depth to (N, P, 3) world points."""
        xy, z = xy_depth[..., :2], xy_depth[..., 2:3]
        view_xy = (xy - self.principal_point[:, None]) / self.focal_length[:, None] * z
        return self.view_to_world(torch.cat([view_xy, z], dim=-1))

    def ndc_to_pixel(self, xy_ndc: torch.Tensor, image_size_hw: Tuple[int, int]) -> torch.Tensor:
        """(..., 2) NDC x, y to (..., 2) pixel x, y (column, row), pytorch3d's screen convention."""
        h, w = image_size_hw
        scale = min(h, w) / 2.0
        return torch.stack([w / 2.0 - xy_ndc[..., 0] * scale, h / 2.0 - xy_ndc[..., 1] * scale], dim=-1)


def join_cameras(cameras: List[PerspectiveCameras]) -> PerspectiveCameras:
    """Concatenate camera batches along N (all with or all without image_size)."""
    sizes = [c.image_size for c in cameras]
    image_size = None if any(s is None for s in sizes) else torch.cat(sizes)
    return PerspectiveCameras(
        R=torch.cat([c.R for c in cameras]),
        T=torch.cat([c.T for c in cameras]),
        focal_length=torch.cat([c.focal_length for c in cameras]),
        principal_point=torch.cat([c.principal_point for c in cameras]),
        image_size=image_size,
    )


def intrinsics_pixels_to_ndc(
    focal_pix: torch.Tensor, principal_pix: torch.Tensor, image_size_hw: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) focal and principal point in pixels (x, y) to NDC units, as pytorch3d converts them.

    image_size_hw: (N, 2) (H, W). Returns (focal_ndc, principal_ndc), each (N, 2).
    """
    size_wh = image_size_hw.flip(-1).to(focal_pix.dtype)
    scale = size_wh.min(dim=-1, keepdim=True).values / 2.0
    return focal_pix / scale, -(principal_pix - size_wh / 2.0) / scale


def _from_world_to_camera(
    R_w2c: torch.Tensor, t_w2c: torch.Tensor, flip: Tuple[float, float, float]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Column-vector world-to-camera (R (N,3,3), t (N,3)) in another convention to pytorch3d's R, T."""
    f = torch.tensor(flip, dtype=R_w2c.dtype, device=R_w2c.device)
    return (f[:, None] * R_w2c).transpose(1, 2), f * t_w2c


def cameras_from_opencv(
    R: torch.Tensor, tvec: torch.Tensor, camera_matrix: torch.Tensor, image_size_hw: torch.Tensor
) -> PerspectiveCameras:
    """Cameras from OpenCV / COLMAP extrinsics and intrinsics.

    R: (N, 3, 3) and tvec: (N, 3) map world to camera as `x_cam = R @ x_world + tvec`
    (x right, y down, z forward). camera_matrix: (N, 3, 3) K in pixels. image_size_hw: (N, 2).
    """
    R_p3d, T_p3d = _from_world_to_camera(R, tvec, _FLIP_OPENCV)
    focal = torch.stack([camera_matrix[:, 0, 0], camera_matrix[:, 1, 1]], dim=-1)
    focal_ndc, principal_ndc = intrinsics_pixels_to_ndc(focal, camera_matrix[:, :2, 2], image_size_hw)
    return PerspectiveCameras(R_p3d, T_p3d, focal_ndc, principal_ndc, image_size_hw.clone())


def opencv_from_cameras(cameras: PerspectiveCameras) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inverse of `cameras_from_opencv`: (R (N,3,3), tvec (N,3), K (N,3,3)); needs image_size."""
    if cameras.image_size is None:
        raise ValueError("opencv_from_cameras needs cameras with image_size set")
    f = torch.tensor(_FLIP_OPENCV, dtype=cameras.R.dtype, device=cameras.device)
    R = f[:, None] * cameras.R.transpose(1, 2)
    tvec = f * cameras.T
    size_wh = cameras.image_size.flip(-1).to(cameras.R.dtype)
    scale = size_wh.min(dim=-1, keepdim=True).values / 2.0
    focal = cameras.focal_length * scale
    principal = size_wh / 2.0 - cameras.principal_point * scale
    K = torch.zeros(len(cameras), 3, 3, dtype=cameras.R.dtype, device=cameras.device)
    K[:, 0, 0], K[:, 1, 1] = focal[:, 0], focal[:, 1]
    K[:, :2, 2] = principal
    K[:, 2, 2] = 1.0
    return R, tvec, K


def cameras_from_opengl_c2w(
    c2w: torch.Tensor, focal_pix: torch.Tensor, principal_pix: torch.Tensor, image_size_hw: torch.Tensor
) -> PerspectiveCameras:
    """Cameras from OpenGL / Blender camera-to-world poses (NeRF's `transform_matrix`).

    c2w: (N, 3, 4) or (N, 4, 4), camera x right, y up, looking down -z.
    focal_pix, principal_pix: (N, 2) in pixels (x, y). image_size_hw: (N, 2).
    """
    R_c2w, t_c2w = c2w[:, :3, :3], c2w[:, :3, 3]
    R_w2c = R_c2w.transpose(1, 2)
    t_w2c = -(R_w2c @ t_c2w[..., None])[..., 0]
    R_p3d, T_p3d = _from_world_to_camera(R_w2c, t_w2c, _FLIP_OPENGL)
    focal_ndc, principal_ndc = intrinsics_pixels_to_ndc(focal_pix, principal_pix, image_size_hw)
    return PerspectiveCameras(R_p3d, T_p3d, focal_ndc, principal_ndc, image_size_hw.clone())


def opengl_c2w_from_cameras(cameras: PerspectiveCameras) -> torch.Tensor:
    """(N, 4, 4) OpenGL / Blender camera-to-world matrices of `cameras` (extrinsics only)."""
    f = torch.tensor(_FLIP_OPENGL, dtype=cameras.R.dtype, device=cameras.device)
    R_w2c = f[:, None] * cameras.R.transpose(1, 2)
    t_w2c = f * cameras.T
    c2w = torch.eye(4, dtype=cameras.R.dtype, device=cameras.device).repeat(len(cameras), 1, 1)
    c2w[:, :3, :3] = R_w2c.transpose(1, 2)
    c2w[:, :3, 3] = -(R_w2c.transpose(1, 2) @ t_w2c[..., None])[..., 0]
    return c2w


def look_at_cameras(
    eye: torch.Tensor,
    at: torch.Tensor,
    up: torch.Tensor,
    focal_length: float,
    image_size_hw: Tuple[int, int] | None = None,
) -> PerspectiveCameras:
    """Cameras at `eye` (N, 3) looking at `at` (N, 3) with `up` (N, 3); square-pixel focal in NDC."""
    z = torch.nn.functional.normalize(at - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.cross(up, z, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=-1)  # columns are the view axes in world coordinates
    T = -(eye[:, None, :] @ R)[:, 0]
    n = eye.shape[0]
    focal = torch.full((n, 2), float(focal_length), dtype=eye.dtype, device=eye.device)
    size = None if image_size_hw is None else torch.tensor([image_size_hw] * n, device=eye.device)
    return PerspectiveCameras(R, T, focal, torch.zeros_like(focal), size)
