"""Spann3RModel and DUSt3RPairModel: the networks with their losses as recon_trainer models.

Both take PointMapBatches (batch.py) and return, in TRAINING mode, "objective" and the loss terms;
both have `reconstruct(batch)` (the evaluator's and the reconstruction command's entry point):
per-frame point maps in camera-0 coordinates, their confidences and the forward's wall time.

The confidence weight alpha of the loss is a formula of the epoch (`conf_alpha`, variables epoch and
max_epochs), set before every training batch: Spann3R's alpha_c2f lowers it from 0.4 to 0.2 over the
second half of training; DUSt3R keeps 0.2.
"""
from __future__ import annotations

import abc
import dataclasses
import os
import time
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import torch

from recon_trainer.config import ConfigError, plain, registry
from recon_trainer.config.expressions import Expression
from recon_trainer.models.base import EvaluationMode, ModelBase

from .batch import PointMapBatch
from .dust3r_checkpoint import load_dust3r, read_dust3r_checkpoint
from .croco_blocks import ManyARPatchEmbed
from .dust3r_network import DUSt3RArchitecture, DUSt3RNetwork
from .losses import dust3r_pair_loss, spann3r_loss
from .predictions import SequencePredictions
from .spann3r_checkpoint import load_spann3r_checkpoint
from .spann3r_network import MemoryArchitecture, Spann3RNetwork
from .visualization import sequence_panels

# network {}: DUSt3R_ViTLarge_BaseDecoder_512_dpt (its fields that differ from DUSt3RArchitecture's defaults)
RELEASED_512_DPT = {"img_size": (512, 512), "head_type": "dpt", "patch_embed_cls": "ManyAR_PatchEmbed"}
SPANN3R_ALPHA = "0.4 - 0.2 * max((epoch - 0.5 * max_epochs) / (0.5 * max_epochs), 0)"
ALPHA_VARIABLES = ("epoch", "max_epochs")
EVALUATION = EvaluationMode.EVALUATION


@dataclasses.dataclass
class Reconstruction:
    """A model's reconstruction of a batch of B sequences of T frames.

    points: (B, T, H, W, 3) one point map per frame, camera-0 coordinates (up to scale).
    conf: (B, T, H, W) their confidences (>= 1). predictions: the network's SequencePredictions
    (both decoders of every step), as the test criterion needs them. seconds: the forward's wall time.
    order: None, or the input frames in the order they were reconstructed (offline mode, B = 1):
    points, conf and predictions then follow that order, and frame order[0] is "camera 0".
    """

    points: torch.Tensor
    conf: torch.Tensor
    predictions: SequencePredictions
    seconds: float
    order: Optional[List[int]] = None


def dust3r_architecture(network: Dict[str, Any], key: str) -> DUSt3RArchitecture:
    """DUSt3RArchitecture(**network) ({}: the released DUSt3R_ViTLarge_BaseDecoder_512_dpt's, RELEASED_512_DPT;
    fields left out of a non-empty network take DUSt3RArchitecture's defaults: ViT-L/B, linear head, 224);
    a ConfigError naming `key` on an unknown or bad field."""
    known = {f.name for f in dataclasses.fields(DUSt3RArchitecture)}
    unknown = sorted(set(network) - known)
    if unknown:
        raise ConfigError(f"{key}: unknown field(s) {unknown}; DUSt3RArchitecture has {sorted(known)}")
    values = {name: tuple(v) if isinstance(v, list) else v for name, v in (network or RELEASED_512_DPT).items()}
    try:
        return DUSt3RArchitecture(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}: {error}") from None


