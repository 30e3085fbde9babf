"""LSTMRenderer: SRN's differentiable ray marcher, an LSTM that steps each ray's depth."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, List, Optional

import torch

from recon_trainer.config import registry
from recon_trainer.models.base import EvaluationMode
from recon_trainer.rendering.ray_bundle import RayBundle
from recon_trainer.rendering.renderer import BaseRenderer, RendererOutput

logger = logging.getLogger(__name__)

STEP_WEIGHT_STD = 1e-3  # initial std of the step layer's weights: every ray first moves by init_depth / steps


@registry.register
class LSTMRenderer(BaseRenderer):
    """Marches every ray from the raysampler's single depth with steps an LSTM predicts.

    At each of num_raymarch_steps steps the implicit function gives the raymarch features at the
    current point; the LSTM cell reads them and a linear layer on its hidden state gives the depth
    step (the ray bundle's length unit; it starts at init_depth / num_raymarch_steps, so untrained rays move
    init_depth in total). The pixel generator then colours the features at the final point.
    Rays need one point each (the raysampler's n_pts_per_ray_* = 1); that depth is the start.

    Output: features = colours (B, ..., C), depths = final depths (B, ..., 1), masks = sigmoid of
    the density logit at the final point (B, ..., 1). With bg_color set, colours are blended with
    it by the mask.
    """

    num_raymarch_steps: int = 10  # LSTM steps per ray
    init_depth: float = 17.0  # total depth an untrained marcher moves each ray (view-space units)
    init_depth_noise_std: float = 5e-4  # std of the noise added to the start depths in training
    hidden_size: int = 16  # channels of the LSTM state
    n_feature_channels: int = 256  # channels of the raymarch features (the raymarch function's out_features)
    bg_color: Optional[List[float]] = None  # colour blended in where the mask is low (None: no blending)
    verbose: bool = False  # log the depth range after every step

    def __post_init__(self) -> None:
        if self.num_raymarch_steps < 1:
            raise ValueError(f"LSTMRenderer.num_raymarch_steps={self.num_raymarch_steps}: expected >= 1")
        self._lstm = torch.nn.LSTMCell(input_size=self.n_feature_channels, hidden_size=self.hidden_size)
        _init_lstm(self._lstm)
        self._step_layer = torch.nn.Linear(self.hidden_size, 1)
        with torch.no_grad():
            self._step_layer.weight.normal_(0.0, STEP_WEIGHT_STD)
            self._step_layer.bias.fill_(self.init_depth / self.num_raymarch_steps)

    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        implicit_functions: list[Callable],
        evaluation_mode: EvaluationMode,
        **kwargs: Any,
    ) -> RendererOutput:
        """RendererOutput for rays (B, ..., ) with lengths (B, ..., 1); see the class docstring."""
        if len(implicit_functions) != 1:
            raise ValueError(
                f"LSTMRenderer renders one pass, got {len(implicit_functions)} implicit functions; use num_passes=1"
            )
        function = implicit_functions[0]
        lengths = ray_bundle.lengths
        if lengths.shape[-1] != 1:
            raise ValueError(
                f"LSTMRenderer needs one start depth per ray, got {lengths.shape[-1]}; set the raysampler's "
                "n_pts_per_ray_training and n_pts_per_ray_evaluation to 1"
            )
        if evaluation_mode == EvaluationMode.TRAINING and self.init_depth_noise_std > 0:
            lengths = lengths + torch.randn_like(lengths) * self.init_depth_noise_std
        state = None
        for step in range(self.num_raymarch_steps + 1):
            bundle = ray_bundle.with_lengths(lengths)
            _, features, _ = function(ray_bundle=bundle)
            self._check_channels(features)
            if step == self.num_raymarch_steps:
                break
            state = self._lstm(features.reshape(-1, features.shape[-1]), state)
            lengths = lengths + self._step_layer(state[0]).reshape(lengths.shape)
            if self.verbose:
                logger.info("LSTMRenderer step %d: depths in [%.4g, %.4g]", step, lengths.min(), lengths.max())
        densities, colors, aux = function(ray_bundle=bundle, raymarch_features=features)
        if colors.shape[-1] != self.render_features_dimensions:
            raise ValueError(
                f"LSTMRenderer: the pixel generator returned {colors.shape[-1]} colour channels, "
                f"render_features_dimensions is {self.render_features_dimensions}"
            )
        masks = torch.sigmoid(densities[..., 0, :])
        colors = colors[..., 0, :]
        if self.bg_color is not None:
            colors = masks * colors + (1.0 - masks) * self._background(colors)
        return RendererOutput(features=colors, depths=lengths, masks=masks, aux=aux)

    def _check_channels(self, features: torch.Tensor) -> None:
        if features.shape[-1] != self.n_feature_channels:
            raise ValueError(
                f"LSTMRenderer: the raymarch function returned {features.shape[-1]} feature channels, "
                f"n_feature_channels is {self.n_feature_channels}"
            )

    def _background(self, colors: torch.Tensor) -> torch.Tensor:
        background = torch.tensor(list(self.bg_color), dtype=colors.dtype, device=colors.device)
        if background.numel() not in (1, colors.shape[-1]):
            raise ValueError(
                f"LSTMRenderer.bg_color={list(self.bg_color)}: expected 1 or {colors.shape[-1]} values"
            )
        return background


def _init_lstm(lstm: torch.nn.LSTMCell) -> None:
    """Kaiming input weights, orthogonal recurrent weights, zero biases except a forget-gate bias of 1."""
    hidden = lstm.hidden_size
    with torch.no_grad():
        torch.nn.init.kaiming_normal_(lstm.weight_ih, nonlinearity="sigmoid", mode="fan_in")
        for gate in range(4):  # the four gates (input, forget, cell, output) are stacked along dim 0
            torch.nn.init.orthogonal_(lstm.weight_hh[gate * hidden : (gate + 1) * hidden])
        lstm.bias_ih.zero_()
        lstm.bias_hh.zero_()
        lstm.bias_ih[hidden : 2 * hidden].fill_(1.0)
