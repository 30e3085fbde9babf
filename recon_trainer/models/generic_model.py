"""GenericModel: NeRF-style novel-view synthesis with one implicit function per rendering pass."""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.frame_data import FrameData
from recon_trainer.models.feature_extractor import FeatureExtractorBase
from recon_trainer.models.implicit_rendering_model import ImplicitRenderingModel
from recon_trainer.models.view_pooling.view_pooler import ViewPooler


@registry.register
class GenericModel(ImplicitRenderingModel):
    """Raysampler + `num_passes` copies of the implicit function (coarse to fine) + renderer.

    Pass i > 0 importance-samples its points from pass i - 1 (MultiPassEmissionAbsorptionRenderer),
    so num_passes = 2 is NeRF's coarse and fine networks. The losses of the last pass are
    "loss_<name>", those of the pass before it "loss_prev_stage_<name>". See
    ImplicitRenderingModel for the batch, the outputs and the shared fields.

    View pooling (image_feature_extractor + view_pooler_enabled): every frame of the batch is a
    source view; the extractor runs on the B (masked) source images and `fun_viewpool(points
    (B_t, *S, 3))` pools their features at the targets' points: (B_t, *S, D) for reducing
    aggregators, (B_t, *S, B, D) for identity ones. Target t is source t (excluded by default).
    """

    num_passes: int = 1  # rendering passes, each with its own implicit function
    image_feature_extractor: Optional[FeatureExtractorBase]
    image_feature_extractor_class_type: Optional[str] = None  # source-view features (needs view_pooler_enabled)
    view_pooler_enabled: bool = False  # pool source-view features at the points (needs a feature extractor)
    view_pooler: Optional[ViewPooler]

    def _check_fields(self) -> None:
        super()._check_fields()
        if self.num_passes < 1:
            raise ConfigError(f"GenericModel.num_passes={self.num_passes}: expected a positive integer")
        has_extractor = self.image_feature_extractor_class_type is not None
        if self.view_pooler_enabled and not has_extractor:
            raise ConfigError(
                "GenericModel.view_pooler_enabled=True needs image features: set image_feature_extractor_class_type "
                "(e.g. ResNetFeatureExtractor)"
            )
        if has_extractor and not self.view_pooler_enabled:
            raise ConfigError(
                f"GenericModel.image_feature_extractor_class_type={self.image_feature_extractor_class_type!r}: "
                "image features need a view pooler; set view_pooler_enabled=true or the extractor to null"
            )

    def _build_implicit_functions(self) -> None:
        functions = [self._build_implicit_function("implicit_function", self.implicit_function_class_type)]
        if self.num_passes > 1 and not type(functions[0]).allows_multiple_passes():
            raise ConfigError(
                f"GenericModel.num_passes={self.num_passes}: {self.implicit_function_class_type} does not allow "
                "multiple passes; use num_passes=1"
            )
        functions += [
            self._build_implicit_function("implicit_function", self.implicit_function_class_type)
            for _ in range(self.num_passes - 1)
        ]
        self._implicit_functions = torch.nn.ModuleList(functions)

    def _implicit_functions_per_pass(self) -> List[torch.nn.Module]:
        return list(self._implicit_functions)

    def _latent_dims(self) -> Tuple[int, int]:
        _, global_dim = super()._latent_dims()
        if self.view_pooler is None:
            return 0, global_dim
        return self.view_pooler.get_aggregated_feature_dim(self.image_feature_extractor.get_feat_dims()), global_dim

    def _view_pool_function(
        self, batch: FrameData, n_targets: int, image_rgb: Optional[torch.Tensor]
    ) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        if self.view_pooler is None:
            return None
        if image_rgb is None:
            raise ValueError("GenericModel.forward: view pooling needs the source images (image_rgb) in the batch")
        masks = batch.fg_probability
        feats = self.image_feature_extractor(image_rgb, masks)
        camera, view_pooler = batch.camera, self.view_pooler

        def fun_viewpool(points: torch.Tensor) -> torch.Tensor:
            """World points (B_t, *S, 3) -> pooled features (B_t, *S, D) or (B_t, *S, B, D)."""
            if points.shape[0] != n_targets:
                raise ValueError(f"fun_viewpool: expected points of {n_targets} targets, got {tuple(points.shape)}")
            return view_pooler(pts=points, camera=camera, feats=feats, masks=masks)

        return fun_viewpool
