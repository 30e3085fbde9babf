"""The renderer protocol (BaseRenderer), its output (RendererOutput) and chunked rendering."""
from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, Tuple

import torch

from recon_trainer.config import ReplaceableBase
from recon_trainer.models.base import EvaluationMode

from .ray_bundle import RayBundle


@dataclasses.dataclass
class RendererOutput:
    """What a renderer returns for rays of shape (B, ...).

    features: (B, ..., C) rendered features (colours).
    depths: (B, ..., 1) expected ray length: the distance along the ray with the raysampler's
        unit_directions (Implicitron's default), the view-space depth without.
    masks: (B, ..., 1) opacity.
    prev_stage: the previous (coarser) pass's output, None for the first pass.
    aux: extra per-ray outputs, e.g. "weights" (B, ..., P).
    """

    features: torch.Tensor
    depths: torch.Tensor
    masks: torch.Tensor
    prev_stage: RendererOutput | None = None
    aux: dict[str, Any] = dataclasses.field(default_factory=dict)

    def reshape_rays(self, batch_size: int, n_rays: int, spatial_shape: tuple[int, ...]) -> RendererOutput:
        """Tensors of shape (B, R, ...) to (B, *spatial_shape, ...), prev_stage included.

        aux tensors are reshaped when they start with (B, R); other aux values are kept as they are.
        """

        def reshape(t: Any) -> Any:
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and tuple(t.shape[:2]) == (batch_size, n_rays):
                return t.reshape(batch_size, *spatial_shape, *t.shape[2:])
            return t

        prev = self.prev_stage
        return RendererOutput(
            features=reshape(self.features),
            depths=reshape(self.depths),
            masks=reshape(self.masks),
            prev_stage=None if prev is None else prev.reshape_rays(batch_size, n_rays, spatial_shape),
            aux={key: reshape(value) for key, value in self.aux.items()},
        )


def cat_renderer_outputs(outputs: list[RendererOutput]) -> RendererOutput:
    """Concatenate outputs of ray chunks (each (B, R_i, ...)) along the ray dimension 1.

    aux tensors are concatenated when every chunk's starts with (B, R_i); any other aux value is
    taken from the first chunk.
    """

    def per_ray(output: RendererOutput, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[:2] == output.features.shape[:2]

    first = outputs[0]
    aux = {}
    for key, value in first.aux.items():
        values = [o.aux[key] for o in outputs]
        if all(per_ray(o, v) for o, v in zip(outputs, values)):
            aux[key] = torch.cat(values, dim=1)
        else:
            aux[key] = value
    prev = None if first.prev_stage is None else cat_renderer_outputs([o.prev_stage for o in outputs])
    return RendererOutput(
        features=torch.cat([o.features for o in outputs], dim=1),
        depths=torch.cat([o.depths for o in outputs], dim=1),
        masks=torch.cat([o.masks for o in outputs], dim=1),
        prev_stage=prev,
        aux=aux,
    )


def render_in_chunks(
    render: Callable[[RayBundle], RendererOutput], ray_bundle: RayBundle, chunk_size: int
) -> RendererOutput:
    """Render a bundle of any spatial shape (e.g. a full (B, H, W) grid) a chunk of rays at a time.

    render: renders a flattened (B, r, ...) bundle (e.g. a partial of the renderer's forward).
    chunk_size: sampled points per chunk of each image, Implicitron's rule: the R rays of an
    image, with P points each in the bundle (P = 0 counts as 1), go in ceil(R * P / chunk_size)
    chunks of equal size (the last may be smaller); every chunk holds those rays of all B images.
    The output has the bundle's shape (B, ..., C).
    """
    flat = ray_bundle.flatten()
    b, n_rays = flat.origins.shape[:2]
    n_points = max(flat.lengths.shape[-1], 1)
    n_chunks = max(1, math.ceil(n_rays * n_points / chunk_size))
    per_chunk = math.ceil(n_rays / n_chunks)
    outputs = [render(flat.chunk(start, start + per_chunk)) for start in range(0, n_rays, per_chunk)]
    return cat_renderer_outputs(outputs).reshape_rays(b, n_rays, ray_bundle.spatial_shape)


LOSSES_AUX_KEY = "losses"  # RendererOutput.aux key of a renderer's own loss terms {"loss_<name>": scalar}


class BaseRenderer(ReplaceableBase, torch.nn.Module):
    """Turns rays and implicit functions into per-ray features, depths and opacities.

    `forward(*, ray_bundle, implicit_functions, evaluation_mode, **kwargs) -> RendererOutput`;
    each implicit function is called as `f(ray_bundle=...) -> (densities, features, aux)`.
    A renderer with loss terms of its own (e.g. a regulariser of the field) names them in
    LOSS_NAMES and returns their scalars in `aux[LOSSES_AUX_KEY]`; the model adds them to its
    predictions, weights them by its loss_weights and logs them.
    """

    LOSS_NAMES: ClassVar[Tuple[str, ...]] = ()  # the "loss_<name>" keys this renderer may return

    render_features_dimensions: int = 3  # channels of the rendered features (set by the parent model)
    object_bounding_sphere: float = 1.0  # radius of a sphere holding the object (set by the parent model)

    def requires_object_mask(self) -> bool:
        """Whether forward needs an `object_mask` keyword argument."""
        return False

    @abc.abstractmethod
    def forward(
        self,
        *,
        ray_bundle: RayBundle,
        implicit_functions: list[Callable],
        evaluation_mode: EvaluationMode,
        **kwargs: Any,
    ) -> RendererOutput:
        """Implemented by each subclass."""
