"""The implicit-function protocol: densities and features at the points of a RayBundle."""
import abc
import dataclasses
from typing import Any, Dict

import torch

from recon_trainer.config import ReplaceableBase
from recon_trainer.data.cameras import PerspectiveCameras

from .ray_bundle import RayBundle


@dataclasses.dataclass(frozen=True)
class ParentDimensions:
    """What the model that owns an implicit function knows about its inputs and outputs."""

    view_feature_dim: int = 0  # channels of the view-pooled source features per point (0: no view pooling)
    global_code_dim: int = 0  # channels of the global code per target view (0: no global encoder)
    feature_dim: int = 3  # channels the renderer expects as features (the model's render_features_dimensions)


class ImplicitFunctionBase(ReplaceableBase, torch.nn.Module):
    """A field evaluated at the points `ray_bundle.ray_points()` (B, ..., P, 3).

    forward returns (densities (B, ..., P, 1), features (B, ..., P, C), aux dict).

    The owning model sets some of the fields from its own (`fields_set_by_parent`); they are
    hidden from the implementation's config.
    """

    @classmethod
    def fields_set_by_parent(cls, dims: ParentDimensions) -> Dict[str, Any]:
        """{field: value} the owning model sets; the default covers an implementation reading one
        latent code per point (view-pooled features and global code concatenated: `latent_dim`)
        and producing `color_dim` feature channels. Keys an implementation does not declare are
        ignored, so override only to map the dimensions differently."""
        return {"latent_dim": dims.view_feature_dim + dims.global_code_dim, "color_dim": dims.feature_dim}

    @abc.abstractmethod
    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        fun_viewpool: Any | None = None,
        camera: PerspectiveCameras | None = None,
        global_code: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Implemented by each subclass."""

    @staticmethod
    def allows_multiple_passes() -> bool:
        """Whether a model may build several copies of this function (coarse and fine passes)."""
        return False


def broadcast_code(code: torch.Tensor, leading_shape: tuple[int, ...]) -> torch.Tensor:
    """One code per target view (T, D) repeated over the points: (*leading_shape, D), leading_shape[0] = T."""
    shape = (code.shape[0],) + (1,) * (len(leading_shape) - 1) + (code.shape[-1],)
    return code.reshape(shape).expand(*leading_shape, code.shape[-1])


def check_latent_dim(latent: list[torch.Tensor], expected: int, owner: str, source: str) -> None:
    """Raise when the channels of the latent codes (..., D_i) do not add up to the configured latent_dim.

    source says where the codes come from, e.g. "(view pooling + global code)".
    """
    n_latent = sum(code.shape[-1] for code in latent)
    if n_latent != expected:
        raise ValueError(f"{owner}: got {n_latent} latent channels {source}, latent_dim is {expected}")
