"""NeuralRadianceFieldImplicitFunction: NeRF's MLP from harmonic-embedded points to density and colour.

Not implemented from Implicitron's field list: `use_integrated_positional_encoding` (mip-NeRF's
conical-frustum embedding needs ray radii the RayBundle does not carry) and
`transformer_dim_down_factor` (NeRFormer only).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch

from recon_trainer.config import registry
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.mlp import MLPWithInputSkips, fast_paths_enabled
from recon_trainer.models.radiance_head import RadianceHead
from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding
from recon_trainer.rendering.implicit_function import ImplicitFunctionBase, broadcast_code, check_latent_dim
from recon_trainer.rendering.ray_bundle import RayBundle

from .fused_field import fused_radiance_field


@registry.register
class NeuralRadianceFieldImplicitFunction(ImplicitFunctionBase):
    """NeRF: x -> MLP(embed(x), latent) -> raw density (the raymarcher clamps it) and colour in (0, 1).

    The per-point input is [harmonic embedding of x (if input_xyz), latent code (latent_dim)], where
    the latent code is the view-pooled features and/or the global code the parent model passes.
    """

    n_harmonic_functions_xyz: int = 10  # frequencies of the point embedding
    n_harmonic_functions_dir: int = 4  # frequencies of the direction embedding
    n_hidden_neurons_xyz: int = 256  # width of the point MLP
    n_hidden_neurons_dir: int = 128  # width of the colour MLP's hidden layer
    n_layers_xyz: int = 8  # layers of the point MLP
    append_xyz: Tuple[int, ...] = (5,)  # point-MLP layers that re-read the input (skip connections)
    latent_dim: int = 0  # channels of the latent code per point (set by the parent model)
    color_dim: int = 3  # channels of the output colour (set by the parent model)
    input_xyz: bool = True  # embed the point itself (False: the latent code only)
    xyz_ray_dir_in_camera_coords: bool = False  # express points and directions in the target camera's frame

    def __post_init__(self) -> None:
        self.xyz_embedding = HarmonicEmbedding(self.n_harmonic_functions_xyz, append_input=True)
        input_dim = (self.xyz_embedding.get_output_dim(3) if self.input_xyz else 0) + self.latent_dim
        if input_dim == 0:
            raise ValueError("NeuralRadianceFieldImplicitFunction: input_xyz=False needs latent_dim > 0 (no input)")
        self.xyz_encoder = MLPWithInputSkips(
            n_layers=self.n_layers_xyz,
            input_dim=input_dim,
            output_dim=self.n_hidden_neurons_xyz,
            skip_dim=input_dim,
            hidden_dim=self.n_hidden_neurons_xyz,
            input_skips=tuple(self.append_xyz),
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
        """Densities (B, ..., P, 1) and colours (B, ..., P, color_dim) at ray_bundle.ray_points().

        fun_viewpool: world points (B, ..., P, 3) -> pooled source-view features (B, ..., P, D_v).
        camera: the B target cameras (needed by xyz_ray_dir_in_camera_coords).
        global_code: (B, D_g) one code per image; D_v + D_g must equal latent_dim.
        """
        points_world = ray_bundle.ray_points()
        points, directions = points_world, ray_bundle.directions
        if self.xyz_ray_dir_in_camera_coords:
            if camera is None:
                raise ValueError("NeuralRadianceFieldImplicitFunction: xyz_ray_dir_in_camera_coords needs the camera")
            points, directions = camera.world_to_view_any(points), camera.directions_to_view(directions)
        latent = []
        if fun_viewpool is not None:
            latent.append(fun_viewpool(points_world))
        if global_code is not None:
            latent.append(broadcast_code(global_code, points.shape[:-1]))
        check_latent_dim(latent, self.latent_dim, type(self).__name__, "(view pooling + global code)")
        parts = ([self.xyz_embedding(points)] if self.input_xyz else []) + latent
        embedding = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        if fast_paths_enabled(embedding.device):
            densities, colors = self._fused_field(embedding, directions)
        else:  # the plain path, the fused one's reference
            features = self.xyz_encoder(embedding, embedding)
            densities, colors = self.head(features, directions)
        return densities, colors, {}

    def _fused_field(self, embedding: torch.Tensor, directions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """xyz_encoder then head as one fused computation (fused_field.py): embedding (B, ..., P, D),
        directions (B, ..., 3) -> raw densities (B, ..., P, 1), colours (B, ..., P, color_dim)."""
        head = self.head
        unit_directions = torch.nn.functional.normalize(directions, dim=-1)
        direction_term = head.color_direction_layer(head.direction_embedding(unit_directions))
        return fused_radiance_field(
            embedding,
            direction_term,
            self.xyz_encoder.layers,
            self.xyz_encoder.input_skips,
            head.density_layer,
            head.intermediate_layer,
            head.color_feature_layer,
            head.color_output_layer,
        )

