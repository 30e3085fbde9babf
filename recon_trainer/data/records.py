"""Typed records: what a format reader returns, before any method decides how to batch it.

- `ViewRecord`: one image with its depth, intrinsics in pixels, camera-to-world pose (OpenCV),
  masks, ids and method-specific `extras`;
- `SequenceRecord`: N views of one sequence (a multi-view training item);
- `VoxelRecord`: a labelled voxel volume (semantic scene completion targets).

Conventions every reader follows:

- Image: a float32 torch tensor (3, H, W) in [0, 1], RGB. (Not uint8 numpy: the records are
  what the batch builders stack, and colour augmentations work on float tensors.)
- Pixels: the image spans [0, W] x [0, H]; the centre of the pixel in row i, column j is at
  (j + 0.5, i + 0.5). This is MoGe's normalised convention scaled by (W, H), COLMAP's and
  pytorch3d's screen space. Intrinsics whose pixel centres are integers (OpenCV, DUSt3R/Spann3R
  unprojection, ScanNet's and NYU's K) convert with `intrinsics_centre_to_corner` (cx, cy + 0.5).
- Camera frame: OpenCV, x right, y down, z forward; `camera_to_world` (4, 4) maps camera
  coordinates to world coordinates as `X_world = pose @ [X_cam, 1]`.
- Depth: float32 (H, W), the camera-frame z. A finite value > 0 is a measurement; +inf is
  infinitely far (sky, as MoGe stores it); NaN or 0 is unknown (NaN as MoGe stores it; 0 as
  sensor depth and DUSt3R/Spann3R store it). `depth_valid()` is finite and > 0 (and inside
  `mask_valid` when set); `depth_infinite()` is +inf. `depth_kind` says what the values are:
  metric (metres), relative (depth up to an unknown scale, or scale and shift) or disparity
  (inverse depth up to scale and shift: larger is closer).
- Stacking: `stack_records` stacks records of one class into a record of the same class whose
  tensors gain leading dimensions (a SequenceRecord's N views: (N, ...); a batch of B of them:
  (B, N, ...)), numbers become tensors and strings lists; shapes below are those of one record,
  "..." are the leading dimensions of a stacked one.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch

from recon_trainer.config.choices import choice_field, choice_fields
from recon_trainer.data.cameras import PerspectiveCameras, cameras_from_opencv, opencv_from_cameras

DEPTH_KINDS = ("metric", "relative", "disparity")
IGNORE_LABEL = 255  # voxel label of unknown / outside space (SSCNet, MonoScene, Symphonies)

Strings = Union[str, List[Any]]  # one string, or (nested) lists of them in a stacked record
Number = Union[int, float, torch.Tensor]  # a number, or a tensor of them in a stacked record


# ------------------------------------------------------------------------------------ geometry


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB as the records' (3, H, W) float32 image in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0


def intrinsics_to_normalized(intrinsics: torch.Tensor, image_size_hw: Tuple[int, int]) -> torch.Tensor:
    """(..., 3, 3) K in pixels to MoGe's normalised K: fx, cx in units of the image width, fy, cy
    of its height (cx, cy ~ 0.5 for a centred principal point)."""
    h, w = image_size_hw
    scale = torch.tensor([1.0 / w, 1.0 / h, 1.0], dtype=intrinsics.dtype, device=intrinsics.device)
    return intrinsics * scale[:, None]


def intrinsics_from_normalized(normalized: torch.Tensor, image_size_hw: Tuple[int, int]) -> torch.Tensor:
    """(..., 3, 3) normalised K (MoGe's meta.json) to K in pixels for an image of (H, W) pixels."""
    h, w = image_size_hw
    scale = torch.tensor([float(w), float(h), 1.0], dtype=normalized.dtype, device=normalized.device)
    return normalized * scale[:, None]


def intrinsics_centre_to_corner(intrinsics: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) K whose pixel centres are integers (OpenCV) to the records' convention (centres
    at + 0.5): the principal point moves by half a pixel; the focal lengths stay."""
    shifted = intrinsics.clone()
    shifted[..., 0, 2] += 0.5 * intrinsics[..., 2, 2]
    shifted[..., 1, 2] += 0.5 * intrinsics[..., 2, 2]
    return shifted


def intrinsics_corner_to_centre(intrinsics: torch.Tensor) -> torch.Tensor:
    """The inverse of `intrinsics_centre_to_corner`."""
    shifted = intrinsics.clone()
    shifted[..., 0, 2] -= 0.5 * intrinsics[..., 2, 2]
    shifted[..., 1, 2] -= 0.5 * intrinsics[..., 2, 2]
    return shifted


def rescale_intrinsics(
    intrinsics: torch.Tensor, from_hw: Tuple[int, int], to_hw: Tuple[int, int]
) -> torch.Tensor:
    """(..., 3, 3) K (records' pixel convention) of an (H, W) image for the same view resized to
    (H', W'): fx and cx scale by W' / W, fy and cy by H' / H (pixel corners map onto each other)."""
    scale = torch.tensor([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0], 1.0], dtype=intrinsics.dtype,
                         device=intrinsics.device)
    return intrinsics * scale[:, None]


def pixel_centres(image_size_hw: Tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 2) (u, v) of every pixel centre: (j + 0.5, i + 0.5) at row i, column j."""
    h, w = image_size_hw
    v, u = torch.meshgrid(torch.arange(h, dtype=dtype) + 0.5, torch.arange(w, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack([u, v], dim=-1)


def depth_to_points(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(..., H, W) depth (camera z) and (..., 3, 3) K in pixels to (..., H, W, 3) camera-frame
    points (OpenCV axes). Unknown depth (NaN) gives NaN points, +inf gives infinite ones along the
    pixel's ray (x and y are inf, -inf or NaN where the ray's x or y is 0); 0 gives the camera centre."""
    uv = pixel_centres(tuple(depth.shape[-2:]), depth.dtype).to(depth.device)
    k = intrinsics[..., None, None, :, :]  # broadcast over H, W
    x = (uv[..., 0] - k[..., 0, 2]) / k[..., 0, 0]
    y = (uv[..., 1] - k[..., 1, 2]) / k[..., 1, 1]
    return torch.stack([x * depth, y * depth, depth], dim=-1)


def transform_points(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(..., 4, 4) rigid transforms applied to (..., P..., 3) points: R @ X + t, batched over the
    leading dimensions of `matrix` (points may have any number of dimensions between)."""
    extra = points.dim() - matrix.dim() + 1  # the point dimensions between the batch dims and xyz
    rotation = matrix[..., :3, :3].reshape(*matrix.shape[:-2], *([1] * extra), 3, 3)
    translation = matrix[..., :3, 3].reshape(*matrix.shape[:-2], *([1] * extra), 3)
    return (rotation @ points[..., None])[..., 0] + translation


def invert_pose(pose: torch.Tensor) -> torch.Tensor:
    """(..., 4, 4) inverse of rigid transforms [R t; 0 1]: [R^T, -R^T t; 0 1]."""
    rotation_t = pose[..., :3, :3].transpose(-1, -2)
    inverse = torch.zeros_like(pose)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -(rotation_t @ pose[..., :3, 3:4])[..., 0]
    inverse[..., 3, 3] = 1.0
    return inverse


class Projection(NamedTuple):
    """World points seen by a camera: pixel coordinates (..., 2) (u, v) in the records' pixel
    convention, camera-frame depth (...), and whether the point is in front of the camera and
    inside the image (...)."""

    pixels: torch.Tensor
    depth: torch.Tensor
    in_view: torch.Tensor


def project_points(
    points_world: torch.Tensor, intrinsics: torch.Tensor, camera_to_world: torch.Tensor,
    image_size_hw: Tuple[int, int],
) -> Projection:
    """Project (P..., 3) world points through one camera (K (3, 3) in pixels, camera_to_world
    (4, 4) OpenCV) of an (H, W) image. `in_view`: depth > 0 and 0 <= u < W, 0 <= v < H."""
    camera = transform_points(invert_pose(camera_to_world), points_world)
    z = camera[..., 2]
    homogeneous = camera @ intrinsics.transpose(-1, -2)
    pixels = homogeneous[..., :2] / z[..., None]
    h, w = image_size_hw
    in_view = (z > 0) & (pixels[..., 0] >= 0) & (pixels[..., 0] < w) & (pixels[..., 1] >= 0) & (pixels[..., 1] < h)
    return Projection(pixels, z, in_view)


def opencv_view_from_cameras(cameras: PerspectiveCameras) -> Tuple[torch.Tensor, torch.Tensor]:
    """The records' geometry of N cameras (image_size set): K (N, 3, 3) in pixels and
    camera_to_world (N, 4, 4) OpenCV, float32, computed in float64; `ViewRecord.to_cameras` is the
    inverse."""
    double = PerspectiveCameras(*(None if t is None else (t.double() if t.is_floating_point() else t)
                                  for t in (cameras.R, cameras.T, cameras.focal_length, cameras.principal_point,
                                            cameras.image_size)))
    rotation, translation, intrinsics = opencv_from_cameras(double)
    world_to_camera = torch.eye(4, dtype=torch.float64, device=cameras.device).repeat(len(cameras), 1, 1)
    world_to_camera[:, :3, :3], world_to_camera[:, :3, 3] = rotation, translation
    return intrinsics.float(), invert_pose(world_to_camera).float()


# ------------------------------------------------------------------------------------ records


@dataclasses.dataclass
class ViewRecord:
    """One view (module doc for the conventions); a stacked record has leading dimensions.

    image: (3, H, W) float32 RGB in [0, 1].
    depth: (H, W) float32 camera z; +inf infinitely far, NaN or 0 unknown; None: no depth.
    depth_kind: metric (metres), relative (up to scale / shift) or disparity (inverse depth up to
        scale and shift).
    intrinsics: (3, 3) K in pixels, pixel centres at + 0.5.
    camera_to_world: (4, 4) OpenCV camera-to-world pose; None: unknown.
    mask_fg: (H, W) bool foreground (object) mask, or float32 in [0, 1] where the format stores a
        soft one (alpha, P(foreground): Blender, CO3D). mask_valid: (H, W) bool pixels that carry
        data (e.g. inside the original image after a crop or warp); None: every pixel.
    sequence: the sequence (scene, drive) id; frame: the frame's number in it; dataset: the
        dataset's label; label_type: what the labels are worth, per dataset (MoGe's label types,
        e.g. "synthetic", "lidar", "stereo", "sfm", "invalid"); path: the image file.
    extras: method- or format-specific values (tensors, records, numbers, strings), e.g. a
        VoxelRecord under "voxels".
    """

    image: torch.Tensor
    depth: Optional[torch.Tensor] = None
    depth_kind: Strings = choice_field("metric", DEPTH_KINDS)  # metric (metres), relative or disparity
    intrinsics: Optional[torch.Tensor] = None
    camera_to_world: Optional[torch.Tensor] = None
    mask_fg: Optional[torch.Tensor] = None
    mask_valid: Optional[torch.Tensor] = None
    sequence: Strings = ""
    frame: Number = 0
    dataset: Strings = ""
    label_type: Strings = ""
    path: Strings = ""
    extras: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, choices in choice_fields(type(self)):  # each string of a stacked record's (nested) lists
            choices.check(f"ViewRecord.{key}", _flatten(getattr(self, key)))
        if not isinstance(self.image, torch.Tensor) or self.image.dim() < 3 or self.image.shape[-3] != 3:
            shape = tuple(self.image.shape) if isinstance(self.image, torch.Tensor) else type(self.image).__name__
            raise ValueError(f"ViewRecord.image must be a (3, H, W) tensor, got {shape}")
        lead, hw = tuple(self.image.shape[:-3]), tuple(self.image.shape[-2:])
        for name, trailing in (("depth", hw), ("mask_fg", hw), ("mask_valid", hw), ("intrinsics", (3, 3)),
                               ("camera_to_world", (4, 4))):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != lead + trailing:
                raise ValueError(f"ViewRecord.{name} has shape {tuple(value.shape)}, expected {lead + trailing} "
                                 f"(image {tuple(self.image.shape)})")

    @property
    def image_size_hw(self) -> Tuple[int, int]:
        """(H, W) in pixels."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    @property
    def batch_shape(self) -> Tuple[int, ...]:
        """The leading dimensions: () for one view, (N,) for a stacked sequence, (B, N) for a batch."""
        return tuple(self.image.shape[:-3])

    def depth_valid(self) -> torch.Tensor:
        """(H, W) bool: finite depth > 0, inside mask_valid when it is set."""
        if self.depth is None:
            raise ValueError(f"ViewRecord {self.path or self.sequence!r} has no depth")
        valid = torch.isfinite(self.depth) & (self.depth > 0)
        return valid & self.mask_valid if self.mask_valid is not None else valid

    def depth_infinite(self) -> torch.Tensor:
        """(H, W) bool: depth +inf (infinitely far, e.g. sky)."""
        if self.depth is None:
            raise ValueError(f"ViewRecord {self.path or self.sequence!r} has no depth")
        return torch.isposinf(self.depth)

    def normalized_intrinsics(self) -> torch.Tensor:
        """(3, 3) K in MoGe's normalised units (fx, cx per image width; fy, cy per height)."""
        return intrinsics_to_normalized(self._need("intrinsics"), self.image_size_hw)

    def points_camera(self) -> torch.Tensor:
        """(H, W, 3) camera-frame points of the depth (OpenCV axes; NaN where depth is NaN, 0 at
        the camera centre where it is 0, infinite where it is +inf). Metric or relative depth only."""
        if "disparity" in _flatten(self.depth_kind):
            raise ValueError("ViewRecord.points_camera: disparity is not a depth (invert it with a known scale and "
                             "shift first)")
        return depth_to_points(self._need("depth"), self._need("intrinsics"))

    def points_world(self) -> torch.Tensor:
        """(H, W, 3) world-frame points of the depth (points_camera moved by camera_to_world)."""
        return transform_points(self._need("camera_to_world"), self.points_camera())

    def project(self, points_world: torch.Tensor) -> Projection:
        """Project (P..., 3) world points into this view (a single view only): pixels, depth, in_view."""
        if self.batch_shape:
            raise ValueError(f"ViewRecord.project works on one view, this record is stacked {self.batch_shape}")
        return project_points(points_world, self._need("intrinsics"), self._need("camera_to_world"),
                              self.image_size_hw)

    def to_cameras(self) -> PerspectiveCameras:
        """The view(s) as PerspectiveCameras (pytorch3d conventions, NDC intrinsics, image_size
        set): one camera per view, leading dimensions flattened (N = 1 for one view)."""
        pose = self._need("camera_to_world").reshape(-1, 4, 4)
        intrinsics = self._need("intrinsics").reshape(-1, 3, 3)
        world_to_camera = invert_pose(pose)
        size = torch.tensor([self.image_size_hw] * pose.shape[0])
        return cameras_from_opencv(world_to_camera[:, :3, :3], world_to_camera[:, :3, 3], intrinsics, size)

    def _need(self, name: str) -> torch.Tensor:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"ViewRecord {self.path or self.sequence!r} has no {name}")
        return value


@dataclasses.dataclass
class SequenceRecord:
    """N views of one sequence, in the order they were sampled.

    views: the N ViewRecords (same image size for `stack`). sequence: the sequence id.
    dataset: the dataset's label. extras: per-sequence values (e.g. the sampled frame gap).
    """

    views: List[ViewRecord]
    sequence: str = ""
    dataset: str = ""
    extras: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.views)

    def stack(self) -> ViewRecord:
        """The views as one ViewRecord of (N, ...) tensors: image (N, 3, H, W), depth (N, H, W),
        intrinsics (N, 3, 3), camera_to_world (N, 4, 4), frame (N,) int64, strings as lists; the
        sequence's own extras (not stacked) under extras["sequence"]."""
        if not self.views:
            raise ValueError(f"SequenceRecord {self.sequence!r} has no views to stack")
        stacked = stack_records(self.views)
        if self.extras:
            if "sequence" in stacked.extras:
                raise ValueError(f"SequenceRecord {self.sequence!r}: its views have an extra named 'sequence', "
                                 f"where the sequence's extras go when stacked")
            stacked.extras["sequence"] = dict(self.extras)
        return stacked


@dataclasses.dataclass
class VoxelRecord:
    """A labelled voxel volume on a regular grid; a stacked record has leading dimensions.

    labels: (X, Y, Z) uint8 class ids, IGNORE_LABEL (255) where unknown or outside.
    voxel_size: the edge of a voxel in metres: a number, or (3,) per-axis edges (a tuple or a
        tensor) for a grid resampled to other counts per axis (NYU's "scale" variant). A stacked
        record holds a tensor (B,) or (B, 3), or a list of tuples; `voxel_size_xyz` reads any of them.
    voxel_origin: (3,) float32 coordinates of the min corner of voxel (0, 0, 0), in the frame a
        view's camera_to_world maps into ("world": SSCNet's world frame for NYU, as the MonoScene
        / Symphonies pkl stores it; the LiDAR frame for SemanticKITTI). Axis k of the grid runs
        along coordinate k of that frame.
    extras: e.g. class weights (C,), frustum masks, lower-resolution targets (other VoxelRecords).
    """

    labels: torch.Tensor
    voxel_size: Number
    voxel_origin: torch.Tensor
    extras: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels.dim() < 3:
            raise ValueError(f"VoxelRecord.labels must be (X, Y, Z), got {tuple(self.labels.shape)}")
        lead = tuple(self.labels.shape[:-3])
        if tuple(self.voxel_origin.shape) != lead + (3,):
            raise ValueError(f"VoxelRecord.voxel_origin has shape {tuple(self.voxel_origin.shape)}, "
                             f"expected {lead + (3,)}")

    @property
    def grid_shape(self) -> Tuple[int, int, int]:
        """(X, Y, Z) voxels."""
        return tuple(int(s) for s in self.labels.shape[-3:])

    def voxel_size_xyz(self) -> torch.Tensor:
        """(..., 3) float32 voxel edges per axis (a number repeated three times), for one record or
        a stacked one (leading dimensions of the labels)."""
        lead = tuple(self.labels.shape[:-3])
        size = self.voxel_size
        if isinstance(size, (list, tuple)) and size and not isinstance(size[0], (int, float)):
            size = torch.stack([torch.as_tensor(s, dtype=torch.float32).reshape(-1).expand(3) for s in size])
        size = torch.as_tensor(size, dtype=torch.float32)
        if tuple(size.shape) in (lead, lead + (1,)):
            size = size.reshape(lead + (1,)).expand(lead + (3,))
        if tuple(size.shape) not in (lead + (3,), (3,), ()):
            raise ValueError(f"VoxelRecord.voxel_size has shape {tuple(size.shape)}, expected a number or (3,) per "
                             f"volume (labels {tuple(self.labels.shape)})")
        return size.expand(lead + (3,)).clone()

    def voxel_centres(self, offset: float = 0.5) -> torch.Tensor:
        """(X, Y, Z, 3) float32 world coordinates origin + (index + offset) * voxel_size (per
        axis when voxel_size has three values): the voxel centres with offset 0.5 (what MonoScene's
        and Symphonies' vox2pix project); offset 0 gives the min corners. A single volume only."""
        if self.labels.dim() != 3:
            raise ValueError(f"VoxelRecord.voxel_centres works on one volume, this record is stacked "
                             f"{tuple(self.labels.shape[:-3])}")
        axes = [torch.arange(n, dtype=torch.float32) + offset for n in self.grid_shape]
        index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        return self.voxel_origin.float() + index * self.voxel_size_xyz()

    def project(self, view: ViewRecord, offset: float = 0.5) -> Projection:
        """Every voxel (centre, or the point at `offset`) projected into `view`: pixels
        (X, Y, Z, 2), depth (X, Y, Z) and in_view (X, Y, Z): MonoScene's projected_pix / fov_mask
        (whose pixel = floor(u) here, as their round() of integer-centred coordinates)."""
        return view.project(self.voxel_centres(offset))


# ------------------------------------------------------------------------------------ stacking

R = TypeVar("R")


def stack_records(records: Sequence[R]) -> R:
    """Records of one dataclass (ViewRecord, VoxelRecord, ...) stacked into one of the same class:
    tensors and numpy arrays are stacked (torch) along a new first dimension, numbers become a
    tensor, strings and other values lists, dicts (extras) are stacked key by key and records in
    them recursively. A field set on some records only, or tensors of different shapes, is a
    ValueError naming the field. SequenceRecords are stacked view by view first (`stack`), so B
    sequences of N views give a ViewRecord of (B, N, ...) tensors."""
    if not records:
        raise ValueError("stack_records: nothing to stack")
    if all(isinstance(r, SequenceRecord) for r in records):
        return stack_records([r.stack() for r in records])
    kind = type(records[0])
    if not dataclasses.is_dataclass(kind) or any(type(r) is not kind for r in records):
        kinds = sorted({type(r).__name__ for r in records})
        raise ValueError(f"stack_records: expected records of one dataclass, got {kinds}")
    values = {f.name: _stack_values(f"{kind.__name__}.{f.name}", [getattr(r, f.name) for r in records])
              for f in dataclasses.fields(kind) if f.init}
    return kind(**values)


def _stack_values(name: str, values: List[Any]) -> Any:
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(f"stack_records: {name} is set on some records and missing on others")
    first = values[0]
    if isinstance(first, (torch.Tensor, np.ndarray)):
        tensors = [torch.as_tensor(v) for v in values]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(f"stack_records: {name} has different shapes across records: {sorted(shapes)}")
        return torch.stack(tensors)
    if isinstance(first, bool) and all(isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.bool)
    if isinstance(first, (int, float)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return torch.tensor(values)
    if isinstance(first, dict):
        keys = [tuple(sorted(v)) for v in values]
        if len(set(keys)) > 1:
            raise ValueError(f"stack_records: {name} has different keys across records: {sorted(set(keys))}")
        return {key: _stack_values(f"{name}[{key!r}]", [v[key] for v in values]) for key in first}
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return stack_records(values)
    return list(values)


def _flatten(value: Any) -> List[Any]:
    if isinstance(value, list):
        return [item for element in value for item in _flatten(element)]
    return [value]

