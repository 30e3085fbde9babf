"""IDR in GenericModel trains on the tiny sphere scene: beats the mean-colour baseline on held-out
views and its SDF stays close to a signed distance (eikonal residual)."""

import pytest
import torch

from recon_trainer_plugins.idr.renderer import PointField
from recon_trainer.config import get_default_args
from recon_trainer.evaluation.nvs_metrics import psnr_from_mse
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.generic_model import GenericModel
from tests.models.tiny_scene import sphere_batch

SIZE = 32
STEPS = 400
EXTENT = 1.5  # raysampler scene_extent = the renderer's bounding sphere


@pytest.fixture
def one_thread():
    """Small networks on a shared 2-core machine run far faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def idr_model() -> GenericModel:
    """repro_singleseq_idr's model settings (loss weights rgb_mse 1, mask_bce 100, eikonal 0.1,
    one pass), with small networks, 128 rays per step and 32 samples for the ray tracer."""
    cfg = get_default_args(GenericModel)
    cfg.implicit_function_class_type = "IdrFeatureField"
    cfg.renderer_class_type = "SignedDistanceFunctionRenderer"
    cfg.num_passes = 1
    cfg.render_image_width = cfg.render_image_height = SIZE
    cfg.loss_weights = {"loss_rgb_mse": 1.0, "loss_mask_bce": 100.0, "loss_eikonal": 0.1}
    sampler = cfg.raysampler_AdaptiveRaySampler_args
    sampler.scene_extent = EXTENT
    sampler.n_pts_per_ray_training = sampler.n_pts_per_ray_evaluation = 1  # unused by the renderer
    sampler.n_rays_per_image_sampled_from_mask = 128
    cfg.implicit_function_IdrFeatureField_args.dims = [64] * 4
    cfg.implicit_function_IdrFeatureField_args.bias = 0.5
    renderer = cfg.renderer_SignedDistanceFunctionRenderer_args
    renderer.ray_tracer_args.n_steps = 32
    renderer.ray_normal_coloring_network_args.dims = [64] * 2
    torch.manual_seed(0)
    return GenericModel(**cfg)


def eikonal_residual(model: GenericModel, n_points: int = 4000) -> float:
    """mean(| |grad f| - 1 |) at uniform random points in the bounding sphere."""
    generator = torch.Generator().manual_seed(1)
    points = (torch.rand(n_points, 3, generator=generator) * 2 - 1) * EXTENT
    points = points[points.norm(dim=-1) < EXTENT]
    field = PointField(lambda ray_bundle: model._implicit_functions[0](ray_bundle=ray_bundle), n_images=1)
    _, _, gradient = field.with_gradient(points, torch.zeros(len(points), dtype=torch.long), create_graph=False)
    return float((gradient.norm(dim=-1) - 1).abs().mean())


def test_idr_beats_the_mean_colour_on_held_out_views_and_stays_an_sdf(one_thread):
    model = idr_model()
    train = [sphere_batch((azimuth,), size=SIZE) for azimuth in range(0, 360, 45)]
    held_out = [sphere_batch((azimuth,), size=SIZE) for azimuth in (20.0, 110.0, 200.0, 290.0)]
    residual_at_init = eikonal_residual(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(STEPS):
        preds = model(train[step % len(train)], evaluation_mode=EvaluationMode.TRAINING)
        assert {"loss_rgb_mse", "loss_mask_bce", "loss_eikonal"} <= set(preds)
        optimizer.zero_grad()
        preds["objective"].backward()
        optimizer.step()

    model.eval()
    mean_colour = torch.stack([frame.image_rgb for frame in train]).mean(dim=(0, 1, 3, 4))[None, :, None, None]
    psnrs, baselines, ious = [], [], []
    with torch.no_grad():
        for frame in held_out:
            preds = model(frame, evaluation_mode=EvaluationMode.EVALUATION)
            psnrs.append(float(psnr_from_mse(((preds["images_render"] - frame.image_rgb) ** 2).mean())))
            baselines.append(float(psnr_from_mse(((mean_colour - frame.image_rgb) ** 2).mean())))
            rendered, truth = preds["masks_render"] > 0.5, frame.fg_probability > 0.5
            ious.append(float((rendered & truth).sum() / (rendered | truth).sum()))
    psnr, baseline, iou = (sum(values) / len(values) for values in (psnrs, baselines, ious))
    residual = eikonal_residual(model)
    print(
        f"\nIDR held-out PSNR {psnr:.2f} dB vs mean-colour {baseline:.2f} dB, mask IoU {iou:.3f}, "
        f"eikonal residual mean(| |grad f| - 1 |) {residual:.3f} (at init {residual_at_init:.3f})"
    )
    # Measured (seed 0, 400 steps): PSNR 23.8 dB vs 12.4 dB, IoU 0.95, residual 0.23 (0.22 at init).
    assert psnr > baseline + 8.0
    assert iou > 0.85
    assert residual < 0.35
