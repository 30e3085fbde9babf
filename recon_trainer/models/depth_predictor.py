"""Depth predictors: a protocol any model may implement, loading one from a run, metric alignment.

A model that predicts depth from a single image implements

    predict_depth(image_rgb (B, 3, H, W) in [0, 1]) -> DepthPrediction(values (B, H, W), kind)

without gradients, in eval mode. `kind` says what the values are:

- "metric": depth in metres;
- "relative_depth": depth up to an unknown scale (positive, larger is farther);
- "disparity": inverse depth up to an unknown scale and shift (larger is nearer).

`load_depth_predictor` rebuilds such a model from a run of this framework (its exp_dir, or one of
its checkpoints) through the registry, as the run built it; `align_depth` turns a prediction into
metres. Other methods use these to take depth from a depth model trained here (e.g. to lift image
pixels into a volume), never naming the model's plugin.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional, Protocol, Union, runtime_checkable

import torch

from recon_trainer.config import ConfigError

DEPTH_KINDS = ("metric", "relative_depth", "disparity")
# none: metric depth as it is; per_scene: fitted to each image's reference depth; prior_scale: one known factor
ALIGNMENT_MODES = ("none", "per_scene", "prior_scale")


@dataclasses.dataclass
class DepthPrediction:
    """A depth model's output for B images.

    values: (B, H, W) float32, in the units `kind` says (module doc).
    kind: one of DEPTH_KINDS.
    valid: (B, H, W) bool where the model trusts its values (e.g. a predicted foreground mask), or
        None when every pixel is valid.
    """

    values: torch.Tensor
    kind: str
    valid: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"DepthPrediction.kind={self.kind!r}: expected one of {', '.join(DEPTH_KINDS)}")
        if self.values.dim() != 3:
            raise ValueError(f"DepthPrediction.values has shape {tuple(self.values.shape)}: expected (B, H, W)")
        if self.valid is not None and self.valid.shape != self.values.shape:
            raise ValueError(f"DepthPrediction.valid has shape {tuple(self.valid.shape)}: expected "
                             f"{tuple(self.values.shape)}, that of the values")


@runtime_checkable
class DepthPredictor(Protocol):
    """A model that predicts depth from images (module doc)."""

    def predict_depth(self, image_rgb: torch.Tensor) -> DepthPrediction:
        """image_rgb (B, 3, H, W) in [0, 1] -> DepthPrediction with values (B, H, W)."""


# ---------------------------------------------------------------------------------------- alignment


def median(values: torch.Tensor) -> torch.Tensor:
    """The median of a 1-D tensor (the mean of the two middle values for an even count), float64."""
    ordered = values.double().sort().values
    n = ordered.numel()
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _usable(values: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
    usable = torch.isfinite(values)
    return usable if valid is None else usable & valid.to(device=values.device, dtype=torch.bool)


def align_depth(
    prediction: DepthPrediction,
    reference: Optional[torch.Tensor],
    mode: str,
    prior_scale: float = 1.0,
    max_depth: float = 0.0,
) -> torch.Tensor:
    """(B, H, W) float32 depth in metres from `prediction`; 0 where unknown.

    reference: (B, H, W) ground-truth depth in metres (0 or non-finite = unknown), used by
    "per_scene" only. mode:

    - "none": metric values as they are; a relative kind is refused (ConfigError).
    - "per_scene": fitted to each image's reference on the pixels where the reference is known
      and the prediction valid. relative_depth (and metric): one scale per image,
      median(reference) / median(prediction) over those pixels (the median ratio, robust to
      outliers; a least-squares scale would follow the far pixels). disparity: MiDaS's
      protocol, least-squares scale and shift in disparity space against 1 / reference
      (recon_trainer.evaluation.depth_metrics), the aligned disparity clamped at 1 / max_depth
      (max_depth <= 0: at 1 / the image's largest reference depth), then inverted.
    - "prior_scale": prior_scale x relative (or metric) depth, or prior_scale / disparity
      (disparity clamped at prior_scale / max_depth when max_depth > 0; without a cap,
      non-positive disparity is unknown).

    max_depth > 0 also caps every output depth. Unknown (0) in the output: pixels the prediction
    marks invalid, non-finite values and non-positive depths.
    """
    if mode not in ALIGNMENT_MODES:
        raise ConfigError(f"depth alignment {mode!r}: expected one of {', '.join(ALIGNMENT_MODES)}")
    values = prediction.values.float()
    kind = prediction.kind
    if mode == "none" and kind != "metric":
        up_to = "scale and shift" if kind == "disparity" else "scale"
        raise ConfigError(f"depth alignment 'none' takes the prediction as metres, but it is {kind} (known up to "
                          f"{up_to}): use 'per_scene' (fitted to each sample's ground-truth depth) or 'prior_scale' "
                          f"(one scale known in advance)")
    if mode == "prior_scale" and not (prior_scale > 0 and math.isfinite(prior_scale)):
        raise ConfigError(f"depth alignment 'prior_scale' with prior_scale={prior_scale}: expected a positive number")
    usable = _usable(values, prediction.valid)
    if mode == "none":
        depth = values
    elif mode == "prior_scale":
        depth = _prior_scale_depth(values, kind, prior_scale, max_depth)
    else:
        if reference is None:
            raise ConfigError("depth alignment 'per_scene' needs each sample's ground-truth depth, and none was given "
                              "(use 'prior_scale' with a known scale, or data with depth)")
        if reference.shape != values.shape:
            raise ValueError(f"align_depth: reference {tuple(reference.shape)} and prediction {tuple(values.shape)} "
                             f"must have the same (B, H, W)")
        depth = _per_scene_depth(values, kind, reference.to(values), usable, max_depth)
    if max_depth > 0:
        depth = depth.clamp(max=max_depth)
    known = usable & torch.isfinite(depth) & (depth > 0)
    return torch.where(known, depth, torch.zeros_like(depth))


def _prior_scale_depth(values: torch.Tensor, kind: str, prior_scale: float, max_depth: float) -> torch.Tensor:
    if kind != "disparity":
        return prior_scale * values
    if max_depth > 0:
        return prior_scale / values.clamp(min=prior_scale / max_depth)
    return torch.where(values > 0, prior_scale / values.clamp(min=torch.finfo(values.dtype).tiny), 0.0)


def _per_scene_depth(values: torch.Tensor, kind: str, reference: torch.Tensor, usable: torch.Tensor,
                     max_depth: float) -> torch.Tensor:
    from recon_trainer.evaluation.depth_metrics import aligned_depth_from_disparity

    fit = usable & torch.isfinite(reference) & (reference > 0)
    if kind != "disparity":
        fit = fit & (values > 0)
    depths = []
    for b in range(values.shape[0]):
        if not bool(fit[b].any()):
            raise ValueError(f"align_depth: image {b} of the batch has no pixel with both a known reference depth and "
                             f"a valid prediction; per_scene alignment cannot fit its scale")
        if kind == "disparity":
            finite = torch.where(torch.isfinite(values[b]), values[b], 0.0)
            depths.append(aligned_depth_from_disparity(finite, reference[b], fit[b], max_depth))
        else:
            scale = median(reference[b][fit[b]]) / median(values[b][fit[b]])
            depths.append(values[b] * scale.to(values.dtype))
    return torch.stack(depths)


# ------------------------------------------------------------------------------------------ loading


def load_depth_predictor(path: str, device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """The depth model of a recon_trainer run, ready to predict: on `device`, eval mode, no gradients.

    path: the run's exp_dir (its newest readable checkpoint is loaded) or one of its checkpoint
    files (exp_dir is the folder holding it). The model is rebuilt from exp_dir/expconfig.yaml
    (the config the run saved) by the run's model factory, found in the registry by its class
    type, and its weights are loaded from the checkpoint (weights_only); when the run evaluated
    with the moving average of its weights (an EMA with ema_for_evaluation), those are used, as
    the visualizer does. Building the model leaves the global torch random state as it was.
    A path that is not such a run, or a model without `predict_depth`, is a ConfigError naming
    the path and what was expected.
    """
    from recon_trainer.config import expand_args_fields, registry
    from recon_trainer.config.saved import load_saved_config
    from recon_trainer.experiment import Experiment
    from recon_trainer.training.checkpoints import CorruptCheckpointError, find_checkpoint, load_checkpoint
    from recon_trainer.training.ema import load_averaged_weights
    from recon_trainer.training.model_factory import ModelFactoryBase, state_dict_mismatch
    from recon_trainer.training.run_directory import EXPCONFIG_FILE

    what = f"depth predictor {path!r}"
    expected = "a recon_trainer run directory (expconfig.yaml and checkpoint_epoch_*.pth) or one of its checkpoints"
    if os.path.isdir(path):
        exp_dir, checkpoint_path = path, None
    elif os.path.isfile(path):
        exp_dir, checkpoint_path = os.path.dirname(os.path.abspath(path)), path
    else:
        raise ConfigError(f"{what}: no such file or folder; expected {expected}")
    config_path = os.path.join(exp_dir, EXPCONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ConfigError(f"{what}: {config_path} is missing; expected {expected}")
    expand_args_fields(Experiment)
    cfg = load_saved_config(config_path, Experiment)
    factory_type = cfg.model_factory_class_type
    factory_cls = registry.get(ModelFactoryBase, factory_type, slot="model_factory_class_type")
    expand_args_fields(factory_cls)
    factory_args = cfg[f"model_factory_{factory_type}_args"].copy()
    for flag in ("resume", "force_resume"):  # weights come from the chosen checkpoint below
        if flag in factory_args:
            factory_args[flag] = False
    with torch.random.fork_rng(devices=[]):
        model = factory_cls(**factory_args)(exp_dir=exp_dir)
    if not callable(getattr(model, "predict_depth", None)):
        raise ConfigError(f"{what}: the run's model {type(model).__name__} has no predict_depth(image_rgb) -> "
                          f"DepthPrediction; expected a run of a depth model")
    if checkpoint_path is None:
        checkpoint = find_checkpoint(exp_dir)
        if checkpoint is None:
            raise ConfigError(f"{what}: the run holds no checkpoint; train it first, or point at a run that saved one")
    else:
        try:
            checkpoint = load_checkpoint(checkpoint_path)
        except CorruptCheckpointError as error:
            raise ConfigError(f"{what}: not a readable recon_trainer checkpoint ({error}); "
                              f"expected {expected}") from None
    mismatch = state_dict_mismatch(model, checkpoint.model)
    if mismatch:
        raise ConfigError(f"{what}: checkpoint {checkpoint.path} does not fit the model of {config_path} ({mismatch})")
    model.load_state_dict(checkpoint.model)
    loop_args = cfg.get(f"training_loop_{cfg.training_loop_class_type}_args") or {}
    if checkpoint.ema is not None and loop_args.get("ema_for_evaluation", False):
        load_averaged_weights(model, checkpoint.ema)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model
