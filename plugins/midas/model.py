"""MidasModel: monocular relative depth (MiDaS v2.1 / DPT) as a recon_trainer model."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Tuple

import torch

from recon_trainer.config import ConfigError, registry, run_auto_creation
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.config.errors import did_you_mean
from recon_trainer.models.base import EvaluationMode, ModelBase
from recon_trainer.models.depth_predictor import DepthPrediction

from .batch import DepthBatch
from .decoder import DECODER_VARIANTS, MidasDecoder
from .depth_maps import write_depth_maps
from .encoders import MidasEncoderBase
from .input_transform import RESIZE_METHODS, SIZE_MULTIPLE, normalize_image, resize_image, target_size
from .losses import midas_loss

LOSS_NAMES = ("loss_ssi", "loss_grad")
LOSS_VARIANTS = ("trimmed", "lsq")


def _default_loss_weights() -> Dict[str, float]:
    return {"loss_ssi": 1.0, "loss_grad": 0.5}


@registry.register
class MidasModel(ModelBase):
    """Encoder (slot) + MiDaS fusion decoder, predicting relative inverse depth.

    The decoder is MidasNet's (v2.1) or DPT's (`decoder_variant`, decoder.py). `pretrained_path`
    loads one of MiDaS's released checkpoints (released.py: v2.1 large, DPT-Large) into a model
    configured with its architecture (midas_redweb; +preset=dpt_large).

    forward(batch, evaluation_mode): batch.image_rgb (B, 3, H, W) in [0, 1], any H, W. The image is
    resized (aspect ratio kept, sides multiples of 32, see input_transform.target_size) with
    `resize_method`, or with `resize_method_by_dataset[name]` where `name` is the first item's
    batch.dataset[0] (one resize per batch: a batch mixing datasets follows its first item),
    normalised with the encoder's mean and std, and the prediction is resized back.
    In training with resize_in_training=False the image is used as it is (its sides must be
    multiples of 32, as training crops are).

    Returns {"disparity": (B, 1, H, W) >= 0, float32 also under autocast: relative inverse depth up
    to scale and shift}; in TRAINING mode also "loss_ssi", "loss_grad" (losses.midas_loss, in
    float32, against batch.disparity_map on batch.depth_mask > 0.5, every pixel when depth_mask is
    None) and "objective" = Σ loss_weights[k] · preds[k].
    """

    encoder: MidasEncoderBase
    encoder_class_type: str = "ResNetEncoder"
    features: int = 256  # channels of the decoder (MiDaS: 256; tiny CPU models: 32)
    # fusion decoder: midas_v21 (MidasNet), dpt (DPT), auto: the encoder's own (dpt for ViTEncoder)
    decoder_variant: str = choice_field("auto", ("auto",) + DECODER_VARIANTS)
    net_size: int = 384  # the side length the input is resized towards (pixels)
    # upper_bound (fit inside net_size), lower_bound (cover it) or minimal
    resize_method: str = choice_field("upper_bound", RESIZE_METHODS)
    # per-dataset resize method (dataset label -> method)
    resize_method_by_dataset: Dict[str, str] = choice_field({"KITTI": "lower_bound"}, RESIZE_METHODS)
    resize_in_training: bool = False  # resize training images too (False: feed them as they are, multiples of 32)
    # scale-and-shift-invariant term: trimmed (ssitrim, the paper's) or lsq (ssimse)
    loss_variant: str = choice_field("trimmed", LOSS_VARIANTS)
    trim_fraction: float = 0.2  # trimmed variant: share of the largest residuals left out of the loss
    gradient_scales: int = 4  # scales of the gradient-matching term (resolution halved per scale)
    loss_weights: Dict[str, float] = dataclasses.field(  # objective = Σ weight · loss over loss_ssi, loss_grad
        default_factory=_default_loss_weights
    )
    # a released MiDaS checkpoint (midas_v21_384.pt, dpt_large_384.pt) whose weights replace the initialisation
    pretrained_path: str = ""

    param_groups = {"encoder": "encoder"}  # the (pretrained) encoder gets its own learning rate

    def __post_init__(self) -> None:
        self._check_fields()
        run_auto_creation(self)
        variant = self.encoder.decoder_variant() if self.decoder_variant == "auto" else self.decoder_variant
        self.decoder = MidasDecoder(self.encoder.stage_channels(), self.features, variant)
        if self.pretrained_path:
            from .released import load_released_checkpoint

            load_released_checkpoint(self, self.pretrained_path)

    def _check_fields(self) -> None:
        check_choices(self)
        encoder_args = getattr(self, f"encoder_{self.encoder_class_type}_args", None) or {}
        if self.pretrained_path and encoder_args.get("weights_path"):
            raise ConfigError(
                f"MidasModel.pretrained_path={self.pretrained_path!r} and encoder_{self.encoder_class_type}_args."
                f"weights_path={encoder_args['weights_path']!r} are both set; expected one (the checkpoint holds the "
                f"encoder too)"
            )
        if not 0.0 <= self.trim_fraction < 1.0:
            raise ConfigError(f"MidasModel.trim_fraction={self.trim_fraction}: expected 0 <= value < 1")
        for key in ("features", "net_size", "gradient_scales"):
            if getattr(self, key) < 1:
                raise ConfigError(f"MidasModel.{key}={getattr(self, key)}: expected a positive integer")
        for key in self.loss_weights:
            if key not in LOSS_NAMES:
                raise ConfigError(
                    f"MidasModel.loss_weights has the key {key!r}, which the model never produces"
                    f"{did_you_mean(key, LOSS_NAMES) or ';'} known keys: {', '.join(LOSS_NAMES)}"
                )

    @property
    def log_vars(self) -> Tuple[str, ...]:
        return ("objective", *LOSS_NAMES)

    IMAGE_PREDICTIONS_FOLDER: ClassVar[str] = "depth_maps"  # recon_visualizer images_dir=...: exp_dir/<this>

    def write_image_predictions(self, image_paths: List[str], out_dir: str, device: torch.device) -> List[str]:
        """recon_visualizer images_dir=...: a coloured depth map (PNG) and the raw disparity (.npy)
        per image into out_dir; returns the PNG paths."""
        return write_depth_maps(self, image_paths, out_dir, device)

    @torch.no_grad()
    def predict_depth(self, image_rgb: torch.Tensor) -> DepthPrediction:
        """The depth-predictor protocol (recon_trainer.models.depth_predictor): images (B, 3, H, W) in
        [0, 1] -> kind "disparity", values (B, H, W) float32 >= 0, relative inverse depth up to scale
        and shift, predicted as in evaluation (resized with `resize_method`)."""
        disparity = self.forward(DepthBatch(image_rgb=image_rgb), evaluation_mode=EvaluationMode.EVALUATION)
        return DepthPrediction(disparity["disparity"][:, 0].float(), "disparity")

    def resize_method_for(self, batch: DepthBatch) -> str:
        """The resize method of the batch: the override for its first item's dataset, if any."""
        if batch.dataset and batch.dataset[0] in self.resize_method_by_dataset:
            return self.resize_method_by_dataset[batch.dataset[0]]
        return self.resize_method

    def forward(self, batch: DepthBatch, evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION) -> Dict[str, Any]:
        """See the class docstring."""
        image = batch.image_rgb
        if image is None:
            raise ValueError("MidasModel.forward: the batch has no image_rgb")
        training = evaluation_mode == EvaluationMode.TRAINING
        if training and batch.disparity_map is None:
            raise ValueError("MidasModel.forward: training needs disparity_map in the batch (the target)")
        height, width = image.shape[-2:]
        if training and not self.resize_in_training:
            if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
                raise ValueError(
                    f"MidasModel.forward: training image of {height} x {width} pixels, expected sides that are "
                    f"multiples of {SIZE_MULTIPLE} (set the training crop so, or resize_in_training=True)"
                )
            net_input = image
        else:
            net_input = resize_image(image, target_size(height, width, self.net_size, self.resize_method_for(batch)))
        mean, std = self.encoder.normalization()
        disparity = self.decoder(self.encoder(normalize_image(net_input, mean, std))).float()  # fp32 under autocast
        preds: Dict[str, Any] = {"disparity": resize_image(disparity, (height, width))}
        if training:
            preds.update(self._losses(batch, preds["disparity"]))
        return preds

    def visualize(self, batch: DepthBatch) -> Dict[str, torch.Tensor]:
        """{"disparity": (3, H, 2 W or 3 W) in [0, 1]}: the first image beside its predicted
        disparity and, when the batch has one, the target disparity_map (coloured: near is warm,
        each map its own range; the target black where depth_mask is 0)."""
        from recon_trainer.visualization.video import colorize_depth

        if batch.image_rgb is None:
            return {}
        disparity = self.forward(batch, evaluation_mode=EvaluationMode.EVALUATION)["disparity"][:1]
        # colorize_depth colours small values warm: negated disparity orders the pixels near to far
        panels = [batch.image_rgb[:1].detach().float().cpu().clamp(0, 1), colorize_depth(-disparity.detach().cpu())]
        if batch.disparity_map is not None:
            mask = None if batch.depth_mask is None else batch.depth_mask[:1].float().cpu()
            panels.append(colorize_depth(-batch.disparity_map[:1].float().cpu(), mask))
        return {"disparity": torch.cat(panels, dim=-1)[0]}

    def _losses(self, batch: DepthBatch, disparity: torch.Tensor) -> Dict[str, torch.Tensor]:
        """loss_ssi, loss_grad and objective of the prediction (B, 1, H, W) against the batch's target."""
        target = batch.disparity_map
        mask = torch.ones_like(target, dtype=torch.bool) if batch.depth_mask is None else batch.depth_mask > 0.5
        grad_weight = self.loss_weights.get("loss_grad", 0.0)
        with torch.autocast(disparity.device.type, enabled=False):  # medians, sorts and 2x2 solves in float32
            losses = midas_loss(
                disparity,
                target.to(disparity.dtype),
                mask,
                variant=self.loss_variant,
                trim=self.trim_fraction,
                alpha=grad_weight,  # 0 skips the gradient term (then reported as 0)
                scales=self.gradient_scales,
            )
        preds = {name: losses[name] for name in LOSS_NAMES}
        weighted = [self.loss_weights.get(name, 0.0) * preds[name] for name in LOSS_NAMES]
        preds["objective"] = sum(weighted, disparity.new_zeros(()))
        return preds
