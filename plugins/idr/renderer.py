"""SignedDistanceFunctionRenderer: IDR's surface rendering of an SDF implicit function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Optional, Tuple

import torch

from recon_trainer.config import registry, run_auto_creation
from recon_trainer.models.base import EvaluationMode
from recon_trainer.rendering.ray_bundle import RayBundle
from recon_trainer.rendering.renderer import LOSSES_AUX_KEY, BaseRenderer, RendererOutput

from .coloring_network import RayNormalColoringNetwork
from .ray_tracing import RayTracing

DOT_EPS = 1e-4  # smallest |normal . direction| in the surface-point correction


class PointField:
    """An implicit function (the model's partial, a RayBundle consumer) evaluated at arbitrary
    world points of T images.

    Points (K, 3) with image ids (K,) are packed into a (T, M, 1) RayBundle (origins = points,
    zero directions and lengths), so per-image inputs (global code, view pooling) line up.
    """

    def __init__(self, function: Callable, n_images: int) -> None:
        self.function = function
        self.n_images = n_images

    def __call__(self, points: torch.Tensor, image_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(SDF (K,), feature vectors (K, F)) at points (K, 3) of images image_ids (K,)."""
        counts = torch.bincount(image_ids, minlength=self.n_images)
        order = torch.argsort(image_ids, stable=True)
        first = torch.cumsum(counts, 0) - counts
        slots = torch.empty_like(image_ids)
        slots[order] = torch.arange(len(image_ids), device=image_ids.device) - first[image_ids[order]]
        size = max(int(counts.max()), 1) if len(image_ids) else 1
        padded = points.new_zeros(self.n_images, size, 3).index_put((image_ids, slots), points)
        bundle = RayBundle(
            origins=padded,
            directions=torch.zeros_like(padded),
            lengths=padded.new_zeros(self.n_images, size, 1),
            xys=padded.new_zeros(self.n_images, size, 2),
        )
        sdf, features, _ = self.function(ray_bundle=bundle)
        return sdf[image_ids, slots, 0, 0], features[image_ids, slots, 0]

    def with_gradient(
        self, points: torch.Tensor, image_ids: torch.Tensor, create_graph: bool
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(SDF (K,), feature vectors (K, F), SDF gradient w.r.t. the points (K, 3)).

        Runs with gradients on even inside torch.no_grad(); create_graph keeps the gradient
        differentiable (eikonal loss, normals in training).
        """
        with torch.enable_grad():
            if not points.requires_grad:
                points = points.detach().requires_grad_(True)
            sdf, features = self(points, image_ids)
            if len(image_ids) == 0:
                return sdf, features, torch.zeros_like(points)
            (gradient,) = torch.autograd.grad(sdf.sum(), points, create_graph=create_graph)
        return sdf, features, gradient


def differentiable_surface_points(
    points: torch.Tensor, directions: torch.Tensor, sdf: torch.Tensor, normals: torch.Tensor
) -> torch.Tensor:
    """IDR's surface points x(θ) = x0 - d (f(x0; θ) - f(x0; θ0)) / (∇f(x0) · d), shape (K, 3).

    points x0 (K, 3) where the rays with unit directions d (K, 3) hit the surface; sdf f(x0; θ)
    (K,) with its graph to the network; normals ∇f(x0) (K, 3), detached. The value equals x0;
    the gradient is that of the implicit surface (first order in θ).
    """
    dot = (normals * directions).sum(-1)
    sign = torch.where(dot >= 0, torch.ones_like(dot), -torch.ones_like(dot))
    step = (sdf - sdf.detach()) / (sign * dot.abs().clamp(min=DOT_EPS))
    return points - step[:, None] * directions


@registry.register
class SignedDistanceFunctionRenderer(BaseRenderer):
    """IDR (Yariv et al. 2020): ray-trace the zero level set of an SDF, colour the hits.

    forward(ray_bundle (T, *S), implicit_functions=[one SDF field], evaluation_mode,
    object_mask (T, *S) bool or None) -> RendererOutput (T, *S, C):
      features: colour at the surface hit, bg_color elsewhere;
      depths: the hit's length along the ray in the ray bundle's unit (the distance with unit
        directions, the view-space depth with directions of view depth 1), 0 where none;
      masks: evaluation: 1 at hits, 0 elsewhere; training: 1 on rays hit inside the object mask,
        sigmoid(-soft_mask_alpha * SDF) at the smallest-SDF point of every other ray;
      aux["grad_theta"] (training only): (N, 3) SDF gradients at N / 2 points uniform in the
        bounding cube [-r, r]^3 plus the N ray points (N rays), and from them
      aux["losses"]["loss_eikonal"] (training only): mean((|grad_theta| - 1)^2), a loss term of the model.
    The implicit function's "densities" are read as the SDF, its features as feature vectors.
    The lengths of the ray bundle are not used (the raysampler may sample any number of points).
    """

    LOSS_NAMES: ClassVar[Tuple[str, ...]] = ("loss_eikonal",)

    bg_color: Tuple[float, ...] = (0.0,)  # colour of rays without a hit (1 or render_features_dimensions values)
    soft_mask_alpha: float = 50.0  # sharpness of the soft mask sigmoid(-alpha * SDF) in training
    ray_tracer: RayTracing
    ray_normal_coloring_network: RayNormalColoringNetwork

    @classmethod
    def ray_tracer_tweak_args(cls, member_type: type, args: Any) -> None:
        del args["object_bounding_sphere"]

    @classmethod
    def ray_normal_coloring_network_tweak_args(cls, member_type: type, args: Any) -> None:
        del args["feature_vector_size"]

    def __post_init__(self) -> None:
        if len(self.bg_color) not in (1, self.render_features_dimensions):
            raise ValueError(
                f"SignedDistanceFunctionRenderer.bg_color={list(self.bg_color)}: expected 1 or "
                f"render_features_dimensions={self.render_features_dimensions} values"
            )
        run_auto_creation(self)
        if self.ray_normal_coloring_network.d_out != self.render_features_dimensions:
            raise ValueError(
                "SignedDistanceFunctionRenderer.ray_normal_coloring_network_args.d_out="
                f"{self.ray_normal_coloring_network.d_out}: expected render_features_dimensions="
                f"{self.render_features_dimensions}"
            )

    def create_ray_tracer_impl(self, control: Any, args: Any) -> None:
        self.ray_tracer = RayTracing(**args, object_bounding_sphere=self.object_bounding_sphere)

    def create_ray_normal_coloring_network_impl(self, control: Any, args: Any) -> None:
        self.ray_normal_coloring_network = RayNormalColoringNetwork(
            **args, feature_vector_size=self.render_features_dimensions
        )

    def requires_object_mask(self) -> bool:
        return True

    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        implicit_functions: list[Callable],
        evaluation_mode: EvaluationMode,
        object_mask: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> RendererOutput:
        """See the class docstring."""
        if len(implicit_functions) != 1:
            raise ValueError(
                f"SignedDistanceFunctionRenderer renders one implicit function, got {len(implicit_functions)} "
                "(use num_passes=1)"
            )
        training = evaluation_mode == EvaluationMode.TRAINING
        if training and object_mask is None:
            raise ValueError("SignedDistanceFunctionRenderer: training needs object_mask (the batch's fg_probability)")
        n_images, spatial = ray_bundle.origins.shape[0], ray_bundle.spatial_shape
        origins = ray_bundle.origins.reshape(-1, 3)
        raw_directions = ray_bundle.directions.reshape(-1, 3)
        direction_norms = raw_directions.norm(dim=-1)
        directions = raw_directions / direction_norms[:, None]
        n_rays = origins.shape[0]
        image_ids = torch.arange(n_rays, device=origins.device) // (n_rays // n_images)
        field = PointField(implicit_functions[0], n_images)
        mask = object_mask.reshape(-1).bool() if training else None

        with torch.no_grad():
            distances, hits = self.ray_tracer.trace(
                lambda points, ray_ids: field(points, image_ids[ray_ids])[0], origins, directions, mask
            )
        points = origins + distances[:, None] * directions
        surface = hits & mask if training else hits
        ids = surface.nonzero()[:, 0]
        aux = {}
        if training:
            ray_sdf = field(points, image_ids)[0]
            aux["grad_theta"] = self._eikonal_gradients(field, points, image_ids)
            aux[LOSSES_AUX_KEY] = {"loss_eikonal": ((aux["grad_theta"].norm(dim=-1) - 1.0) ** 2).mean()}
            _, _, normals = field.with_gradient(points[ids], image_ids[ids], create_graph=False)
            surface_points = differentiable_surface_points(points[ids], directions[ids], ray_sdf[ids], normals.detach())
        else:
            surface_points = points[ids]
        _, feature_vectors, normals = field.with_gradient(surface_points, image_ids[ids], create_graph=training)
        colors = self.ray_normal_coloring_network(surface_points, directions[ids], normals, feature_vectors)
        if not training:
            colors = colors.detach()
        bg = torch.tensor(self.bg_color, dtype=colors.dtype, device=colors.device)
        features = bg.expand(n_rays, self.render_features_dimensions).clone().index_put((ids,), colors)
        depths = torch.where(hits, distances / direction_norms, torch.zeros_like(distances))
        if training:
            soft = torch.sigmoid(-self.soft_mask_alpha * ray_sdf)
            masks = torch.where(surface, torch.ones_like(soft), soft)
        else:
            masks = hits.to(features.dtype)
        return RendererOutput(
            features=features.reshape(n_images, *spatial, -1),
            depths=depths.reshape(n_images, *spatial, 1),
            masks=masks.reshape(n_images, *spatial, 1),
            aux=aux,
        )

    def _eikonal_gradients(self, field: PointField, ray_points: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        """(N / 2 + N, 3) SDF gradients (with graph) at random points in [-r, r]^3 and at the N ray points."""
        n_random = ray_points.shape[0] // 2
        radius = self.object_bounding_sphere
        random_points = torch.empty(n_random, 3, dtype=ray_points.dtype, device=ray_points.device)
        random_points.uniform_(-radius, radius)
        random_ids = torch.arange(n_random, device=image_ids.device) % int(image_ids.max() + 1)
        points = torch.cat([random_points, ray_points.detach()])
        _, _, gradient = field.with_gradient(points, torch.cat([random_ids, image_ids]), create_graph=True)
        return gradient
