"""SRN: implicit-function modes and shapes, per-view hypernetwork weights, the LSTM marcher, config wiring."""

import functools

import pytest
import torch

from recon_trainer_plugins.srn.implicit_function import SRNHyperNetImplicitFunction, SRNImplicitFunction
from recon_trainer_plugins.srn.lstm_renderer import LSTMRenderer
from recon_trainer.config import get_default_args
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.generic_model import GenericModel
from recon_trainer.rendering.raysampler import AdaptiveRaySampler, NearFarRaySampler
from recon_trainer.rendering.renderer import render_in_chunks
from tests.models.tiny_scene import sphere_batch

from .helpers import FEATURES, default_implicit_function_args, random_rays, srn_model_args

TRAIN = EvaluationMode.TRAINING
EVAL = EvaluationMode.EVALUATION


def make_function(cls=SRNImplicitFunction, **parent_values):
    args = default_implicit_function_args(cls)
    for key, value in parent_values.items():
        setattr(args, key, value)
    torch.manual_seed(0)
    return cls(**args)


def make_renderer(**fields) -> LSTMRenderer:
    torch.manual_seed(0)
    args = get_default_args(LSTMRenderer)
    args.n_feature_channels = FEATURES
    for key, value in fields.items():
        setattr(args, key, value)
    return LSTMRenderer(**args)


# --- implicit functions -------------------------------------------------------------------


def test_raymarch_mode_gives_features_and_pixel_mode_gives_densities_and_colours():
    function = make_function(latent_dim=5)
    rays = random_rays(batch=2, spatial=(4, 3), n_pts=2)
    pooled_dim, global_dim = 3, 2
    fun_viewpool = lambda points: points.new_ones(*points.shape[:-1], pooled_dim)  # noqa: E731
    global_code = torch.randn(2, global_dim)
    densities, features, aux = function(ray_bundle=rays, fun_viewpool=fun_viewpool, global_code=global_code)
    assert densities is None and aux == {}
    assert features.shape == (2, 4, 3, 2, FEATURES)
    densities, colors, _ = function(ray_bundle=rays, raymarch_features=features)
    assert densities.shape == (2, 4, 3, 2, 1)
    assert colors.shape == (2, 4, 3, 2, 3) and 0 < colors.min() and colors.max() < 1


def test_latent_codes_change_the_features_and_a_wrong_latent_size_is_an_error():
    function = make_function(latent_dim=4)
    rays = random_rays()
    _, a, _ = function(ray_bundle=rays, global_code=torch.zeros(2, 4))
    _, b, _ = function(ray_bundle=rays, global_code=torch.ones(2, 4))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="got 3 latent channels.*latent_dim is 4"):
        function(ray_bundle=rays, global_code=torch.zeros(2, 3))


def test_identity_view_pooling_is_rejected_with_a_pointer_to_reducing_aggregators():
    function = make_function(latent_dim=3)
    per_view = lambda points: points.new_ones(*points.shape[:-1], 4, 3)  # noqa: E731  (N_src = 4 on dim -2)
    with pytest.raises(ValueError, match="reducing aggregator"):
        function(ray_bundle=random_rays(), fun_viewpool=per_view)


def test_points_in_camera_coordinates_need_the_camera_and_differ_from_world_ones():
    args = default_implicit_function_args(SRNImplicitFunction)
    args.raymarch_function_args.xyz_in_camera_coords = True
    args.pixel_generator_args.ray_dir_in_camera_coords = True
    torch.manual_seed(0)
    in_camera = SRNImplicitFunction(**args)
    torch.manual_seed(0)
    in_world = make_function()
    rays = random_rays()
    camera = sphere_batch().camera  # two cameras looking at the origin from 3 units away
    with pytest.raises(ValueError, match="needs the target cameras"):
        in_camera(ray_bundle=rays)
    _, camera_features, _ = in_camera(ray_bundle=rays, camera=camera)
    _, world_features, _ = in_world(ray_bundle=rays, camera=camera)
    assert not torch.allclose(camera_features, world_features)
    _, camera_colors, _ = in_camera(ray_bundle=rays, camera=camera, raymarch_features=world_features)
    _, world_colors, _ = in_world(ray_bundle=rays, camera=camera, raymarch_features=world_features)
    assert not torch.allclose(camera_colors, world_colors)


