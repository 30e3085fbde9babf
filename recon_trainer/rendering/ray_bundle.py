"""RayBundle: a batch of rays with the depths sampled along each, in world coordinates."""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class RayBundle:
    """Rays for B images with any spatial layout `...` ((H, W) for a full grid, (R,) for sampled rays).

    origins: (B, ..., 3) ray origins (the camera centres), world coordinates.
    directions: (B, ..., 3) world directions. From a raysampler with `unit_directions` (the
        default, as Implicitron) they have length 1, so a length along a ray is the distance from
        the origin in world units; otherwise `origin + 1 * direction` lies at view-space depth
        Z = 1, so a length is a view-space depth.
    lengths: (B, ..., P) the lengths t of the P points `origin + t * direction` sampled along each ray.
    xys: (B, ..., 2) NDC x, y of the pixel each ray passes through.
    """

    origins: torch.Tensor
    directions: torch.Tensor
    lengths: torch.Tensor
    xys: torch.Tensor

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The `...` between the batch and the last dimension, e.g. (H, W) or (R,)."""
        return tuple(self.origins.shape[1:-1])

    @property
    def n_rays_per_image(self) -> int:
        """The number of rays of one image (the product of `spatial_shape`)."""
        n = 1
        for size in self.spatial_shape:
            n *= size
        return n

    def ray_points(self) -> torch.Tensor:
        """(B, ..., P, 3) world points `origin + length * direction` of every sample."""
        return self.origins[..., None, :] + self.lengths[..., :, None] * self.directions[..., None, :]

    def with_lengths(self, lengths: torch.Tensor) -> RayBundle:
        """The same rays with other (B, ..., P') lengths."""
        return dataclasses.replace(self, lengths=lengths)

    def flatten(self) -> RayBundle:
        """A view with the spatial dimensions merged: every tensor becomes (B, R, last dim)."""
        b, n_rays = self.origins.shape[0], self.n_rays_per_image
        return RayBundle(*(t.reshape(b, n_rays, t.shape[-1]) for t in self._tensors()))

    def unflatten(self, spatial_shape: tuple[int, ...]) -> RayBundle:
        """The inverse of `flatten`: (B, R, last dim) tensors to (B, *spatial_shape, last dim)."""
        b = self.origins.shape[0]
        return RayBundle(*(t.reshape(b, *spatial_shape, t.shape[-1]) for t in self._tensors()))

    def chunk(self, start: int, end: int) -> RayBundle:
        """Rays start..end-1 of every image of a flattened (B, R, ...) bundle."""
        if self.origins.dim() != 3:
            shape = tuple(self.origins.shape)
            raise ValueError(f"RayBundle.chunk needs a flattened (B, R, ...) bundle, got origins of shape {shape}")
        return RayBundle(*(t[:, start:end] for t in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.origins, self.directions, self.lengths, self.xys
