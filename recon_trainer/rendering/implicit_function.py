"""The implicit-function protocol: densities and features at the points of a RayBundle."""
import abc
from typing import Any

import torch

from recon_trainer.config import ReplaceableBase
from recon_trainer.data.cameras import PerspectiveCameras

from .ray_bundle import RayBundle


class ImplicitFunctionBase(ReplaceableBase, torch.nn.Module):
    """A field evaluated at the points `ray_bundle.ray_points()` (B, ..., P, 3).

    forward returns (densities (B, ..., P, 1), features (B, ..., P, C), aux dict).
    """

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
