"""MoGeModel: monocular geometry (MoGe-1 and MoGe-2) as a recon_trainer model."""
from __future__ import annotations

import dataclasses
import random
from typing import Any, ClassVar, Dict, List, Tuple

import torch

from recon_trainer.config import ConfigError, plain, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.models.base import EvaluationMode, ModelBase
from recon_trainer.models.depth_predictor import DepthPrediction

from .batch import MoGeBatch
from .checkpoint import load_released, network_from_config
from .dinov2 import load_backbone_weights
from .geometry import intrinsics_to_fov
from .inference import infer
from .loss_config import LossConfig, check_loss_config, default_losses
from .loss_terms import LossTargets, group_terms
from .losses import LOSS_FUNCTIONS
from .released_configs import released_v1_config, released_v2_config
from .visualization import geometry_panels

VERSIONS = ("v1", "v2")
MAX_RESOLUTION_LEVEL = 9


@registry.register
class MoGeModel(ModelBase):
    """MoGe's network (a DINOv2 encoder and a point / mask [/ normal / metric-scale] head) with its
    per-label-type losses.

    forward(batch: MoGeBatch, evaluation_mode) resizes batch.image (B, 3, H, W) in [0, 1] to the
    step's token count (training: the low end of num_tokens_range for the first
    `low_resolution_training_steps` optimizer steps, then a count drawn from the range per step,
    the same on every process; evaluation: `resolution_level`) and returns the network's outputs at
    H x W: "points" (B, H, W, 3) affine-invariant (v2: up to the metric scale), "mask" (B, H, W)
    (v1 raw, v2 probability), v2 also "normal" (B, H, W, 3) and "metric_scale" (B,). In TRAINING
    mode it adds "loss_<term>" per term of `losses` (batch mean over the samples that have the
    term) and "objective": for each sample the weighted sum of its label type's terms, averaged over
    the batch as MoGe does (a sample labelled "invalid" adds 0).
    """

    version: str = choice_field("v1", VERSIONS)
    # the network's constructor arguments, MoGe's "model" block (v1: flat keys; v2: encoder/neck/heads
    # dicts); empty: the released network of `version` (released_configs.py)
    network: Dict[str, Any] = dataclasses.field(default_factory=dict)
    pretrained_path: str = ""  # a released MoGe model.pt ({model_config, model}): its architecture and weights
    backbone_weights_path: str = ""  # a DINOv2 state dict (e.g. dinov2_vitl14_pretrain.pth) for a fresh network
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory, slower)
    low_resolution_training_steps: int = 50000  # steps trained at the lowest token count (MoGe: 50000)
    # per dataset label_type: {term: {function, weight, params}} (MoGe's "loss" block; see loss_config.py);
    # empty: the released losses of `version`
    losses: Dict[str, Dict[str, Dict[str, Any]]] = dataclasses.field(default_factory=dict)
    resolution_level: int = MAX_RESOLUTION_LEVEL  # evaluation token count: 0 (lowest) .. 9 (highest of the range)
    use_gt_fov: bool = False  # evaluation with the ground-truth horizontal FOV given (MoGe's --oracle)
    num_vis_images: int = 2  # images shown by `visualize`

    IMAGE_PREDICTIONS_FOLDER: ClassVar[str] = "moge_predictions"  # recon_visualizer images_dir=...

    def __post_init__(self) -> None:
        check_choices(self)
        key = "MoGeModel"
        if not 0 <= self.resolution_level <= MAX_RESOLUTION_LEVEL:
            raise ConfigError(f"{key}.resolution_level={self.resolution_level}: expected 0..{MAX_RESOLUTION_LEVEL}")
        if self.low_resolution_training_steps < 0:
            raise ConfigError(f"{key}.low_resolution_training_steps={self.low_resolution_training_steps}: "
                              f"expected >= 0")
        losses = plain(self.losses) or default_losses(self.version)
        self._losses: LossConfig = check_loss_config(losses, LOSS_FUNCTIONS, f"{key}.losses")
        self._check_term_order()
        if self.pretrained_path:
            self.net = load_released(self.pretrained_path)
            if self.net.version != self.version:
                raise ConfigError(f"{key}.pretrained_path={self.pretrained_path!r} holds a MoGe {self.net.version} "
                                  f"model; set {key}.version={self.net.version}")
        else:
            released = released_v1_config() if self.version == "v1" else released_v2_config()
            self.net = network_from_config(self.version, plain(self.network) or released, key=f"{key}.network")
            if self.backbone_weights_path:
                load_backbone_weights(self.net.backbone, self.backbone_weights_path)
        self.net.enable_gradient_checkpointing(self.gradient_checkpointing)
        for parameter in self.net.backbone.unused_parameters(self.net.tapped_layers):
            parameter.requires_grad_(False)
        # the DINOv2 backbone learns at its own rate (MoGe: 1e-5, frozen for 1000 steps then warmed up)
        self.param_groups = {f"net.{self.net.backbone_path}": "backbone"}
        self._train_tokens = int(self.net.num_tokens_range[0])

    def _check_term_order(self) -> None:
        """The local loss needs the global scale: a global term must come before it."""
        for label, terms in self._losses.items():
            seen_global = False
            for name, term in terms.items():
                seen_global |= term["function"] == "affine_invariant_global_loss"
                if term["function"] in ("affine_invariant_local_loss", "metric_scale_loss") and not seen_global:
                    raise ConfigError(f"MoGeModel.losses.{label}.{name}: {term['function']} uses the global "
                                      f"alignment scale; put an affine_invariant_global_loss term before it")

    @property
    def term_names(self) -> Tuple[str, ...]:
        """Every loss term of every label type, in order of first appearance."""
        return tuple(dict.fromkeys(name for terms in self._losses.values() for name in terms))

    @property
    def log_vars(self) -> Tuple[str, ...]:
        return ("objective", *(f"loss_{name}" for name in self.term_names), "num_tokens")

    def num_tokens_at_level(self, level: int) -> int:
        """MoGe's infer: the token count at resolution level 0..9 over num_tokens_range."""
        low, high = self.net.num_tokens_range
        return int(low + level / MAX_RESOLUTION_LEVEL * (high - low))

    def on_train_step_start(self, global_step: int, epoch: int) -> None:
        """The step's token count: the lowest during the low-resolution phase, then drawn per step
        from num_tokens_range with a generator seeded by the step (identical on every process and
        after a resume)."""
        low, high = (int(n) for n in self.net.num_tokens_range)
        if global_step < self.low_resolution_training_steps:
            self._train_tokens = low
        else:
            self._train_tokens = random.Random(global_step).randint(low, high)

    def forward(self, batch: MoGeBatch, evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION) -> Dict[str, Any]:
        """See the class docstring."""
        training = evaluation_mode == EvaluationMode.TRAINING
        num_tokens = self._train_tokens if training else self.num_tokens_at_level(self.resolution_level)
        output = self.net(batch.image, num_tokens)
        preds: Dict[str, Any] = {key: value.float() for key, value in output.items()}
        if training:
            preds.update(self._loss_terms(batch, preds))
            preds["num_tokens"] = torch.tensor(float(num_tokens))
        return preds

    def _loss_terms(self, batch: MoGeBatch, preds: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Per-term batch means and the objective (class docstring), in float32. The samples of
        one label type go through each term together (group_terms)."""
        with torch.autocast(batch.image.device.type, enabled=False):
            targets = LossTargets.of(batch)
            zero = preds["points"].sum() * 0.0  # keeps the graph when no term applies
            totals = [zero] * len(batch)
            values: Dict[str, List[torch.Tensor]] = {name: [] for name in self.term_names}
            for label in dict.fromkeys(batch.label_type):
                terms = self._losses.get(label)
                if terms is None:
                    where = batch.dataset[batch.label_type.index(label)] if batch.dataset else "?"
                    raise ValueError(f"MoGeModel: a sample of {where} has label_type {label!r}, which "
                                     f"MoGeModel.losses does not list ({', '.join(self._losses)})")
                index = [i for i, other in enumerate(batch.label_type) if other == label]
                for name, (samples, value) in group_terms(terms, preds, targets, index).items():
                    values[name].append(value)
                    for position, i in enumerate(samples):
                        totals[i] = totals[i] + terms[name]["weight"] * value[position]
            out = {f"loss_{name}": torch.cat(parts).mean() if parts else zero.detach()
                   for name, parts in values.items()}
            out["objective"] = torch.stack(totals).mean()
        return out

    # ------------------------------------------------------------------ inference and evaluation

    def predict_geometry(self, batch: MoGeBatch) -> Dict[str, torch.Tensor]:
        """MoGe's infer_for_evaluation on the batch's images: v1 "points_scale_invariant" and
        "depth_scale_invariant", v2 "points_metric" and "depth_metric", both "intrinsics" (B, 3, 3)
        normalised and "mask" (B, H, W); with use_gt_fov the ground truth's horizontal FOV is given."""
        fov_x = None
        if self.use_gt_fov:
            fov_x = torch.rad2deg(intrinsics_to_fov(batch.intrinsics)[0])
        output = infer(self.net, batch.image, fov_x=fov_x, num_tokens=self.num_tokens_at_level(self.resolution_level),
                       apply_mask=False)
        kind = "scale_invariant" if self.net.version == "v1" else "metric"
        return {f"points_{kind}": output["points"], f"depth_{kind}": output["depth"],
                "intrinsics": output["intrinsics"], "mask": output["mask"]}

    def predict_depth(self, image_rgb: torch.Tensor) -> DepthPrediction:
        """The depth-predictor protocol (recon_trainer.models.depth_predictor): MoGe's infer on images
        (B, 3, H, W) in [0, 1] at `resolution_level` -> values (B, H, W) float32, the depth of the
        recovered camera-space points: kind "metric" (metres) when the network predicts a metric
        scale (v2 with a scale head), else "relative_depth" (v1: affine-invariant points, depth up to
        scale); valid = the predicted mask (v2 also: depth > 0), None without a mask head."""
        output = infer(self.net, image_rgb, num_tokens=self.num_tokens_at_level(self.resolution_level),
                       apply_mask=False)
        metric = getattr(self.net, "scale_head", None) is not None
        return DepthPrediction(output["depth"].float(), "metric" if metric else "relative_depth", output.get("mask"))

    def visualize(self, batch: MoGeBatch) -> Dict[str, torch.Tensor]:
        """{"geometry_<i>": (3, 2 H, 4 W)} for the first `num_vis_images` images: the image, the
        predicted depth, normals and mask on top; the ground truth's below."""
        images = {}
        for i in range(min(self.num_vis_images, len(batch))):
            item = batch.select(i)
            output = infer(self.net, item.image[0], num_tokens=self.num_tokens_at_level(self.resolution_level))
            images[f"geometry_{i}"] = geometry_panels(item, output)
        return images

    def write_image_predictions(self, image_paths: List[str], out_dir: str, device: torch.device) -> List[str]:
        """recon_visualizer images_dir=...: per image a folder with the point map, depth, mask,
        normals, FOV, a PLY point cloud and a GLB mesh (predictions.write_predictions)."""
        from .predictions import write_predictions

        return write_predictions(self.net, image_paths, out_dir, device,
                                 resolution_level=self.resolution_level)
