"""A tiny analytic scene for model tests: a sphere coloured by its normal, seen by a few cameras."""

import math
from typing import Sequence

import torch

from recon_trainer.config import get_default_args
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.data.frame_data import FrameData
from recon_trainer.rendering.ndc_grid import ndc_pixel_centers
from recon_trainer.rendering.raysampler import rays_through_ndc

SPHERE_RADIUS = 0.8
CAMERA_DISTANCE = 3.0
FOCAL_NDC = 2.0


def sphere_batch(azimuths_deg: Sequence[float] = (0.0, 90.0), size: int = 16) -> FrameData:
    """Frames of the sphere from cameras on a horizontal circle: exact RGB, mask and depth."""
    angles = torch.tensor([math.radians(a) for a in azimuths_deg])
    eye = torch.stack(
        [CAMERA_DISTANCE * angles.sin(), 0.3 * torch.ones_like(angles), CAMERA_DISTANCE * angles.cos()], dim=-1
    )
    n = len(azimuths_deg)
    cameras = look_at_cameras(eye, torch.zeros(n, 3), torch.tensor([[0.0, 1.0, 0.0]] * n), FOCAL_NDC, (size, size))
    xys = ndc_pixel_centers(size, size).expand(n, size, size, 2)
    origins, directions = rays_through_ndc(cameras, xys)
    # |o + t d|^2 = r^2  ->  a t^2 + 2 b t + c = 0, the nearer root is the view depth of the hit.
    a = (directions * directions).sum(-1)
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - SPHERE_RADIUS**2
    disc = b * b - a * c
    hit = disc > 0
    depth = torch.where(hit, (-b - disc.clamp(min=0).sqrt()) / a, torch.zeros_like(a))
    normals = torch.nn.functional.normalize(origins + depth[..., None] * directions, dim=-1)
    rgb = torch.where(hit[..., None], 0.5 + 0.4 * normals, torch.zeros_like(normals))
    mask = hit[:, None].float()
    return FrameData(
        image_rgb=rgb.permute(0, 3, 1, 2).contiguous(),
        fg_probability=mask,
        mask_crop=torch.ones_like(mask),
        depth_map=depth[:, None],
        depth_mask=mask.clone(),
        camera=cameras,
        image_size_hw=torch.tensor([[size, size]] * n),
        frame_number=torch.arange(n),
        sequence_name=["sphere"] * n,
        frame_type=["train_known"] * n,
    )


def tiny_model_args(model_class: type, render_size: int = 16, **fields):
    """Default args of GenericModel / OverfitModel shrunk to run in milliseconds on CPU."""
    cfg = get_default_args(model_class)
    cfg.render_image_width = cfg.render_image_height = render_size
    for key, value in fields.items():
        setattr(cfg, key, value)
    function_keys = [k for k in cfg if k.endswith("_NeuralRadianceFieldImplicitFunction_args")]
    for key in function_keys:
        nerf = cfg[key]
        nerf.n_harmonic_functions_xyz, nerf.n_harmonic_functions_dir = 4, 2
        nerf.n_hidden_neurons_xyz, nerf.n_hidden_neurons_dir = 32, 16
        nerf.n_layers_xyz, nerf.append_xyz = 3, [1]
    sampler = cfg.raysampler_AdaptiveRaySampler_args
    sampler.scene_extent = 1.5
    sampler.n_pts_per_ray_training = sampler.n_pts_per_ray_evaluation = 16
    sampler.n_rays_per_image_sampled_from_mask = 64
    renderer = cfg.renderer_MultiPassEmissionAbsorptionRenderer_args
    renderer.n_pts_per_ray_fine_training = renderer.n_pts_per_ray_fine_evaluation = 8
    return cfg
