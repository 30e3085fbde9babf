"""OverfitModel: GenericModel for a single scene, with an optional separately configured coarse function."""

from __future__ import annotations

from typing import Any, List, Optional

import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.models.implicit_rendering_model import ImplicitRenderingModel, hide_parent_fields
from recon_trainer.rendering.implicit_function import ImplicitFunctionBase


@registry.register
class OverfitModel(ImplicitRenderingModel):
    """One or two rendering passes:
    - coarse_implicit_function_class_type set: the coarse function, then `implicit_function`;
    - share_implicit_function_across_passes: `implicit_function` renders both passes;
    - neither: a single pass with `implicit_function`.
    See ImplicitRenderingModel for the batch, the outputs and the shared fields.
    """

    share_implicit_function_across_passes: bool = False  # the fine function also renders the coarse pass
    coarse_implicit_function: Optional[ImplicitFunctionBase]
    coarse_implicit_function_class_type: Optional[str] = None  # a separate coarse-pass function, or null

    @classmethod
    def coarse_implicit_function_tweak_args(cls, member_type: type, args: Any) -> None:
        hide_parent_fields(member_type, args)

    def create_coarse_implicit_function(self) -> None:
        """No-op: `_build_implicit_functions` builds it with the fine function."""

    def _build_implicit_functions(self) -> None:
        if self.share_implicit_function_across_passes and self.coarse_implicit_function_class_type is not None:
            raise ConfigError(
                "OverfitModel: share_implicit_function_across_passes=True and coarse_implicit_function_class_type="
                f"{self.coarse_implicit_function_class_type!r} contradict each other; set one of them"
            )
        self.implicit_function = self._build_implicit_function("implicit_function", self.implicit_function_class_type)
        self.coarse_implicit_function = self._build_implicit_function(
            "coarse_implicit_function", self.coarse_implicit_function_class_type
        )

    def _implicit_functions_per_pass(self) -> List[torch.nn.Module]:
        if self.coarse_implicit_function is not None:
            return [self.coarse_implicit_function, self.implicit_function]
        if self.share_implicit_function_across_passes:
            return [self.implicit_function, self.implicit_function]
        return [self.implicit_function]
