"""SRN's raymarch functions: world points (plus latent codes) to the features the LSTM marcher reads.

`SRNRaymarchFunction` is one MLP shared by every scene; `SRNRaymarchHyperNet` generates the MLP's
weights from each target view's global code (a per-sequence autodecoder code), as in SRN.
Both MLPs have n_layers + 2 linear layers (input, n_layers hidden, output), each followed by a ReLU.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch

from recon_trainer.config import Configurable
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.mlp import MLPWithInputSkips
from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding
from recon_trainer.rendering.implicit_function import broadcast_code, check_latent_dim
from recon_trainer.rendering.ray_bundle import RayBundle

ViewPool = Callable[[torch.Tensor], torch.Tensor]
HYPERNET_WEIGHT_SCALE = 0.1  # initial scale of the code-dependent part of generated weights (SRN: 0.1)


def pooled_features(fun_viewpool: Optional[ViewPool], points_world: torch.Tensor, owner: str) -> List[torch.Tensor]:
    """[(T, ..., D) view-pooled features at points_world (T, ..., 3)], or [] without a view pooler."""
    if fun_viewpool is None:
        return []
    pooled = fun_viewpool(points_world)
    if pooled.dim() != points_world.dim():
        raise ValueError(
            f"{owner}: the view pooler returned features of shape {tuple(pooled.shape)} for points of shape "
            f"{tuple(points_world.shape)}; SRN needs one feature vector per point, i.e. a reducing aggregator "
            "(feature_aggregator_class_type ReductionFeatureAggregator or AngleWeightedReductionFeatureAggregator)"
        )
    return [pooled]


def points_in_frame(
    ray_bundle: RayBundle, camera: Optional[PerspectiveCameras], in_camera: bool, owner: str
) -> torch.Tensor:
    """(T, ..., P, 3) ray points: world coordinates, or each target camera's view frame when in_camera."""
    points = ray_bundle.ray_points()
    if not in_camera:
        return points
    if camera is None:
        raise ValueError(f"{owner}: xyz_in_camera_coords=True needs the target cameras (camera=None)")
    return camera.world_to_view_any(points)


