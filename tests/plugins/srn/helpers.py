"""Small SRN models and ray bundles for the SRN tests."""

import torch

from recon_trainer.config import get_default_args
from recon_trainer.models.generic_model import GenericModel
from recon_trainer.rendering.ray_bundle import RayBundle
from tests.models.tiny_scene import tiny_model_args

FEATURES = 32  # raymarch feature channels of the small models


def shrink_srn_args(args, features: int = FEATURES) -> None:
    """Narrow the raymarch function (or hypernet) and pixel generator of an SRN implicit function's args."""
    raymarch = args.raymarch_function_args if "raymarch_function_args" in args else args.hypernet_args
    raymarch.n_hidden_units = raymarch.out_features = features
    if "n_hidden_units_hypernet" in raymarch:
        raymarch.n_hidden_units_hypernet = 16
    pixel = args.pixel_generator_args
    pixel.in_features = pixel.n_hidden_units = features
    pixel.n_hidden_units_color = features // 2


def srn_model_args(
    implicit_function: str = "SRNImplicitFunction",
    render_size: int = 16,
    init_depth: float = 3.0,
    features: int = FEATURES,
    **fields,
):
    """GenericModel args: a small SRN implicit function, LSTMRenderer, NearFarRaySampler with one point per ray."""
    cfg = tiny_model_args(
        GenericModel,
        render_size=render_size,
        implicit_function_class_type=implicit_function,
        renderer_class_type="LSTMRenderer",
        raysampler_class_type="NearFarRaySampler",
        **fields,
    )
    shrink_srn_args(cfg[f"implicit_function_{implicit_function}_args"], features)
    sampler = cfg.raysampler_NearFarRaySampler_args
    sampler.n_pts_per_ray_training = sampler.n_pts_per_ray_evaluation = 1
    sampler.min_depth, sampler.max_depth = 0.05, 0.1  # one point per ray: only min_depth is used
    sampler.stratified_point_sampling_training = False
    sampler.n_rays_per_image_sampled_from_mask = 64
    renderer = cfg.renderer_LSTMRenderer_args
    renderer.init_depth = init_depth
    renderer.n_feature_channels = features
    return cfg


def default_implicit_function_args(cls, features: int = FEATURES):
    args = get_default_args(cls)
    shrink_srn_args(args, features)
    return args


def random_rays(batch: int = 2, spatial=(5,), n_pts: int = 1, start: float = 0.5) -> RayBundle:
    """Rays from random origins near (0, 0, -3) looking roughly along +z, all points at depth `start`."""
    generator = torch.Generator().manual_seed(0)
    origins = torch.tensor([0.0, 0.0, -3.0]) + 0.1 * torch.randn(batch, *spatial, 3, generator=generator)
    directions = torch.tensor([0.0, 0.0, 1.0]) + 0.2 * torch.randn(batch, *spatial, 3, generator=generator)
    lengths = torch.full((batch, *spatial, n_pts), start) + torch.arange(n_pts, dtype=torch.float32)
    xys = torch.rand(batch, *spatial, 2, generator=generator) * 2 - 1
    return RayBundle(origins=origins, directions=directions, lengths=lengths, xys=xys)
