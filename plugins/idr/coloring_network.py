"""RayNormalColoringNetwork: IDR's rendering network, colour from surface point, view and normal."""

from __future__ import annotations

from typing import Tuple

import torch

from recon_trainer.config import Configurable
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding

# Geometric inputs (3 channels each, before the direction embedding) that each mode reads.
MODE_INPUTS = {
    "idr": ("points", "directions", "normals"),
    "no_view_dir": ("points", "normals"),
    "no_normal": ("points", "directions"),
}


class RayNormalColoringNetwork(Configurable, torch.nn.Module):
    """MLP([point, view direction, normal, feature vector]) -> colour in (0, 1).

    ReLU hidden layers; the output is (tanh + 1) / 2 (IDR's tanh, shifted to our [0, 1] images).
    mode "no_view_dir" / "no_normal" drop the direction / the normal from the input.
    """

    feature_vector_size: int = 3  # channels of the SDF network's feature vector (set by the renderer)
    mode: str = choice_field("idr", MODE_INPUTS)  # "idr", "no_view_dir" or "no_normal": which geometric inputs are read
    d_in: int = 9  # channels of the geometric inputs (9 for "idr", 6 for the others)
    d_out: int = 3  # channels of the colour
    dims: Tuple[int, ...] = (512,) * 4  # widths of the hidden layers
    weight_norm: bool = True  # weight-normalise every linear layer
    n_harmonic_functions_dir: int = 0  # frequencies of the view-direction embedding (0: the direction only)
    pooled_feature_dim: int = 0  # view-pooled feature input; only 0 is supported (the renderer has no pooling)

    def __post_init__(self) -> None:
        check_choices(self)
        expected = 3 * len(MODE_INPUTS[self.mode])
        if self.d_in != expected:
            raise ValueError(f"RayNormalColoringNetwork.d_in={self.d_in}: mode {self.mode!r} reads {expected} channels")
        if self.pooled_feature_dim != 0:
            raise ValueError(
                f"RayNormalColoringNetwork.pooled_feature_dim={self.pooled_feature_dim}: only 0 is supported "
                "(SignedDistanceFunctionRenderer passes no pooled features)"
            )
        self.direction_embedding = HarmonicEmbedding(self.n_harmonic_functions_dir, append_input=True)
        extra_dir = self.direction_embedding.get_output_dim(3) - 3 if "directions" in MODE_INPUTS[self.mode] else 0
        widths = [self.d_in + extra_dir + self.feature_vector_size, *self.dims, self.d_out]
        layers = []
        for dim_in, dim_out in zip(widths[:-1], widths[1:]):
            layer = torch.nn.Linear(dim_in, dim_out)
            layers.append(torch.nn.utils.parametrizations.weight_norm(layer) if self.weight_norm else layer)
        self.layers = torch.nn.ModuleList(layers)

    def forward(
        self, points: torch.Tensor, directions: torch.Tensor, normals: torch.Tensor, feature_vectors: torch.Tensor
    ) -> torch.Tensor:
        """Colours (..., d_out) of surface points (..., 3) seen along unit directions (..., 3)
        with normals (..., 3) and feature vectors (..., feature_vector_size)."""
        inputs = {"points": points, "directions": self.direction_embedding(directions), "normals": normals}
        x = torch.cat([inputs[name] for name in MODE_INPUTS[self.mode]] + [feature_vectors], dim=-1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return 0.5 * (torch.tanh(x) + 1.0)