class SRNRaymarchFunction(Configurable, torch.nn.Module):
    """features = MLP([harmonic embedding of x, latent code]) at every ray point (SRN's phi)."""

    n_harmonic_functions: int = 3  # frequencies of the point embedding (0: the raw point only)
    n_hidden_units: int = 256  # width of the hidden layers
    n_layers: int = 2  # hidden layers between the input and the output layer
    in_features: int = 3  # channels of a point
    out_features: int = 256  # channels of the output features (the LSTM's input)
    latent_dim: int = 0  # channels of the latent code per point (set by the implicit function)
    xyz_in_camera_coords: bool = False  # embed points in the target camera's view frame instead of the world's

    def __post_init__(self) -> None:
        self.xyz_embedding = HarmonicEmbedding(self.n_harmonic_functions, append_input=True)
        input_dim = self.xyz_embedding.get_output_dim(self.in_features) + self.latent_dim
        self.mlp = MLPWithInputSkips(
            n_layers=self.n_layers + 2,
            input_dim=input_dim,
            output_dim=self.out_features,
            skip_dim=0,
            hidden_dim=self.n_hidden_units,
        )

    def forward(
        self,
        ray_bundle: RayBundle,
        fun_viewpool: Optional[ViewPool] = None,
        camera: Optional[PerspectiveCameras] = None,
        global_code: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """(T, ..., P, out_features) features at ray_bundle.ray_points().

        fun_viewpool: world points (T, ..., P, 3) -> pooled source-view features (T, ..., P, D_v).
        global_code: (T, D_g). D_v + D_g must equal latent_dim.
        """
        owner = type(self).__name__
        points = points_in_frame(ray_bundle, camera, self.xyz_in_camera_coords, owner)
        latent = pooled_features(fun_viewpool, ray_bundle.ray_points(), owner)
        if global_code is not None:
            latent.append(broadcast_code(global_code, points.shape[:-1]))
        check_latent_dim(latent, self.latent_dim, owner, "(view pooling + global code)")
        embedding = torch.cat([self.xyz_embedding(points), *latent], dim=-1)
        return self.mlp(embedding, embedding)


class SRNRaymarchHyperNet(Configurable, torch.nn.Module):
    """SRN's phi with per-view weights: a hypernetwork maps each view's global code to the MLP's weights.

    Every linear layer (d_in -> d_out) of the generated MLP has its own hypernetwork: an MLP of
    n_layers_hypernet ReLU layers on the code, then a linear layer to the d_out * (d_in + 1) weights
    and biases. That last layer starts with small weights (HYPERNET_WEIGHT_SCALE) and a bias holding
    a Xavier-initialised layer, so every code starts from a well-scaled MLP.
    """

    n_harmonic_functions: int = 3  # frequencies of the point embedding (0: the raw point only)
    n_hidden_units: int = 256  # width of the generated MLP's hidden layers
    n_layers: int = 2  # hidden layers of the generated MLP between its input and output layer
    n_hidden_units_hypernet: int = 256  # width of the hypernetworks' hidden layers
    n_layers_hypernet: int = 1  # hidden layers of each hypernetwork (0: a linear map of the code)
    in_features: int = 3  # channels of a point
    out_features: int = 256  # channels of the output features (the LSTM's input)
    latent_dim_hypernet: int = 0  # channels of the global code (set by the implicit function)
    latent_dim: int = 0  # channels of the view-pooled features per point (set by the implicit function)
    xyz_in_camera_coords: bool = False  # embed points in the target camera's view frame instead of the world's

    def __post_init__(self) -> None:
        if self.latent_dim_hypernet < 1:
            raise ValueError(
                f"SRNRaymarchHyperNet: latent_dim_hypernet={self.latent_dim_hypernet}; the hypernetwork needs a "
                "global code, set the model's global_encoder_class_type (e.g. SequenceAutodecoder)"
            )
        if self.n_layers_hypernet < 0:
            raise ValueError(f"SRNRaymarchHyperNet: n_layers_hypernet={self.n_layers_hypernet}, expected >= 0")
        self.xyz_embedding = HarmonicEmbedding(self.n_harmonic_functions, append_input=True)
        input_dim = self.xyz_embedding.get_output_dim(self.in_features) + self.latent_dim
        dims = [input_dim] + [self.n_hidden_units] * (self.n_layers + 1) + [self.out_features]
        self.layer_shapes: List[Tuple[int, int]] = list(zip(dims[1:], dims[:-1]))  # (d_out, d_in) per layer
        # One hypernetwork per generated layer: a ReLU trunk on the code (absent when
        # n_layers_hypernet = 0) and a head to the layer's flattened parameters.
        trunk_dim = self.n_hidden_units_hypernet if self.n_layers_hypernet > 0 else self.latent_dim_hypernet
        self.trunks = torch.nn.ModuleList(
            MLPWithInputSkips(
                n_layers=self.n_layers_hypernet,
                input_dim=self.latent_dim_hypernet,
                output_dim=trunk_dim,
                skip_dim=0,
                hidden_dim=trunk_dim,
            )
            for _ in self.layer_shapes
            if self.n_layers_hypernet > 0
        )
        self.heads = torch.nn.ModuleList(_weight_head(trunk_dim, d_in, d_out) for d_out, d_in in self.layer_shapes)

    def generate(self, global_code: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per-view MLP parameters from codes (T, latent_dim_hypernet): [(weight (T, d_out, d_in), bias (T, d_out))]."""
        if global_code.dim() != 2 or global_code.shape[-1] != self.latent_dim_hypernet:
            raise ValueError(
                f"SRNRaymarchHyperNet: expected a global code of shape (T, {self.latent_dim_hypernet}), "
                f"got {tuple(global_code.shape)}"
            )
        parameters = []
        for i, ((d_out, d_in), head) in enumerate(zip(self.layer_shapes, self.heads)):
            hidden = self.trunks[i](global_code, global_code) if self.trunks else global_code
            flat = head(hidden)
            parameters.append((flat[:, : d_out * d_in].reshape(-1, d_out, d_in), flat[:, d_out * d_in :]))
        return parameters

    def forward(
        self,
        ray_bundle: RayBundle,
        fun_viewpool: Optional[ViewPool] = None,
        camera: Optional[PerspectiveCameras] = None,
        global_code: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """(T, ..., P, out_features) features at ray_bundle.ray_points(), view t through the MLP of code t.

        fun_viewpool: world points (T, ..., P, 3) -> pooled source-view features (T, ..., P, latent_dim).
        global_code: (T, latent_dim_hypernet), required.
        """
        owner = type(self).__name__
        if global_code is None:
            raise ValueError(f"{owner}: the hypernetwork needs a global code (global_code=None)")
        points = points_in_frame(ray_bundle, camera, self.xyz_in_camera_coords, owner)
        latent = pooled_features(fun_viewpool, ray_bundle.ray_points(), owner)
        check_latent_dim(latent, self.latent_dim, owner, "(view pooling)")
        x = torch.cat([self.xyz_embedding(points), *latent], dim=-1)
        t = x.shape[0]
        y = x.reshape(t, -1, x.shape[-1])
        for weight, bias in self.generate(global_code):
            y = torch.relu(torch.baddbmm(bias[:, None, :], y, weight.transpose(1, 2)))
        return y.reshape(*x.shape[:-1], self.out_features)


def _weight_head(trunk_dim: int, d_in: int, d_out: int) -> torch.nn.Linear:
    """Linear map to a flattened (d_out, d_in) weight and (d_out,) bias, starting near a Xavier layer."""
    head = torch.nn.Linear(trunk_dim, d_out * (d_in + 1))
    with torch.no_grad():
        head.weight.mul_(HYPERNET_WEIGHT_SCALE)
        base_weight = torch.empty(d_out, d_in)
        torch.nn.init.xavier_uniform_(base_weight)
        head.bias.copy_(torch.cat([base_weight.flatten(), torch.zeros(d_out)]))
    return head
