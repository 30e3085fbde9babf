"""Pictures of predicted and target voxels (the original's generate_outputs.py + visualize.py,
without mayavi): renders from the input camera and from above, and coloured PLY meshes.

Per sample `recon_visualizer exp_dir=... split=test` writes into exp_dir/voxels/:
<name>.png (the image; the prediction, on the voxels whose label is known, and the target seen from
the camera; both from above) and
<name>_pred.ply / <name>_target.ply (the visible voxel faces, coloured by class; empty and
unknown voxels are not drawn).
"""
from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np
import torch

from recon_trainer.data.records import IGNORE_LABEL
from recon_trainer.models.base import EvaluationMode
from recon_trainer.visualization.voxels import (
    class_colors,
    overview_camera,
    render_voxels,
    voxel_mesh,
    write_mesh_ply,
)

from .batch import SSCBatch


def _panel(labels: torch.Tensor, batch: SSCBatch, height: int, from_camera: bool) -> torch.Tensor:
    """(h, w, 3) render of (X, Y, Z) labels for the batch's first sample, from its camera or from above."""
    num_classes = int(batch.class_weights.numel()) if batch.class_weights is not None else 32
    colors = class_colors(num_classes)
    size = batch.voxel_size[0].cpu().numpy()
    origin = batch.voxel_origin[0].cpu().numpy()
    image_h, image_w = batch.image.shape[-2:]
    scale = height / float(image_h)
    hw = (height, max(1, round(image_w * scale)))
    if from_camera:
        intrinsics = batch.intrinsics[0].cpu().clone()
        intrinsics[:2] *= scale
        camera_to_world = torch.linalg.inv(batch.world_to_camera[0].cpu().double()).float()
    else:
        up = -batch.world_to_camera[0, 1, :3].cpu().double().numpy()  # the camera's up, in world coordinates
        intrinsics, camera_to_world = overview_camera(labels.shape, size, origin, up, hw)
    return render_voxels(labels.cpu().numpy(), size, origin, colors, intrinsics, camera_to_world, hw)


def side_by_side(batch: SSCBatch, prediction: torch.Tensor, height: int = 240, overview: bool = False) -> torch.Tensor:
    """(3, height, k W') in [0, 1]: the batch's first image, then its predicted and (when the batch
    has one) target voxels rendered from the camera, then with `overview` both seen from above. With
    a target, the prediction is drawn on the voxels whose label is known only (as the metrics count)."""
    image = torch.nn.functional.interpolate(batch.image[:1].float().cpu(), size=(height, round(
        batch.image.shape[-1] * height / batch.image.shape[-2])), mode="bilinear", align_corners=False)[0]
    volumes = [prediction]
    if batch.target is not None:
        target = batch.target[0].to(prediction.device)
        volumes = [torch.where(target == IGNORE_LABEL, IGNORE_LABEL, prediction), target]
    panels = [image.permute(1, 2, 0)] + [_panel(v, batch, height, True) for v in volumes]
    if overview:
        panels += [_panel(v, batch, height, False) for v in volumes]
    return torch.cat(panels, dim=1).permute(2, 0, 1).clamp(0, 1)


def write_dataset_predictions(model: Any, dataloader: Any, out_dir: str, device: torch.device,
                              max_items: int) -> Dict[str, str]:
    """The module doc's files for the first `max_items` samples; returns name -> PNG path."""
    import imageio.v3 as imageio

    from recon_trainer.fileio import atomic_path

    written: Dict[str, str] = {}
    model.eval()
    with torch.no_grad():
        for batch in dataloader:
            batch = batch.to(device)
            prediction = model(batch, EvaluationMode.EVALUATION)["ssc_logits"].argmax(dim=1)
            for index in range(len(batch)):
                if len(written) >= max_items:
                    return written
                item = batch.select([index])
                name = item.name[0].replace("/", "_")
                colors = class_colors(int(item.class_weights.numel()) if item.class_weights is not None else 32)
                size, origin = item.voxel_size[0].cpu().numpy(), item.voxel_origin[0].cpu().numpy()
                volumes = {"pred": prediction[index]}
                if item.target is not None:
                    volumes["target"] = item.target[0]
                for kind, labels in volumes.items():
                    write_mesh_ply(os.path.join(out_dir, f"{name}_{kind}.ply"),
                                   *voxel_mesh(labels.cpu().numpy(), size, origin, colors))
                picture = side_by_side(item, prediction[index], overview=True)
                path = os.path.join(out_dir, f"{name}.png")
                pixels = (picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                with atomic_path(path, suffix=".png") as tmp:
                    imageio.imwrite(tmp, pixels)
                written[name] = path
    return written
