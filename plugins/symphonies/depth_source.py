"""The depth Symphonies lifts image pixels into the volume with (its voxel proposal): a slot.

- DataDepth: the depth the data gives: NYU's label depth (the sensor's, `<name>.png`), or maps
  computed beforehand by any depth model (NYUv2SSC(depth_root=..., depth_suffix='_pred'), the
  usage guide's locally loaded DepthAnything maps).
- ModelDepth: a depth model trained with recon_trainer (a MiDaS or MoGe run directory, or any
  model with `predict_depth`), run on each image without gradients and never trained here.

Relative predictions become metres with `alignment`: "per_scene" uses each sample's label depth
(the guide's "depthanything1": needs the ground truth of every sample), "prior_scale" one
multiplier known in advance (its "depthanything2"), "none" takes metric depth as it is
(recon_trainer/models/depth_predictor.py, align_depth).
"""
from __future__ import annotations

import abc
from typing import List, Optional

import torch

from recon_trainer.config import ConfigError, ReplaceableBase, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.models.depth_predictor import (
    ALIGNMENT_MODES,
    DEPTH_KINDS,
    DepthPrediction,
    align_depth,
    load_depth_predictor,
)

from .batch import SSCBatch


class SSCDepthSourceBase(ReplaceableBase):
    """Gives (B, H, W) depth in metres for a batch (module doc)."""

    # none (metric as is), per_scene (scaled to each sample's label depth) or prior_scale (x prior_scale)
    alignment: str = choice_field("none", ALIGNMENT_MODES)
    prior_scale: float = 1.0  # alignment=prior_scale: metres per unit of relative depth (or scale / disparity)

    def __post_init__(self) -> None:
        check_choices(self)
        if self.prior_scale <= 0:
            raise ConfigError(f"{type(self).__name__}.prior_scale={self.prior_scale}: expected a positive number")

    @abc.abstractmethod
    def prediction(self, batch: SSCBatch) -> DepthPrediction:
        """The raw depth of the batch and its kind."""

    def reference(self, batch: SSCBatch) -> Optional[torch.Tensor]:
        """(B, H, W) label depth of the batch for per-scene alignment, or None."""
        return batch.reference_depth

    def depth(self, batch: SSCBatch) -> torch.Tensor:
        """(B, H, W) float32 metres, 0 where unknown."""
        reference = self.reference(batch) if self.alignment == "per_scene" else None
        if self.alignment == "per_scene" and reference is None:
            raise ValueError(f"{type(self).__name__}: alignment=per_scene needs the label depth of every sample; "
                             "the data gives none")
        return align_depth(self.prediction(batch), reference, self.alignment, self.prior_scale)


@registry.register
class DataDepth(SSCDepthSourceBase):
    """batch.depth: the label depth or precomputed maps (module doc)."""

    kind: str = choice_field("metric", DEPTH_KINDS)  # what the data's depth maps hold

    def prediction(self, batch: SSCBatch) -> DepthPrediction:
        if batch.depth is None:
            raise ValueError("DataDepth: the batch has no depth; give the dataset a depth (NYUv2SSC reads <name>.png "
                             "from data_root, SemanticKITTI needs depth_root) or use "
                             "depth_source_class_type=ModelDepth")
        return DepthPrediction(batch.depth.float(), self.kind)


@registry.register
class ModelDepth(SSCDepthSourceBase):
    """Depth predicted by a model trained with recon_trainer (module doc); loaded on first use."""

    path: str = ""  # its run directory (exp_dir) or one of its checkpoints

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ConfigError("ModelDepth.path is empty: expected the run directory (or checkpoint) of a depth model "
                              "trained with recon_trainer, e.g. runs/midas_redweb")
        self._predictor: List[torch.nn.Module] = []  # a list keeps it out of the owner's parameters and state dict

    def predictor(self, device: torch.device) -> torch.nn.Module:
        """The depth model on `device`, loaded once, in eval mode."""
        if not self._predictor:
            self._predictor.append(load_depth_predictor(self.path, device))
        model = self._predictor[0]
        return model.to(device)

    def prediction(self, batch: SSCBatch) -> DepthPrediction:
        model = self.predictor(batch.image.device)
        with torch.no_grad():
            return model.predict_depth(batch.image)

    def reference(self, batch: SSCBatch) -> Optional[torch.Tensor]:
        if batch.reference_depth is not None:
            return batch.reference_depth
        return batch.depth
