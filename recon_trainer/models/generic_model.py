"""GenericModel: NeRF-style novel-view synthesis with one implicit function per rendering pass."""

from __future__ import annotations

from typing import List, Optional

import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.models.feature_extractor import FeatureExtractorBase
from recon_trainer.models.implicit_rendering_model import ImplicitRenderingModel


@registry.register
class GenericModel(ImplicitRenderingModel):
    """Raysampler + `num_passes` copies of the implicit function (coarse to fine) + renderer.

    Pass i > 0 importance-samples its points from pass i - 1 (MultiPassEmissionAbsorptionRenderer),
    so num_passes = 2 is NeRF's coarse and fine networks. The losses of the last pass are
    "loss_<name>", those of the pass before it "loss_prev_stage_<name>". See
    ImplicitRenderingModel for the batch, the outputs and the shared fields.
    """

    num_passes: int = 1  # rendering passes, each with its own implicit function
    image_feature_extractor: Optional[FeatureExtractorBase]
    image_feature_extractor_class_type: Optional[str] = None  # source-view features (needs a view pooler)

    def _build_implicit_functions(self) -> None:
        if self.image_feature_extractor is not None:
            raise ConfigError(
                "GenericModel.image_feature_extractor_class_type="
                f"{self.image_feature_extractor_class_type!r}: image features need a view pooler, which "
                "GenericModel does not have yet; set it to null"
            )
        if self.num_passes < 1:
            raise ConfigError(f"GenericModel.num_passes={self.num_passes}: expected a positive integer")
        values = self._implicit_function_parent_values()
        functions = [self._build_member("implicit_function", self.implicit_function_class_type, **values)]
        if self.num_passes > 1 and not type(functions[0]).allows_multiple_passes():
            raise ConfigError(
                f"GenericModel.num_passes={self.num_passes}: {self.implicit_function_class_type} does not allow "
                "multiple passes; use num_passes=1"
            )
        functions += [
            self._build_member("implicit_function", self.implicit_function_class_type, **values)
            for _ in range(self.num_passes - 1)
        ]
        self._implicit_functions = torch.nn.ModuleList(functions)

    def _implicit_functions_per_pass(self) -> List[torch.nn.Module]:
        return list(self._implicit_functions)
