"""IdrFeatureField: IDR's signed distance function with a feature vector per point."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from recon_trainer.config import registry
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding
from recon_trainer.rendering.implicit_function import ImplicitFunctionBase, ParentDimensions, broadcast_code
from recon_trainer.rendering.ray_bundle import RayBundle

SOFTPLUS_BETA = 100.0  # IDR's smooth ReLU: softplus(beta x) / beta


@registry.register
class IdrFeatureField(ImplicitFunctionBase):
    """x -> MLP([x, harmonics(x), pooled features, global code]) -> (SDF, feature vector).

    Used with SignedDistanceFunctionRenderer, which calls it at arbitrary points through a
    RayBundle (origins = the points, one zero length per ray). Its "densities" output is the SDF.
    Geometric initialisation (IDR, after Atzmon & Lipman's SAL) makes the SDF start close to
    that of a sphere: |x| - bias. Layers are Softplus(beta=100)-activated; a layer in skip_in
    reads [previous output, input] / sqrt(2).
    """

    feature_vector_size: int = 3  # channels of the feature vector per point (set by the parent model)
    d_in: int = 3  # channels of a point (world xyz)
    d_out: int = 1  # channels of the SDF output
    dims: Tuple[int, ...] = (512,) * 8  # widths of the hidden layers
    geometric_init: bool = True  # initialise the SDF to |x| - bias (a sphere of radius bias)
    bias: float = 1.0  # radius of the initial sphere (world units)
    skip_in: Tuple[int, ...] = ()  # indices of the linear layers (1..len(dims)) that re-read the input
    weight_norm: bool = True  # weight-normalise every linear layer
    n_harmonic_functions_xyz: int = 0  # frequencies of the point embedding (0: the point only)
    pooled_feature_dim: int = 0  # channels of view-pooled source features per point (0: none)
    encoding_dim: int = 0  # channels of the global code (set by the parent model)

    @classmethod
    def fields_set_by_parent(cls, dims: ParentDimensions) -> Dict[str, Any]:
        """The global code is read whole; view-pooled features are sized by pooled_feature_dim."""
        return {"feature_vector_size": dims.feature_dim, "encoding_dim": dims.global_code_dim}

    def __post_init__(self) -> None:
        if self.d_in != 3:
            raise ValueError(f"IdrFeatureField.d_in={self.d_in}: only 3 (world xyz) is supported")
        self.embedding = HarmonicEmbedding(self.n_harmonic_functions_xyz, append_input=False)
        self.input_dim = self.d_in + self.embedding.get_output_dim(self.d_in) + self.pooled_feature_dim
        self.input_dim += self.encoding_dim
        widths = [self.input_dim, *self.dims, self.d_out + self.feature_vector_size]
        n_layers = len(widths) - 1
        self.skips = frozenset(int(i) for i in self.skip_in)
        bad = sorted(i for i in self.skips if not 1 <= i < n_layers)
        if bad:
            raise ValueError(
                f"IdrFeatureField.skip_in={list(self.skip_in)}: {bad} are not layer indices 1..{n_layers - 1}"
            )
        layers: List[torch.nn.Module] = []
        for i in range(n_layers):
            layer = torch.nn.Linear(widths[i] + (self.input_dim if i in self.skips else 0), widths[i + 1])
            if self.geometric_init:
                self._geometric_init(layer, i, last=i == n_layers - 1)
            if self.weight_norm:
                layer = torch.nn.utils.parametrizations.weight_norm(layer)
            layers.append(layer)
        self.layers = torch.nn.ModuleList(layers)

    @torch.no_grad()
    def _geometric_init(self, layer: torch.nn.Linear, index: int, last: bool) -> None:
        """Weights that make the network output ≈ |x| - bias at the start (inputs other than xyz
        start with zero weight)."""
        fan_in, fan_out = layer.in_features, layer.out_features
        if last:
            torch.nn.init.normal_(layer.weight, mean=math.sqrt(math.pi) / math.sqrt(fan_in), std=1e-4)
            torch.nn.init.constant_(layer.bias, -self.bias)
            return
        torch.nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(fan_out))
        torch.nn.init.zeros_(layer.bias)
        if index == 0:
            layer.weight[:, self.d_in :] = 0.0
        elif index in self.skips:
            layer.weight[:, fan_in - self.input_dim + self.d_in :] = 0.0

    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        fun_viewpool: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        camera: Optional[PerspectiveCameras] = None,
        global_code: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
        """(SDF (B, ..., P, 1), feature vectors (B, ..., P, feature_vector_size), {}) at
        ray_bundle.ray_points() (B, ..., P, 3).

        fun_viewpool: world points (B, ..., P, 3) -> (B, ..., P, pooled_feature_dim).
        global_code: (B, encoding_dim), one code per image.
        """
        points = ray_bundle.ray_points()
        parts = [points, self.embedding(points)]
        if fun_viewpool is not None:
            parts.append(fun_viewpool(points))
        if global_code is not None:
            parts.append(broadcast_code(global_code, points.shape[:-1]))
        x = torch.cat(parts, dim=-1)
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"IdrFeatureField: got {x.shape[-1] - points.shape[-1] * (1 + 2 * self.n_harmonic_functions_xyz)} "
                f"pooled + global-code channels, expected pooled_feature_dim + encoding_dim = "
                f"{self.pooled_feature_dim + self.encoding_dim}"
            )
        inputs = x
        for i, layer in enumerate(self.layers):
            if i in self.skips:
                x = torch.cat([x, inputs], dim=-1) / math.sqrt(2.0)
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.nn.functional.softplus(x, beta=SOFTPLUS_BETA)
        return x[..., :1], x[..., self.d_out :], {}