class PointMapModelBase(ModelBase):
    """What both models share: the DUSt3R network's architecture, the loss's alpha schedule and
    the visualisation (not registered itself)."""

    # DUSt3RArchitecture fields (widths, depths, heads, head_type, img_size, ...); {}: the released ViT-L DPT 512
    network: Dict[str, Any] = dataclasses.field(default_factory=dict)
    conf_alpha: str = "0.2"  # the confidence loss's alpha, a formula of epoch and max_epochs
    max_epochs: int = 100  # the run's length for conf_alpha (the configs set the training loop's max_epochs)
    num_vis_sequences: int = 1  # sequences shown by `visualize`

    def __post_init__(self) -> None:
        self._alpha_formula = Expression(self.conf_alpha, ALPHA_VARIABLES, f"{type(self).__name__}.conf_alpha")
        self.alpha = float(self._alpha_formula(epoch=0, max_epochs=max(1, self.max_epochs)))

    @property
    def log_vars(self) -> Tuple[str, ...]:
        return ("objective", "loss_conf", "loss_regr", "loss_scale", "alpha")

    def on_train_step_start(self, global_step: int, epoch: int) -> None:
        """alpha of this epoch (conf_alpha)."""
        self.alpha = float(self._alpha_formula(epoch=epoch, max_epochs=max(1, self.max_epochs)))

    @abc.abstractmethod
    def predict(self, images: torch.Tensor, true_shape: torch.Tensor) -> SequencePredictions:
        """The network's predictions of every step of B sequences: images (B, T, 3, H, W) in
        [-1, 1], true_shape (B, T, 2)."""

    def check_portraits(self, network: DUSt3RNetwork, images: torch.Tensor, true_shape: torch.Tensor) -> None:
        """ValueError if a view is stored transposed (a portrait in the landscape tensor: images (..., H, W) with
        true_shape (..., 2) = (W, H), as the batch stores portraits, like DUSt3R's datasets) and the network
        cannot read it so: only ManyAR_PatchEmbed with landscape_only embeds the transposed tensor as the
        portrait it is; PatchEmbedDust3R (Spann3R's, as the original's) reads it as a landscape image and the
        heads scramble the patches."""
        if isinstance(network.patch_embed, ManyARPatchEmbed) and network.arch.landscape_only:
            return
        height, width = images.shape[-2:]
        if height != width and bool(((true_shape[..., 0] == width) & (true_shape[..., 1] == height)).any()):
            raise ValueError(f"{type(self).__name__}: a portrait view (true_shape {width}x{height}) stored transposed "
                             "needs patch_embed_cls 'ManyAR_PatchEmbed' with landscape_only true; this network has "
                             f"{network.arch.patch_embed_cls!r}, landscape_only {network.arch.landscape_only} "
                             "(Spann3R's is always PatchEmbedDust3R): use a landscape or square resolution")

    def reconstruct(self, batch: PointMapBatch) -> Reconstruction:
        """The timed forward pass and one point map per frame (Reconstruction)."""
        if batch.images.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        predictions, order = self.predict_in_order(batch.images, batch.true_shape)
        if batch.images.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        points, conf = predictions.per_frame()
        return Reconstruction(points.float(), conf.float(), predictions, seconds, order)

    def predict_in_order(self, images: torch.Tensor,
                         true_shape: torch.Tensor) -> Tuple[SequencePredictions, Optional[List[int]]]:
        """`predict`, and the order the frames were taken in (None: as given)."""
        return self.predict(images, true_shape), None

    def visualize(self, batch: PointMapBatch) -> Dict[str, torch.Tensor]:
        """{"sequence_<i>": (3, 3 H, T W)}: the frames, the predicted depth in camera 0 and the
        confidence, for the first `num_vis_sequences` sequences."""
        count = min(self.num_vis_sequences, len(batch))
        result = self.reconstruct(batch.select(range(count)))
        return {f"sequence_{i}": sequence_panels(batch.rgb[i], result.points[i], result.conf[i], batch.valid[i])
                for i in range(count)}


