"""Raysamplers: rays of a batch of cameras (a full pixel grid or pixels sampled from a mask), depths along them."""
import abc

import torch

from recon_trainer.config import ReplaceableBase, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.base import EvaluationMode

from .ndc_grid import ndc_pixel_centers, sample_ndc_from_mask
from .ray_bundle import RayBundle

MASK_SAMPLE = "mask_sample"  # rays through pixels sampled in proportion to a mask (B, R, ...)
FULL_GRID = "full_grid"  # one ray through every pixel centre (B, H, W, ...)
SAMPLING_MODES = (MASK_SAMPLE, FULL_GRID)

MIN_NEAR = 1e-3  # the smallest near AdaptiveRaySampler uses (a camera inside the scene), as Implicitron


def sample_lengths(
    near: torch.Tensor, far: torch.Tensor, n_pts: int, spatial_shape: tuple[int, ...], stratified: bool
) -> torch.Tensor:
    """(B, *spatial_shape, n_pts) depths from near (B,) to far (B,).

    Deterministic: n_pts evenly spaced depths including near and far. Stratified: each depth is
    drawn uniformly between the midpoints to its neighbours (near and far bound the end bins),
    independently per ray, with torch's global random generator.
    """
    steps = torch.linspace(0.0, 1.0, n_pts, dtype=near.dtype, device=near.device)
    extra = (1,) * len(spatial_shape)
    near = near.reshape(-1, *extra, 1)
    far = far.reshape(-1, *extra, 1)
    lengths = (near + (far - near) * steps).expand(near.shape[0], *spatial_shape, n_pts)
    if not stratified or n_pts < 2:
        return lengths.contiguous()
    mids = 0.5 * (lengths[..., 1:] + lengths[..., :-1])
    lower = torch.cat([lengths[..., :1], mids], dim=-1)
    upper = torch.cat([mids, lengths[..., -1:]], dim=-1)
    return lower + (upper - lower) * torch.rand_like(lower)


