"""Raymarchers: per-ray features, depth and opacity from densities and features sampled along rays."""
import abc

import torch

from recon_trainer.config import ReplaceableBase, registry

from .renderer import RendererOutput


class RaymarcherBase(ReplaceableBase, torch.nn.Module):
    """Accumulates samples along rays.

    forward(rays_densities (B, ..., P, 1), rays_features (B, ..., P, C), ray_lengths (B, ..., P),
    density_noise_std) returns a RendererOutput: features (B, ..., C), depths (B, ..., 1),
    masks (B, ..., 1) (opacity) and aux["weights"] (B, ..., P), the contribution of each sample.
    """

    @abc.abstractmethod
    def forward(
        self,
        rays_densities: torch.Tensor,
        rays_features: torch.Tensor,
        ray_lengths: torch.Tensor,
        density_noise_std: float = 0.0,
    ) -> RendererOutput:
        """Implemented by each subclass."""


class AccumulativeRaymarcherBase(RaymarcherBase):
    """Front-to-back accumulation; subclasses choose how densities become opacities.

    With interval lengths d_i (the last one `background_opacity`, or a copy of the one before
    when `replicate_last_interval`), x_i = sigma_i * d_i, opacity O_i = cap(x_1 + ... + x_i) and
    weight w_i = combine(cap(x_i), 1 - O_{i - surface_thickness}) (O_j = 0 for j < 1).
    """

    surface_thickness: int = 1  # how many samples back the transmittance is read (>= 1)
    bg_color: tuple[float, ...] = (0.0,)  # background feature: 1 value or one per feature channel
    replicate_last_interval: bool = False  # the last interval repeats the one before it
    background_opacity: float = 0.0  # the last sample's interval length when not replicated
    density_relu: bool = True  # clamp densities at 0 (after the noise)
    blend_output: bool = False  # features = opacity * features + (1 - opacity) * bg, else features + (1 - opacity) * bg

    def __post_init__(self) -> None:
        if self.surface_thickness < 1:
            raise ValueError(f"{type(self).__name__}.surface_thickness={self.surface_thickness}: expected >= 1")

    @abc.abstractmethod
    def cap(self, x: torch.Tensor) -> torch.Tensor:
        """Opacity from accumulated density times length."""

    @abc.abstractmethod
    def combine(self, sample_opacity: torch.Tensor, transmittance: torch.Tensor) -> torch.Tensor:
        """A sample's weight from its own opacity and the transmittance in front of it."""

    def forward(
        self,
        rays_densities: torch.Tensor,
        rays_features: torch.Tensor,
        ray_lengths: torch.Tensor,
        density_noise_std: float = 0.0,
    ) -> RendererOutput:
        n_channels = rays_features.shape[-1]
        bg = torch.tensor(list(self.bg_color), dtype=rays_features.dtype, device=rays_features.device)
        if bg.numel() not in (1, n_channels):
            raise ValueError(
                f"{type(self).__name__}.bg_color has {bg.numel()} values, "
                f"expected 1 or {n_channels} (the feature channels)"
            )
        deltas = ray_lengths[..., 1:] - ray_lengths[..., :-1]
        if self.replicate_last_interval and deltas.shape[-1] > 0:
            last = deltas[..., -1:]
        else:
            last = torch.full_like(ray_lengths[..., :1], self.background_opacity)
        deltas = torch.cat([deltas, last], dim=-1)

        densities = rays_densities[..., 0]
        if density_noise_std > 0.0:
            densities = densities + torch.randn_like(densities) * density_noise_std
        if self.density_relu:
            densities = torch.relu(densities)

        optical_depth = densities * deltas
        opacities = self.cap(torch.cumsum(optical_depth, dim=-1))
        k = self.surface_thickness
        transmittance = torch.cat([torch.ones_like(opacities[..., :k]), 1.0 - opacities[..., :-k]], dim=-1)
        weights = self.combine(self.cap(optical_depth), transmittance)

        opacity = opacities[..., -1:]
        features = (weights[..., None] * rays_features).sum(dim=-2)
        depths = (weights * ray_lengths).sum(dim=-1, keepdim=True)
        alpha = opacity if self.blend_output else 1.0
        features = alpha * features + (1.0 - opacity) * bg
        return RendererOutput(features=features, depths=depths, masks=opacity, aux={"weights": weights})


@registry.register
class EmissionAbsorptionRaymarcher(AccumulativeRaymarcherBase):
    """Volume rendering: opacity 1 - exp(-sum sigma d), weights = sample opacity * transmittance."""

    background_opacity: float = 1e10  # the last interval is (practically) infinite: the ray ends there

    def cap(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.exp(-x)

    def combine(self, sample_opacity: torch.Tensor, transmittance: torch.Tensor) -> torch.Tensor:
        return sample_opacity * transmittance


@registry.register
class CumsumRaymarcher(AccumulativeRaymarcherBase):
    """Densities times lengths are opacities: opacity min(1, sum sigma d), weights = min(own, remaining)."""

    def cap(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(max=1.0)

    def combine(self, sample_opacity: torch.Tensor, transmittance: torch.Tensor) -> torch.Tensor:
        return torch.minimum(sample_opacity, transmittance)
