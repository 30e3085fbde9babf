"""RadianceHead: NeRF's density and view-dependent colour from per-point features and ray directions."""

from __future__ import annotations

from typing import Tuple

import torch

from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding


class RadianceHead(torch.nn.Module):
    """raw density = linear(f); colour = sigmoid(MLP([linear(f), embed(normalised direction)])).

    The density is raw (any sign): the raymarcher adds its training noise and then clamps at 0
    (`density_relu`), so noise can still reach points whose raw density went negative.

    feature_dim: channels F of the per-point features f (the output of an xyz encoder).
    n_harmonic_functions_dir: frequencies of the direction embedding.
    n_hidden_neurons_dir: width of the colour MLP's hidden layer.
    color_dim: channels of the output colour.
    """

    def __init__(
        self, feature_dim: int, n_harmonic_functions_dir: int, n_hidden_neurons_dir: int, color_dim: int
    ) -> None:
        super().__init__()
        self.direction_embedding = HarmonicEmbedding(n_harmonic_functions_dir, append_input=True)
        direction_dim = self.direction_embedding.get_output_dim(3)
        self.density_layer = torch.nn.Linear(feature_dim, 1)
        torch.nn.init.zeros_(self.density_layer.bias)
        self.intermediate_layer = torch.nn.Linear(feature_dim, feature_dim)
        # The colour MLP's first layer reads [intermediate features, direction embedding]; it is
        # split in two so the per-ray direction term is computed once per ray, not per point.
        self.color_feature_layer = torch.nn.Linear(feature_dim, n_hidden_neurons_dir)
        self.color_direction_layer = torch.nn.Linear(direction_dim, n_hidden_neurons_dir, bias=False)
        self.color_output_layer = torch.nn.Linear(n_hidden_neurons_dir, color_dim)

    def forward(self, features: torch.Tensor, directions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """features (B, ..., P, F), directions (B, ..., 3) (any length) ->
        raw densities (B, ..., P, 1) and colours (B, ..., P, color_dim) in (0, 1)."""
        densities = self.density_layer(features)
        unit_directions = torch.nn.functional.normalize(directions, dim=-1)
        direction_term = self.color_direction_layer(self.direction_embedding(unit_directions))
        hidden = self.color_feature_layer(self.intermediate_layer(features)) + direction_term[..., None, :]
        colors = torch.sigmoid(self.color_output_layer(torch.relu(hidden)))
        return densities, colors