@registry.register
class Spann3RModel(PointMapModelBase):
    """Spann3R: a DUSt3R network with a spatial memory run over sequences (spann3r_network.py),
    trained with ConfLoss_t(Regr3D_t(L21, avg_dis)) + the scale loss (losses.py).

    forward(batch) returns "points" (B, T, H, W, 3) and "conf" (B, T, H, W) per frame (camera-0
    coordinates); in TRAINING mode also "objective", "loss_conf", "loss_regr", "loss_scale", "alpha".
    """

    # MemoryArchitecture fields (value encoder, working / long-term memory sizes, thresholds); {}: Spann3R's
    memory: Dict[str, Any] = dataclasses.field(default_factory=dict)
    pretrained_path: str = ""  # a released Spann3R checkpoint (spann3r.pth): its architecture and weights
    dust3r_path: str = ""  # a DUSt3R checkpoint to start the DUSt3R part from (the original constructor's dus3r_name)
    conf_alpha: str = SPANN3R_ALPHA  # Spann3R's alpha_c2f: 0.4, then down to 0.2 over the second half
    max_epochs: int = 120
    # detach the memory and the carried features every K frames in training (truncated back-propagation
    # through long sequences: bounds the gradient paths, not the activations); 0: never (the original)
    detach_every: int = 0
    offline: bool = False  # evaluate with Spann3R's offline mode (pairwise scores pick the frame order; batch size 1)
    reconstruction_size: int = 224  # input size of your own frames (recon_visualizer images_dir; Spann3R: 224)
    batch_quirk: bool = False  # reproduce the original's normalisation over the whole batch (exact only for B = 1)

    IMAGE_PREDICTIONS_FOLDER: ClassVar[str] = "spann3r_reconstruction"  # recon_visualizer images_dir=...

    def __post_init__(self) -> None:
        super().__post_init__()
        key = "Spann3RModel"
        if self.detach_every < 0:
            raise ConfigError(f"{key}.detach_every={self.detach_every}: expected >= 0 (0: never)")
        if self.pretrained_path and self.dust3r_path:
            raise ConfigError(f"{key}: set pretrained_path (a Spann3R checkpoint, DUSt3R part included) or dust3r_path "
                              f"(a DUSt3R checkpoint to start from), not both")
        if self.dust3r_path and plain(self.network):
            raise ConfigError(f"{key}.network: the architecture comes from dust3r_path={self.dust3r_path!r}; leave "
                              f"network empty")
        if self.pretrained_path:
            self.net = load_spann3r_checkpoint(self.pretrained_path, memory_overrides=plain(self.memory) or None,
                                               dust3r_overrides=plain(self.network) or None, key=key)
        else:
            if self.dust3r_path:
                architecture, state_dict = read_dust3r_checkpoint(self.dust3r_path)
            else:
                architecture, state_dict = dust3r_architecture(plain(self.network), f"{key}.network"), None
            memory = _memory_architecture(plain(self.memory), f"{key}.memory")
            self.net = Spann3RNetwork(architecture, memory)
            if state_dict is not None:
                self.net.load_dust3r_state_dict(state_dict, self.dust3r_path)

    def predict(self, images: torch.Tensor, true_shape: torch.Tensor) -> SequencePredictions:
        self.check_portraits(self.net.dust3r, images, true_shape)
        return self.net(images, true_shape, detach_every=self.detach_every if self.training else 0)

    def predict_in_order(self, images: torch.Tensor,
                         true_shape: torch.Tensor) -> Tuple[SequencePredictions, Optional[List[int]]]:
        """With `offline` in evaluation: Spann3R's offline mode (pairwise DUSt3R scores choose the
        first pair, then the next best view each step), one sequence at a time (batch size 1)."""
        if not self.offline or self.training:
            return super().predict_in_order(images, true_shape)
        self.check_portraits(self.net.dust3r, images, true_shape)
        result = self.net.offline_reconstruction(images, true_shape)
        return result.predictions, result.order

    def forward(self, batch: PointMapBatch, evaluation_mode: EvaluationMode = EVALUATION) -> Dict[str, Any]:
        predictions = self.predict(batch.images, batch.true_shape)
        points, conf = predictions.per_frame()
        out: Dict[str, Any] = {"points": points, "conf": conf}
        if evaluation_mode == EvaluationMode.TRAINING:
            total, terms = spann3r_loss(predictions, batch.points, batch.valid, batch.camera_to_world,
                                                 alpha=self.alpha, batch_quirk=self.batch_quirk)
            out.update(objective=total, alpha=torch.tensor(self.alpha), **terms)
        return out

    def write_image_predictions(self, image_paths: List[str], out_dir: str, device: torch.device) -> List[str]:
        """recon_visualizer images_dir=...: the images as one sequence (in name order), reconstructed
        online: a coloured PLY point cloud and per-frame confidences (reconstruction.py). Returns each
        image's confidence PNG (the point cloud and the arrays are written beside them)."""
        from .reconstruction import check_size, reconstruct_images, write_reconstruction
        patch_size = self.net.dust3r.patch_embed.patch_size
        check_size(self.reconstruction_size, patch_size, "Spann3RModel.reconstruction_size")
        result = reconstruct_images(self.net, image_paths, device, self.reconstruction_size, patch_size)
        folder = os.path.join(out_dir, "confidence")
        return [path for path in write_reconstruction(result, out_dir) if os.path.dirname(path) == folder]


