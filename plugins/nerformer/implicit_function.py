"""NeRFormerImplicitFunction: CO3D's NerFormer (Reizenstein et al. 2021), a transformer over source-view features.

Each sample point reads one feature vector per source view (view pooling without aggregation),
concatenated with the point's harmonic embedding and the global code. A ViewRayTransformer
attends across the views and along the ray, pools the views and feeds NeRF's density/colour head.

As in Implicitron: 4 attention heads, feed-forward width n_hidden_neurons_xyz, skip layers add a
linear map of the input, softmax pooling over the views, then a linear layer to n_hidden_neurons_xyz
channels. Our own choices: where a block narrows the width its residual goes through a linear
projection (Implicitron keeps the first channels), and each view's pooling score comes from its own
linear layer (Implicitron reads the first channel). Not implemented from Implicitron's base class:
`use_integrated_positional_encoding` (mip-NeRF's embedding needs ray radii the RayBundle lacks).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch

from recon_trainer.config import registry
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.mlp import fast_paths_enabled
from recon_trainer.models.radiance_head import RadianceHead
from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding
from recon_trainer.rendering.implicit_function import ImplicitFunctionBase, broadcast_code, check_latent_dim
from recon_trainer.rendering.ray_bundle import RayBundle

from .transformer import ViewRayTransformer

IDENTITY_AGGREGATORS = ("IdentityFeatureAggregator", "AngleWeightedIdentityFeatureAggregator")


@registry.register
class NeRFormerImplicitFunction(ImplicitFunctionBase):
    """x -> ViewRayTransformer([embed(x), view features, global code] per source view) -> density, colour.

    Needs GenericModel's view pooler with an identity aggregator (one feature vector per source
    view). Densities are raw (the raymarcher clamps them); colours are in (0, 1).
    """

    # Implicitron's field order.
    n_harmonic_functions_xyz: int = 10  # frequencies of the point embedding
    n_harmonic_functions_dir: int = 4  # frequencies of the direction embedding
    n_hidden_neurons_dir: int = 128  # width of the colour MLP's hidden layer
    latent_dim: int = 0  # per-view feature channels plus global code channels (set by the parent model)
    input_xyz: bool = True  # embed the point itself (False: the latent features only)
    xyz_ray_dir_in_camera_coords: bool = False  # embed points and directions in the target camera's frame
    color_dim: int = 3  # channels of the output colour (set by the parent model)
    transformer_dim_down_factor: float = 2.0  # each transformer layer divides the width by this
    n_hidden_neurons_xyz: int = 80  # width of the first transformer layer and of the pooled point features
    n_layers_xyz: int = 2  # transformer layers (each: attention across views, then along the ray)
    append_xyz: Tuple[int, ...] = (1,)  # transformer layers that re-read the input (added after a linear map)
    # Ours. CPU only: run the transformer through torch.compile (needs a C++ compiler; each new
    # input shape compiles first, tens of seconds); falls back to uncompiled with one warning.
    compile_transformer_on_cpu: bool = False

    def __post_init__(self) -> None:
        self.xyz_embedding = HarmonicEmbedding(self.n_harmonic_functions_xyz, append_input=True)
        input_dim = (self.xyz_embedding.get_output_dim(3) if self.input_xyz else 0) + self.latent_dim
        if input_dim == 0:
            raise ValueError("NeRFormerImplicitFunction: input_xyz=False needs latent_dim > 0 (no input)")
        self.transformer = ViewRayTransformer(
            n_layers=self.n_layers_xyz,
            input_dim=input_dim,
            output_dim=self.n_hidden_neurons_xyz,
            skip_dim=input_dim,
            hidden_dim=self.n_hidden_neurons_xyz,
            input_skips=tuple(self.append_xyz),
            dim_down_factor=self.transformer_dim_down_factor,
        )
        self.head = RadianceHead(
            feature_dim=self.n_hidden_neurons_xyz,
            n_harmonic_functions_dir=self.n_harmonic_functions_dir,
            n_hidden_neurons_dir=self.n_hidden_neurons_dir,
            color_dim=self.color_dim,
        )

    @staticmethod
    def allows_multiple_passes() -> bool:
        return True

    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        fun_viewpool: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        camera: Optional[PerspectiveCameras] = None,
        global_code: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
        """Densities (T, ..., P, 1) and colours (T, ..., P, color_dim) at ray_bundle.ray_points().

        fun_viewpool: world points (T, ..., P, 3) -> per-view features (T, ..., P, N_src, D_v).
        camera: the T target cameras (needed by xyz_ray_dir_in_camera_coords).
        global_code: (T, D_g) one code per target; D_v + D_g must equal latent_dim.
        """
        points_world = ray_bundle.ray_points()
        view_features = self._view_features(fun_viewpool, points_world)
        n_views = view_features.shape[-2]
        latent = [view_features]
        if global_code is not None:
            latent.append(broadcast_code(global_code, view_features.shape[:-1]))
        check_latent_dim(latent, self.latent_dim, type(self).__name__, "per view (view pooling + global code)")
        points, directions = points_world, ray_bundle.directions
        if self.xyz_ray_dir_in_camera_coords:
            if camera is None:
                raise ValueError("NeRFormerImplicitFunction: xyz_ray_dir_in_camera_coords needs the camera")
            points, directions = camera.world_to_view_any(points), camera.directions_to_view(directions)
        embedding = self.xyz_embedding(points) if self.input_xyz else None
        n_points = points_world.shape[-2]
        if fast_paths_enabled(points_world.device):
            # The per-view input's parts as they are (the embedding once per point, the code
            # once per target), never concatenated: see ViewRayTransformer.forward_grid.
            parts = [view_features.reshape(-1, n_points, n_views, view_features.shape[-1])]
            if embedding is not None:
                parts.insert(0, embedding.reshape(-1, n_points, 1, embedding.shape[-1]))
            if global_code is not None:
                n_rays = parts[0].shape[0] // global_code.shape[0]
                parts.append(global_code[:, None, :].expand(-1, n_rays, -1).reshape(-1, 1, 1, global_code.shape[-1]))
            if self.compile_transformer_on_cpu:
                features = self.transformer.compiled_forward_grid(parts)
            else:
                features = self.transformer.forward_grid(parts)
        else:  # the plain path, the fast one's reference
            if embedding is not None:
                latent.insert(0, embedding[..., None, :].expand(*embedding.shape[:-1], n_views, embedding.shape[-1]))
            per_view = torch.cat(latent, dim=-1)  # (T, ..., P, N, C)
            flat = per_view.reshape(-1, n_points, n_views, per_view.shape[-1])
            features = self.transformer(flat, flat)
        features = features.reshape(*points_world.shape[:-1], self.n_hidden_neurons_xyz)
        densities, colors = self.head(features, directions)
        return densities, colors, {}

    @staticmethod
    def _view_features(
        fun_viewpool: Optional[Callable[[torch.Tensor], torch.Tensor]], points_world: torch.Tensor
    ) -> torch.Tensor:
        """fun_viewpool(points (T, ..., P, 3)), checked to be unreduced: (T, ..., P, N_src, D_v)."""
        if fun_viewpool is None:
            raise ValueError(
                "NeRFormerImplicitFunction needs per-view source features: set GenericModel.view_pooler_enabled=true, "
                "an image_feature_extractor_class_type and view_pooler_args.feature_aggregator_class_type to one of "
                f"{list(IDENTITY_AGGREGATORS)}"
            )
        features = fun_viewpool(points_world)
        spatial = tuple(points_world.shape[:-1])
        if features.dim() != points_world.dim() + 1 or tuple(features.shape[: len(spatial)]) != spatial:
            raise ValueError(
                f"NeRFormerImplicitFunction: view pooling returned features of shape {tuple(features.shape)} for "
                f"points of shape {tuple(points_world.shape)}; expected one vector per source view, "
                f"{spatial + ('N_src', 'D')}. Reducing aggregators average the views away: set "
                f"view_pooler_args.feature_aggregator_class_type to one of {list(IDENTITY_AGGREGATORS)}"
            )
        return features