def test_mismatched_feature_channels_are_a_config_error():
    args = default_implicit_function_args(SRNImplicitFunction)
    args.pixel_generator_args.in_features = FEATURES + 1
    with pytest.raises(ValueError, match="raymarch_function_args.out_features=32 must equal"):
        SRNImplicitFunction(**args)


def test_the_hypernet_generates_one_mlp_per_view_from_the_global_code():
    function = make_function(SRNHyperNetImplicitFunction, latent_dim_hypernet=6)
    hypernet = function.hypernet
    codes = torch.randn(3, 6)
    parameters = hypernet.generate(codes)
    assert len(parameters) == hypernet.n_layers + 2
    embedding_dim = hypernet.xyz_embedding.get_output_dim(3)
    assert parameters[0][0].shape == (3, FEATURES, embedding_dim) and parameters[0][1].shape == (3, FEATURES)
    assert parameters[-1][0].shape == (3, FEATURES, FEATURES)
    assert not torch.allclose(parameters[0][0][0], parameters[0][0][1])  # the views' weights differ

    rays = random_rays(batch=3)
    _, features, _ = function(ray_bundle=rays, global_code=codes)
    # view t is the MLP with view t's generated weights
    x = hypernet.xyz_embedding(rays.ray_points()[1])
    for weight, bias in parameters:
        x = torch.relu(x @ weight[1].T + bias[1])
    assert torch.allclose(features[1], x, atol=1e-5)
    # and depends on code t only
    other_codes = codes.clone()
    other_codes[0] += 1.0
    _, changed, _ = function(ray_bundle=rays, global_code=other_codes)
    assert not torch.allclose(changed[0], features[0]) and torch.allclose(changed[1:], features[1:])


def test_the_hypernet_needs_a_global_code():
    with pytest.raises(ValueError, match="global_encoder_class_type"):
        make_function(SRNHyperNetImplicitFunction, latent_dim_hypernet=0)
    function = make_function(SRNHyperNetImplicitFunction, latent_dim_hypernet=6)
    with pytest.raises(ValueError, match="needs a global code"):
        function(ray_bundle=random_rays())


def test_parent_fields_are_hidden_from_the_members_configs():
    plain = get_default_args(SRNImplicitFunction)
    assert "latent_dim" not in plain.raymarch_function_args
    hyper = get_default_args(SRNHyperNetImplicitFunction)
    assert "latent_dim" not in hyper.hypernet_args and "latent_dim_hypernet" not in hyper.hypernet_args
    model_args = get_default_args(GenericModel)
    assert "latent_dim" not in model_args.implicit_function_SRNImplicitFunction_args
    assert "latent_dim_hypernet" not in model_args.implicit_function_SRNHyperNetImplicitFunction_args


def test_generic_model_sets_the_latent_sizes_from_the_global_encoder():
    for name in ("SRNImplicitFunction", "SRNHyperNetImplicitFunction"):
        cfg = srn_model_args(name, global_encoder_class_type="SequenceAutodecoder")
        cfg.global_encoder_SequenceAutodecoder_args.autodecoder_args.encoding_dim = 8
        function = GenericModel(**cfg)._implicit_functions[0]
        if name == "SRNImplicitFunction":
            assert function.latent_dim == function.raymarch_function.latent_dim == 8
        else:
            assert function.latent_dim_hypernet == function.hypernet.latent_dim_hypernet == 8
            assert function.latent_dim == function.hypernet.latent_dim == 0


# --- renderer -----------------------------------------------------------------------------


def test_untrained_marcher_moves_every_ray_by_init_depth_and_returns_ray_shaped_outputs():
    renderer = make_renderer(init_depth=2.0)
    function = make_function()
    rays = random_rays(batch=2, spatial=(4, 3), start=0.5)
    output = renderer(ray_bundle=rays, implicit_functions=[function], evaluation_mode=EVAL)
    assert output.features.shape == (2, 4, 3, 3)
    assert output.depths.shape == output.masks.shape == (2, 4, 3, 1)
    assert torch.allclose(output.depths, torch.full_like(output.depths, 2.5), atol=0.05)
    assert 0 < output.masks.min() and output.masks.max() < 1