def _memory_architecture(memory: Dict[str, Any], key: str) -> MemoryArchitecture:
    known = {f.name for f in dataclasses.fields(MemoryArchitecture)}
    unknown = sorted(set(memory) - known)
    if unknown:
        raise ConfigError(f"{key}: unknown field(s) {unknown}; MemoryArchitecture has {sorted(known)}")
    try:
        return MemoryArchitecture(**memory)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}: {error}") from None


@registry.register
class DUSt3RPairModel(PointMapModelBase):
    """DUSt3R trained on pairs with ConfLoss(Regr3D(L21, avg_dis)) (losses.py). A sequence of T
    views gives the T - 1 pairs (k, k + 1), batched together; the points of pair k are in the
    frame of its first view.

    forward(batch) returns "points" (B, T - 1, 2, H, W, 3) and "conf" (B, T - 1, 2, H, W); in
    TRAINING mode also "objective", "loss_conf", "loss_regr", "alpha".
    """

    pretrained_path: str = ""  # a DUSt3R (or CroCo) checkpoint: its architecture (args.model) and weights

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrained_path:
            self.net = load_dust3r(self.pretrained_path)
        else:
            self.net = DUSt3RNetwork(dust3r_architecture(plain(self.network), "DUSt3RPairModel.network"))

    @property
    def log_vars(self) -> Tuple[str, ...]:
        return ("objective", "loss_conf", "loss_regr", "alpha")

    def visualize(self, batch: PointMapBatch) -> Dict[str, torch.Tensor]:
        """The panels of each sequence's first pair (frames 0 and 1): reconstruct takes pairs only."""
        return super().visualize(batch.frames([0, 1]))

    def pairs(self, images: torch.Tensor, true_shape: torch.Tensor) -> SequencePredictions:
        """The predictions of the pairs (k, k + 1) of every sequence (images (B, T, 3, H, W),
        true_shape (B, T, 2)), as B * (T - 1) pairs (a SequencePredictions with T = 2 per pair)."""
        t = images.shape[1]
        if t < 2:
            raise ValueError(f"DUSt3RPairModel: sequences of {t} view(s); pairs need num_frames >= 2")
        self.check_portraits(self.net, images, true_shape)
        first, second = images[:, :-1].flatten(0, 1), images[:, 1:].flatten(0, 1)
        shape1, shape2 = true_shape[:, :-1].flatten(0, 1), true_shape[:, 1:].flatten(0, 1)
        return self.net(first, second, shape1, shape2)

    def predict(self, images: torch.Tensor, true_shape: torch.Tensor) -> SequencePredictions:
        """A pair's predictions (T = 2 only: longer sequences need Spann3R's memory or a global alignment)."""
        if images.shape[1] != 2:
            raise ValueError(f"DUSt3RPairModel reconstructs pairs; this sequence has {images.shape[1]} frames "
                             "(set num_frames=2, or use Spann3RModel for videos)")
        return self.pairs(images, true_shape)

    def forward(self, batch: PointMapBatch, evaluation_mode: EvaluationMode = EVALUATION) -> Dict[str, Any]:
        b, t = batch.images.shape[:2]
        predictions = self.pairs(batch.images, batch.true_shape)
        points = torch.stack([predictions.ref_points[:, 0], predictions.tgt_points[:, 0]], dim=1)
        conf = torch.stack([predictions.ref_conf[:, 0], predictions.tgt_conf[:, 0]], dim=1)
        out: Dict[str, Any] = {"points": points.unflatten(0, (b, t - 1)), "conf": conf.unflatten(0, (b, t - 1))}
        if evaluation_mode == EvaluationMode.TRAINING:
            pairs_of = _pair_ground_truth(batch)
            total, terms = dust3r_pair_loss(predictions, *pairs_of, alpha=self.alpha)
            out.update(objective=total, alpha=torch.tensor(self.alpha), **terms)
        return out


def _pair_ground_truth(batch: PointMapBatch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """points (B (T - 1), 2, H, W, 3), valid (B (T - 1), 2, H, W), camera_to_world (B (T - 1), 2, 4, 4)
    of the pairs (k, k + 1)."""
    def pairs(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, :-1], x[:, 1:]], dim=2).flatten(0, 1)
    return pairs(batch.points), pairs(batch.valid), pairs(batch.camera_to_world)
