"""SRNPixelGenerator: the colour and opacity of a ray from the features at the point the LSTM reached."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from recon_trainer.config import Configurable
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.mlp import MLPWithInputSkips
from recon_trainer.models.radiance_head import RadianceHead


class SRNPixelGenerator(Configurable, torch.nn.Module):
    """features -> MLP (n_layers + 2 ReLU layers) -> density logit and colour (RadianceHead).

    The colour also reads the harmonic embedding of the ray direction; densities are raw logits
    (LSTMRenderer turns them into opacities with a sigmoid).
    """

    n_harmonic_functions: int = 4  # frequencies of the ray-direction embedding (0: the raw direction only)
    n_hidden_units: int = 256  # width of the feature MLP
    n_hidden_units_color: int = 128  # width of the colour MLP's hidden layer
    n_layers: int = 2  # hidden layers of the feature MLP between its input and output layer
    in_features: int = 256  # channels of the raymarch features (the raymarch function's out_features)
    out_features: int = 3  # channels of the output colour
    ray_dir_in_camera_coords: bool = False  # embed directions in the target camera's view frame

    def __post_init__(self) -> None:
        self.mlp = MLPWithInputSkips(
            n_layers=self.n_layers + 2,
            input_dim=self.in_features,
            output_dim=self.n_hidden_units,
            skip_dim=0,
            hidden_dim=self.n_hidden_units,
        )
        self.head = RadianceHead(
            feature_dim=self.n_hidden_units,
            n_harmonic_functions_dir=self.n_harmonic_functions,
            n_hidden_neurons_dir=self.n_hidden_units_color,
            color_dim=self.out_features,
        )

    def forward(
        self, raymarch_features: torch.Tensor, directions: torch.Tensor, camera: Optional[PerspectiveCameras] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """raymarch_features (T, ..., P, in_features), world ray directions (T, ..., 3) ->
        density logits (T, ..., P, 1) and colours (T, ..., P, out_features) in (0, 1)."""
        if raymarch_features.shape[-1] != self.in_features:
            raise ValueError(
                f"SRNPixelGenerator: got raymarch features with {raymarch_features.shape[-1]} channels, "
                f"in_features is {self.in_features}"
            )
        if self.ray_dir_in_camera_coords:
            if camera is None:
                raise ValueError("SRNPixelGenerator: ray_dir_in_camera_coords=True needs the target cameras")
            directions = camera.directions_to_view(directions)
        features = self.mlp(raymarch_features, raymarch_features)
        return self.head(features, directions)
