"""SymphoniesModel: semantic scene completion from one image (Jiang et al., CVPR 2024) as a
recon_trainer model.

The network (network.py) sees one sample at a time, as the original (batch size 1 per GPU); a
batch is run sample by sample and the objective is the mean of the samples' losses (what
distributed data parallel over one-sample batches averages). The depth that lifts pixels into the
volume comes from the depth_source slot (depth_source.py).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import torch

from recon_trainer.config import ConfigError, registry, run_auto_creation
from recon_trainer.config.errors import did_you_mean
from recon_trainer.models.base import EvaluationMode, ModelBase

from .batch import SSCBatch
from .depth_source import SSCDepthSourceBase
from .losses import ssc_losses
from .network import SymphoniesNetwork

CRITERIA = ("ce_ssc", "sem_scal", "geo_scal", "frustum")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@registry.register
class SymphoniesModel(ModelBase):
    """Image encoder + instance queries + Symphonies decoder over a voxel grid (module doc).

    forward(batch: SSCBatch, evaluation_mode) -> {"ssc_logits": (B, C, X, Y, Z) float32}; in
    TRAINING mode also "loss_<criterion>" (summed over the layers' outputs: the last with weight
    1, the others `aux_weight`, averaged over the samples) and "objective" (their sum).
    """

    depth_source: SSCDepthSourceBase
    depth_source_class_type: str = "DataDepth"
    num_classes: int = 12  # classes including empty (0); NYUv2 12, SemanticKITTI 20, KITTI-360 19
    scene_shape: Tuple[int, int, int] = (60, 60, 36)  # (X, Y, Z) voxels of the target grid
    project_scale: int = 1  # the network's grid is scene_shape / project_scale (SemanticKITTI: 2)
    downsample_z: int = 1  # and its z further divided by this (SemanticKITTI: 2)
    image_shape: Tuple[int, int] = (480, 640)  # (H, W) of the input images
    embed_dims: int = 128  # feature width (the usage guide's NYU runs: 64 or 128)
    num_layers: int = 3  # Symphonies layers (ASPP3D after the third)
    num_heads: int = 8  # attention heads
    num_points: int = 4  # deformable sampling points per head and level (the volume's attention: twice this)
    num_queries: int = 100  # instance queries
    # learnable scene positional encoding: embeddings per axis and the squeeze factors; () derives the
    # shape from the grid (network grid / squeeze); the original hard-codes (128, 128, 2) / (2, 2, 1) (KITTI)
    scene_pos_shape: Tuple[int, ...] = ()
    scene_pos_squeeze: Tuple[int, int, int] = (1, 1, 1)
    resnet_depth: int = 50  # the image encoder's ResNet (50 stands in for MaskDINO-R50; 18 / 34 for CPU runs)
    fpn_channels: int = 256  # channels of the encoder's feature pyramid (MaskDINO's pixel decoder: 256)
    encoder_weights_path: str = ""  # a local torchvision ResNet or MaskDINO-R50 checkpoint for the encoder
    pretrained_path: str = ""  # a released Symphonies checkpoint (Lightning .ckpt) to start from
    # the decoder in float32 under mixed precision, as the original (autocast(float32)); false: in bf16 / fp16 too
    decoder_fp32: bool = True
    criteria: Tuple[str, ...] = CRITERIA  # the loss terms (the original's criterions)
    aux_weight: float = 0.5  # weight of the earlier layers' outputs in the losses (the last has 1)

    # the encoder (MaskDINO in the original) learns at lr x group_lr_multipliers.encoder (lr_mult 0.1)
    param_groups = {"network.encoder.backbone": "encoder", "network.encoder.pyramid": "encoder"}

    def __post_init__(self) -> None:
        self._check_fields()
        run_auto_creation(self)
        self.network = SymphoniesNetwork(
            embed_dims=self.embed_dims, num_classes=self.num_classes, scene_shape=tuple(self.scene_shape),
            project_scale=self.project_scale, image_shape=tuple(self.image_shape), downsample_z=self.downsample_z,
            num_layers=self.num_layers, num_heads=self.num_heads, num_points=self.num_points,
            num_queries=self.num_queries, scene_pos_shape=tuple(self.scene_pos_shape) or None,
            scene_pos_squeeze=tuple(self.scene_pos_squeeze), resnet_depth=self.resnet_depth,
            fpn_channels=self.fpn_channels, encoder_weights_path=self.encoder_weights_path or None,
            decoder_fp32=self.decoder_fp32,
        )
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if self.encoder_weights_path:
            report = self.network.pretrained_report
            print(f"SymphoniesModel: {self.encoder_weights_path}: {len(report['loaded'])} encoder tensors loaded, "
                  f"{len(report['skipped'])} in the file not loaded (no counterpart or another shape), "
                  f"{len(report['not_loaded'])} of ours left as initialised", flush=True)
        if self.pretrained_path:
            from .checkpoint import load_symphonies_checkpoint

            if not os.path.isfile(self.pretrained_path):
                raise ConfigError(f"SymphoniesModel.pretrained_path={self.pretrained_path!r}: no such file; expected a "
                                  "released Symphonies checkpoint (e.g. semantic_kitti_e25_miou0.1489.ckpt)")
            report = load_symphonies_checkpoint(self.network, self.pretrained_path)
            print(f"SymphoniesModel: {self.pretrained_path}: {len(report['loaded'])} tensors loaded, "
                  f"{len(report['unused'])} in the file unused, {len(report['not_loaded'])} of ours left as "
                  "initialised", flush=True)

    def _check_fields(self) -> None:
        for name in self.criteria:
            if name not in CRITERIA:
                raise ConfigError(f"SymphoniesModel.criteria has {name!r}{did_you_mean(name, CRITERIA) or ';'} "
                                  f"expected some of {', '.join(CRITERIA)}")
        if self.num_classes < 2:
            raise ConfigError(f"SymphoniesModel.num_classes={self.num_classes}: expected 2 or more (empty + classes)")
        if len(self.scene_shape) != 3 or any(n % (self.project_scale * (self.downsample_z if i == 2 else 1))
                                            for i, n in enumerate(self.scene_shape)):
            raise ConfigError(f"SymphoniesModel.scene_shape={tuple(self.scene_shape)}: expected 3 sizes divisible by "
                              f"project_scale={self.project_scale} (and z also by downsample_z={self.downsample_z})")

    @property
    def log_vars(self) -> Tuple[str, ...]:
        return ("objective", *(f"loss_{name}" for name in self.criteria))

    def _check_batch(self, batch: SSCBatch) -> None:
        if tuple(batch.image.shape[-2:]) != tuple(self.image_shape):
            raise ValueError(f"SymphoniesModel: images of {tuple(batch.image.shape[-2:])} pixels, the model is built "
                             f"for image_shape={tuple(self.image_shape)}; set model_SymphoniesModel_args.image_shape")
        if batch.target is not None and batch.grid_shape != tuple(self.scene_shape):
            raise ValueError(f"SymphoniesModel: targets of {batch.grid_shape} voxels, the model is built for "
                             f"scene_shape={tuple(self.scene_shape)}; set model_SymphoniesModel_args.scene_shape")

    def sample_outputs(self, batch: SSCBatch, depth: torch.Tensor, index: int) -> List[torch.Tensor]:
        """The network's outputs for sample `index`: [(1, C, X, Y, Z)] per layer in training mode,
        the last layer's only in eval mode."""
        image = (batch.image[index:index + 1] - self.image_mean) / self.image_std
        return self.network(
            image, depth[index:index + 1], batch.intrinsics[index:index + 1], batch.world_to_camera[index:index + 1],
            batch.voxel_origin[index:index + 1], batch.voxel_size[index:index + 1],
            batch.projected_pix[index:index + 1], batch.fov_mask[index:index + 1],
        )

    def forward(self, batch: SSCBatch, evaluation_mode: EvaluationMode = EvaluationMode.EVALUATION) -> Dict[str, Any]:
        """See the class docstring."""
        self._check_batch(batch)
        training = evaluation_mode == EvaluationMode.TRAINING
        if training and batch.target is None:
            raise ValueError("SymphoniesModel.forward: training needs the batch's target")
        depth = self.depth_source.depth(batch)
        logits: List[torch.Tensor] = []
        totals: Dict[str, torch.Tensor] = {}
        for index in range(len(batch)):
            outputs = [out.float() for out in self.sample_outputs(batch, depth, index)]
            logits.append(outputs[-1])
            if training:
                item = batch.select([index])
                losses = ssc_losses(outputs, item.target, item.class_weights.to(outputs[-1]), item.frustum_masks,
                                    item.frustum_counts, self.criteria, self.aux_weight)
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + value / len(batch)
        preds: Dict[str, Any] = {"ssc_logits": torch.cat(logits)}
        if training:
            preds.update(totals)
            preds["objective"] = sum(totals.values())
        return preds

    def predict(self, batch: SSCBatch) -> torch.Tensor:
        """(B, X, Y, Z) int64 predicted classes (argmax of the logits)."""
        return self.forward(batch, EvaluationMode.EVALUATION)["ssc_logits"].argmax(dim=1)

    def visualize(self, batch: SSCBatch) -> Dict[str, torch.Tensor]:
        """{"voxels": (3, H, 3 W)}: the first image beside renders of its predicted and target
        voxels seen from the camera (visualization.py)."""
        from .visualization import side_by_side

        prediction = self.predict(batch.select([0]))
        return {"voxels": side_by_side(batch.select([0]), prediction[0], height=int(batch.image.shape[-2]) // 2)}

    def write_dataset_predictions(self, dataloader: Any, out_dir: str, device: torch.device,
                                  max_items: int) -> Dict[str, str]:
        """recon_visualizer: for the first `max_items` samples of the loader, the predicted and
        target voxels as coloured meshes (PLY) and images (visualization.py)."""
        from .visualization import write_dataset_predictions

        return write_dataset_predictions(self, dataloader, out_dir, device, max_items)

    DATASET_PREDICTIONS_FOLDER = "voxels"
