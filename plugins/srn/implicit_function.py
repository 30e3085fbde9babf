"""SRN's implicit functions: a raymarch function (features at points) and a pixel generator (colours).

Both are called by LSTMRenderer in two modes through the ImplicitFunctionBase interface:
  raymarch_features=None: (None, features (T, ..., P, F), {}) the raymarch features at
      ray_bundle.ray_points(), which the LSTM reads to step each ray;
  raymarch_features=(T, ..., P, F): (density logits (T, ..., P, 1), colours (T, ..., P, C), {})
      from the pixel generator, for the features at the ray's final point.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from recon_trainer.config import registry, remove_keys, run_auto_creation
from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.rendering.implicit_function import ImplicitFunctionBase, ParentDimensions
from recon_trainer.rendering.ray_bundle import RayBundle

from .pixel_generator import SRNPixelGenerator
from .raymarch_function import SRNRaymarchFunction, SRNRaymarchHyperNet, ViewPool


def _check_feature_channels(owner: str, member: str, out_features: int, in_features: int) -> None:
    if out_features != in_features:
        raise ValueError(
            f"{owner}: {member}_args.out_features={out_features} must equal "
            f"pixel_generator_args.in_features={in_features} (the pixel generator reads the raymarch features)"
        )


@registry.register
class SRNImplicitFunction(ImplicitFunctionBase):
    """SRN with one raymarch MLP for every scene, conditioned on latent codes.

    The latent code of a point is [view-pooled source features (T, ..., D_v), global code (T, D_g)]
    concatenated to the point embedding; latent_dim = D_v + D_g is set by the parent model.
    See the module docstring for the two call modes.
    """

    latent_dim: int = 0  # channels of the latent code per point (set by the parent model)
    raymarch_function: SRNRaymarchFunction
    pixel_generator: SRNPixelGenerator

    @classmethod
    def raymarch_function_tweak_args(cls, member_type: type, args: Any) -> None:
        remove_keys(args, ("latent_dim",))

    def create_raymarch_function(self) -> None:
        self.raymarch_function = SRNRaymarchFunction(**self.raymarch_function_args, latent_dim=self.latent_dim)

    def __post_init__(self) -> None:
        run_auto_creation(self)
        _check_feature_channels(
            type(self).__name__,
            "raymarch_function",
            self.raymarch_function.out_features,
            self.pixel_generator.in_features,
        )

    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        fun_viewpool: Optional[ViewPool] = None,
        camera: Optional[PerspectiveCameras] = None,
        global_code: Optional[torch.Tensor] = None,
        raymarch_features: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> Tuple[Optional[torch.Tensor], torch.Tensor, Dict[str, Any]]:
        """Raymarch features, or density logits and colours when raymarch_features is given (module docstring)."""
        if raymarch_features is not None:
            densities, colors = self.pixel_generator(raymarch_features, ray_bundle.directions, camera)
            return densities, colors, {}
        return None, self.raymarch_function(ray_bundle, fun_viewpool, camera, global_code), {}


@registry.register
class SRNHyperNetImplicitFunction(ImplicitFunctionBase):
    """SRN with per-view raymarch MLPs whose weights a hypernetwork generates from the global code.

    latent_dim_hypernet (the global code's channels) and latent_dim (view-pooled channels per
    point, concatenated to the point embedding) are set by the parent model. See the module
    docstring for the two call modes.
    """

    latent_dim_hypernet: int = 0  # channels of the global code (set by the parent model)
    latent_dim: int = 0  # channels of the view-pooled features per point (set by the parent model)
    hypernet: SRNRaymarchHyperNet
    pixel_generator: SRNPixelGenerator

    @classmethod
    def fields_set_by_parent(cls, dims: ParentDimensions) -> Dict[str, Any]:
        """The hypernetwork reads the global code itself; the per-point latent is the view-pooled part."""
        return {"latent_dim": dims.view_feature_dim, "latent_dim_hypernet": dims.global_code_dim}

    @classmethod
    def hypernet_tweak_args(cls, member_type: type, args: Any) -> None:
        remove_keys(args, ("latent_dim", "latent_dim_hypernet"))

    def create_hypernet(self) -> None:
        self.hypernet = SRNRaymarchHyperNet(
            **self.hypernet_args, latent_dim=self.latent_dim, latent_dim_hypernet=self.latent_dim_hypernet
        )

    def __post_init__(self) -> None:
        run_auto_creation(self)
        _check_feature_channels(
            type(self).__name__, "hypernet", self.hypernet.out_features, self.pixel_generator.in_features
        )

    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        fun_viewpool: Optional[ViewPool] = None,
        camera: Optional[PerspectiveCameras] = None,
        global_code: Optional[torch.Tensor] = None,
        raymarch_features: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> Tuple[Optional[torch.Tensor], torch.Tensor, Dict[str, Any]]:
        """Raymarch features, or density logits and colours when raymarch_features is given (module docstring)."""
        if raymarch_features is not None:
            densities, colors = self.pixel_generator(raymarch_features, ray_bundle.directions, camera)
            return densities, colors, {}
        return None, self.hypernet(ray_bundle, fun_viewpool, camera, global_code), {}
