"""NeRFormerImplicitFunction inside GenericModel: ResNet features, identity view pooling, coarse + fine passes."""

import pytest
import torch

from recon_trainer.config import get_default_args
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.generic_model import GenericModel
from tests.models.tiny_scene import sphere_batch

RENDER_SIZE = 8


def tiny_nerformer_model(aggregator: str = "IdentityFeatureAggregator", **fields) -> GenericModel:
    torch.manual_seed(0)
    cfg = get_default_args(GenericModel)
    cfg.render_image_width = cfg.render_image_height = RENDER_SIZE
    cfg.num_passes = 2
    cfg.image_feature_extractor_class_type = "ResNetFeatureExtractor"
    cfg.view_pooler_enabled = True
    cfg.implicit_function_class_type = "NeRFormerImplicitFunction"
    cfg.view_pooler_args.feature_aggregator_class_type = aggregator
    extractor = cfg.image_feature_extractor_ResNetFeatureExtractor_args
    extractor.name, extractor.stages, extractor.proj_dim, extractor.image_rescale = "resnet18", [1], 4, 1.0
    function = cfg.implicit_function_NeRFormerImplicitFunction_args
    function.n_harmonic_functions_xyz, function.n_harmonic_functions_dir = 2, 1
    function.n_hidden_neurons_xyz, function.n_hidden_neurons_dir = 16, 8
    sampler = cfg.raysampler_AdaptiveRaySampler_args
    sampler.scene_extent, sampler.n_rays_per_image_sampled_from_mask = 1.5, 16
    sampler.n_pts_per_ray_training = sampler.n_pts_per_ray_evaluation = 6
    renderer = cfg.renderer_MultiPassEmissionAbsorptionRenderer_args
    renderer.n_pts_per_ray_fine_training = renderer.n_pts_per_ray_fine_evaluation = 4
    for key, value in fields.items():
        setattr(cfg, key, value)
    return GenericModel(**cfg)


def test_latent_dim_is_the_per_view_feature_channels_and_both_passes_train():
    model = tiny_nerformer_model()
    per_view = model.image_feature_extractor.get_feat_dims()  # identity pooling keeps the channels per view
    assert [f.latent_dim for f in model._implicit_functions] == [per_view, per_view]
    batch = sphere_batch((0.0, 60.0, 120.0, 180.0), size=RENDER_SIZE)
    preds = model(batch, evaluation_mode=EvaluationMode.TRAINING)
    preds["objective"].backward()
    for function in model._implicit_functions:
        assert all(p.grad is not None for p in function.transformer.parameters())
    assert {"loss_rgb_mse", "loss_prev_stage_rgb_mse"} <= set(preds)


def test_full_grid_render_does_not_depend_on_the_chunk_size():
    model = tiny_nerformer_model().eval()
    batch = sphere_batch((0.0, 90.0, 200.0), size=RENDER_SIZE)
    with torch.no_grad():
        whole = model(batch, evaluation_mode=EvaluationMode.EVALUATION)
        model.chunk_size_grid = 7 * 6  # points: 64 rays of 6 samples in 10 chunks
        chunked = model(batch, evaluation_mode=EvaluationMode.EVALUATION)
    assert whole["images_render"].shape == (1, 3, RENDER_SIZE, RENDER_SIZE)
    for key in ("images_render", "depths_render", "masks_render"):
        assert torch.allclose(whole[key], chunked[key], atol=1e-5), key


def test_a_reducing_aggregator_is_refused_with_the_fix():
    model = tiny_nerformer_model("ReductionFeatureAggregator")
    with pytest.raises(ValueError, match=r"Reducing aggregators.*IdentityFeatureAggregator"):
        model(sphere_batch((0.0, 90.0), size=RENDER_SIZE), evaluation_mode=EvaluationMode.TRAINING)