def test_depths_are_differentiable_through_the_lstm_steps():
    renderer = make_renderer(init_depth=2.0)
    function = make_function()
    output = renderer(ray_bundle=random_rays(), implicit_functions=[function], evaluation_mode=TRAIN)
    output.depths.sum().backward()
    assert renderer._step_layer.weight.grad.abs().sum() > 0
    assert renderer._lstm.weight_ih.grad.abs().sum() > 0
    assert function.raymarch_function.mlp.layers[0].weight.grad.abs().sum() > 0


def test_chunked_rendering_equals_unchunked():
    renderer = make_renderer(init_depth=2.0)
    function = make_function()
    rays = random_rays(batch=2, spatial=(6, 5))
    render = functools.partial(renderer, implicit_functions=[function], evaluation_mode=EVAL)
    whole = render(ray_bundle=rays)
    chunked = render_in_chunks(lambda r: render(ray_bundle=r), rays, chunk_size=7)
    for key in ("features", "depths", "masks"):
        assert torch.allclose(getattr(whole, key), getattr(chunked, key), atol=1e-6), key


def test_background_colour_is_blended_by_the_mask():
    function = make_function()
    rays = random_rays()
    render = dict(ray_bundle=rays, implicit_functions=[function], evaluation_mode=EVAL)
    plain = make_renderer()(**render)
    blended = make_renderer(bg_color=[1.0, 0.0, 0.0])(**render)
    expected = plain.masks * plain.features + (1 - plain.masks) * torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(blended.features, expected, atol=1e-6)


def test_the_renderer_rejects_several_points_per_ray_and_several_passes():
    renderer, function = make_renderer(), make_function()
    with pytest.raises(ValueError, match="n_pts_per_ray_training and n_pts_per_ray_evaluation to 1"):
        renderer(ray_bundle=random_rays(n_pts=2), implicit_functions=[function], evaluation_mode=EVAL)
    with pytest.raises(ValueError, match="num_passes=1"):
        renderer(ray_bundle=random_rays(), implicit_functions=[function, function], evaluation_mode=EVAL)
    with pytest.raises(ValueError, match="n_feature_channels is 16"):
        make_renderer(n_feature_channels=16)(
            ray_bundle=random_rays(), implicit_functions=[function], evaluation_mode=EVAL
        )


@pytest.mark.parametrize("sampler_class", [NearFarRaySampler, AdaptiveRaySampler])
def test_raysamplers_give_one_start_depth_per_ray(sampler_class):
    args = get_default_args(sampler_class)
    args.n_pts_per_ray_training = args.n_pts_per_ray_evaluation = 1
    args.image_width = args.image_height = 8
    sampler = sampler_class(**args)
    camera = sphere_batch().camera
    near, _ = sampler.near_far(camera)
    for mode in (TRAIN, EVAL):
        rays = sampler(camera, mode)
        assert rays.lengths.shape[-1] == 1
        assert torch.allclose(rays.lengths, near.reshape(-1, *([1] * (rays.lengths.dim() - 1))).expand_as(rays.lengths))


# --- in the model -------------------------------------------------------------------------


def test_generic_model_full_grid_render_is_independent_of_the_chunk_size():
    torch.manual_seed(0)
    model = GenericModel(**srn_model_args()).eval()
    frames = sphere_batch()
    with torch.no_grad():
        model.chunk_size_grid = 10**6
        whole = model(frames, evaluation_mode=EVAL)
        model.chunk_size_grid = 7
        chunked = model(frames, evaluation_mode=EVAL)
    assert whole["images_render"].shape == (1, 3, 16, 16)
    for key in ("images_render", "depths_render", "masks_render", "loss_rgb_mse"):
        assert torch.allclose(whole[key], chunked[key], atol=1e-6), key


def test_generic_model_trains_on_mask_sampled_rays():
    torch.manual_seed(0)
    model = GenericModel(**srn_model_args(loss_weights={"loss_rgb_mse": 1.0, "loss_mask_bce": 1.0}))
    preds = model(sphere_batch(), evaluation_mode=TRAIN)
    assert torch.isfinite(preds["objective"]) and torch.isfinite(preds["loss_mask_bce"])
    preds["objective"].backward()
    assert all(p.grad is not None for p in model.renderer.parameters())
    assert all(p.grad is not None for p in model._implicit_functions.parameters())