def rays_through_ndc(
    cameras: PerspectiveCameras, xys: torch.Tensor, unit_directions: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and directions (each (B, ..., 3), world) of the rays through NDC points xys (B, ..., 2).

    direction = unproject(x, y, depth 1) - camera centre, so `origin + t * direction` has view
    depth t; with unit_directions it is normalised to length 1 (as Implicitron's samplers), so t
    is the distance along the ray.
    """
    b, spatial = xys.shape[0], xys.shape[1:-1]
    flat = xys.reshape(b, -1, 2)
    at_depth_one = torch.cat([flat, torch.ones_like(flat[..., :1])], dim=-1)
    centers = cameras.get_camera_center().to(xys.dtype)
    directions = cameras.unproject_points(at_depth_one) - centers[:, None]
    if unit_directions:
        directions = torch.nn.functional.normalize(directions, dim=-1)
    origins = centers[:, None].expand_as(directions)
    return origins.reshape(b, *spatial, 3), directions.reshape(b, *spatial, 3)


class RaySamplerBase(ReplaceableBase, torch.nn.Module):
    """Casts rays from cameras: a full grid or pixels sampled from a mask, lengths between near and far.

    `forward(cameras, evaluation_mode, mask)` returns a RayBundle; implementations say where near
    and far are (`near_far`). With `unit_directions` (the default, Implicitron's) the directions
    have length 1, so near, far, the lengths and the depth a renderer makes of them are distances
    along the ray from the camera centre; otherwise directions reach view depth 1 and all of them
    are view-space (z) depths.
    """

    image_width: int = 400  # width of the full grid in pixels (set by the parent model)
    image_height: int = 400  # height of the full grid in pixels (set by the parent model)
    # "mask_sample" or "full_grid" in training / in evaluation (set by the parent model)
    sampling_mode_training: str = choice_field(MASK_SAMPLE, SAMPLING_MODES)
    sampling_mode_evaluation: str = choice_field(FULL_GRID, SAMPLING_MODES)
    n_pts_per_ray_training: int = 64  # depths sampled along each ray in training
    n_pts_per_ray_evaluation: int = 64  # depths sampled along each ray in evaluation
    n_rays_per_image_sampled_from_mask: int | None = 1024  # rays per image in mask_sample mode
    n_rays_total_training: int | None = None  # rays over the whole batch in mask_sample mode (split evenly)
    stratified_point_sampling_training: bool = True  # jitter depths within their bins in training
    stratified_point_sampling_evaluation: bool = False  # jitter depths within their bins in evaluation
    # True = Implicitron's: unit-length directions, lengths/near/far/depth are distances along the ray;
    # False: directions reach view depth 1, lengths/near/far/depth are z-depths (the previous behaviour)
    unit_directions: bool = True

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_choices(self)
        for key in ("image_width", "image_height"):
            if getattr(self, key) < 1:
                raise ValueError(f"{name}.{key}={getattr(self, key)}: expected a positive integer")
        for key in ("n_pts_per_ray_training", "n_pts_per_ray_evaluation"):
            if getattr(self, key) < 0:
                raise ValueError(f"{name}.{key}={getattr(self, key)}: expected >= 0 (0: rays without points)")
        if MASK_SAMPLE in (self.sampling_mode_training, self.sampling_mode_evaluation):
            per_image, total = self.n_rays_per_image_sampled_from_mask, self.n_rays_total_training
            if (per_image is None) == (total is None):
                raise ValueError(
                    f"{name}: set exactly one of n_rays_per_image_sampled_from_mask ({per_image}) and "
                    f"n_rays_total_training ({total}) for mask_sample mode (set the other to null)"
                )

    @abc.abstractmethod
    def near_far(self, cameras: PerspectiveCameras) -> tuple[torch.Tensor, torch.Tensor]:
        """(near (B,), far (B,)) bounds of the lengths of each camera's rays (see `unit_directions`)."""

    def n_rays_per_image(self, batch_size: int) -> int:
        """The number of rays per image in mask_sample mode."""
        if self.n_rays_per_image_sampled_from_mask is not None:
            return self.n_rays_per_image_sampled_from_mask
        return max(1, self.n_rays_total_training // batch_size)

    def forward(
        self,
        cameras: PerspectiveCameras,
        evaluation_mode: EvaluationMode,
        mask: torch.Tensor | None = None,
    ) -> RayBundle:
        """Rays of B cameras.

        mask: (B, 1, H', W') sampling weights (e.g. foreground probability) at any resolution,
        used in mask_sample mode (None: uniform). Returns a RayBundle of shape (B, H, W, ...)
        with H, W = image_height, image_width in full_grid mode, (B, R, ...) in mask_sample mode.
        """
        training = evaluation_mode == EvaluationMode.TRAINING
        mode = self.sampling_mode_training if training else self.sampling_mode_evaluation
        n_pts = self.n_pts_per_ray_training if training else self.n_pts_per_ray_evaluation
        stratified = self.stratified_point_sampling_training if training else self.stratified_point_sampling_evaluation
        b, device = len(cameras), cameras.device
        if mode == FULL_GRID:
            grid = ndc_pixel_centers(self.image_height, self.image_width, dtype=cameras.R.dtype, device=device)
            xys = grid.expand(b, *grid.shape)
        else:
            n_rays = self.n_rays_per_image(b)
            xys = sample_ndc_from_mask(mask, n_rays, self.image_height, self.image_width, b, device=device)
            xys = xys.to(cameras.R.dtype)
        origins, directions = rays_through_ndc(cameras, xys, self.unit_directions)
        near, far = self.near_far(cameras)
        lengths = sample_lengths(near, far, n_pts, tuple(xys.shape[1:-1]), stratified)
        return RayBundle(origins=origins, directions=directions, lengths=lengths, xys=xys)


@registry.register
class AdaptiveRaySampler(RaySamplerBase):
    """Near and far from a camera's distance d to the scene centre: d - extent and d + extent.

    As Implicitron: d is first raised to extent + MIN_NEAR (a camera inside the scene gets near
    MIN_NEAR and far 2 extent + MIN_NEAR), and by default every camera of a batch uses the first
    camera's near and far (`per_camera_near_far` gives each camera its own).
    """

    scene_extent: float = 8.0  # radius around scene_center that holds the scene (> 0)
    scene_center: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world point the scene is centred on
    # False = Implicitron's: the batch's first camera's near/far for all; True: each camera its own
    per_camera_near_far: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scene_extent <= 0:
            raise ValueError(f"AdaptiveRaySampler.scene_extent={self.scene_extent}: expected a positive number")
        if len(self.scene_center) != 3:
            raise ValueError(f"AdaptiveRaySampler.scene_center={list(self.scene_center)}: expected 3 numbers")

    def near_far(self, cameras: PerspectiveCameras) -> tuple[torch.Tensor, torch.Tensor]:
        centers = cameras.get_camera_center()
        scene_center = torch.tensor(list(self.scene_center), dtype=centers.dtype, device=centers.device)
        distance = (centers - scene_center).square().sum(dim=-1).clamp(min=MIN_NEAR).sqrt()
        distance = distance.clamp(min=self.scene_extent + MIN_NEAR)
        if not self.per_camera_near_far:
            distance = distance[:1].expand_as(distance)
        return distance - self.scene_extent, distance + self.scene_extent


@registry.register
class NearFarRaySampler(RaySamplerBase):
    """The same near and far for every camera (distances along the rays, or z-depths: `unit_directions`)."""

    min_depth: float = 0.1  # near bound of the lengths (the first sample's)
    max_depth: float = 8.0  # far bound of the lengths (the last sample's)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.min_depth <= self.max_depth:
            raise ValueError(
                f"NearFarRaySampler: expected 0 <= min_depth <= max_depth, got min_depth={self.min_depth}, "
                f"max_depth={self.max_depth}"
            )

    def near_far(self, cameras: PerspectiveCameras) -> tuple[torch.Tensor, torch.Tensor]:
        b, dtype, device = len(cameras), cameras.R.dtype, cameras.device
        return (
            torch.full((b,), self.min_depth, dtype=dtype, device=device),
            torch.full((b,), self.max_depth, dtype=dtype, device=device),
        )
