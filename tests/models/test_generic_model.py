"""GenericModel on a tiny sphere scene: losses, full-image renders, chunking, training, config hooks."""

import pytest
import torch

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.data.frame_data import FrameData, collate
from recon_trainer.evaluation.nvs_evaluator import NVSEvaluator
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.generic_model import GenericModel
from recon_trainer.models.implicit_rendering_model import RAYSAMPLER_PARENT_FIELDS, RENDERER_PARENT_FIELDS

from .tiny_scene import sphere_batch, tiny_model_args

TRAIN = EvaluationMode.TRAINING
EVAL = EvaluationMode.EVALUATION


def make_model(**fields) -> GenericModel:
    torch.manual_seed(0)
    return GenericModel(**tiny_model_args(GenericModel, **fields))


def test_training_forward_returns_finite_objective_and_losses_of_both_passes():
    model = make_model(num_passes=2)
    preds = model(sphere_batch(), evaluation_mode=TRAIN)
    for stage in ("", "prev_stage_"):
        for name in ("rgb_mse", "rgb_psnr", "rgb_psnr_fg", "mask_bce", "depth_abs", "depth_abs_fg"):
            assert torch.isfinite(preds[f"loss_{stage}{name}"]), (stage, name)
    expected = preds["loss_rgb_mse"] + preds["loss_prev_stage_rgb_mse"]  # the default weights
    assert torch.isfinite(preds["objective"]) and torch.allclose(preds["objective"], expected)
    preds["objective"].backward()
    assert all(p.grad is not None for p in model._implicit_functions.parameters())
    assert "images_render" not in preds  # mask_sample rays are not an image


def test_evaluation_renders_full_images_at_the_render_size():
    model = make_model(render_size=12).eval()
    with torch.no_grad():
        preds = model(sphere_batch(size=16), evaluation_mode=EVAL)
    assert preds["images_render"].shape == (1, 3, 12, 12)
    assert preds["depths_render"].shape == (1, 1, 12, 12)
    assert preds["masks_render"].shape == (1, 1, 12, 12)
    assert torch.isfinite(preds["objective"])  # ground truth is present: evaluation losses too


def test_evaluation_needs_only_cameras():
    model = make_model().eval()
    frames = sphere_batch()
    camera_only = FrameData(camera=frames.camera[:1], image_size_hw=frames.image_size_hw[:1])
    with torch.no_grad():
        preds = model(camera_only, evaluation_mode=EVAL)
    assert set(preds) == {"images_render", "depths_render", "masks_render"}
    assert preds["images_render"].shape == (1, 3, 16, 16)


def test_chunked_full_grid_rendering_equals_a_single_chunk():
    model = make_model(num_passes=2).eval()
    frames = sphere_batch()
    with torch.no_grad():
        model.chunk_size_grid = 10**6
        whole = model(frames, evaluation_mode=EVAL)
        model.chunk_size_grid = 7 * 16  # points: 256 rays of 16 samples in 37 chunks, the last one partial
        chunked = model(frames, evaluation_mode=EVAL)
    for key in ("images_render", "depths_render", "masks_render", "loss_rgb_mse", "loss_prev_stage_rgb_mse"):
        assert torch.allclose(whole[key], chunked[key], atol=1e-6), key


def test_a_few_dozen_steps_reduce_the_loss_on_two_views():
    model = make_model()
    frames = sphere_batch((0.0, 90.0))
    model.eval()
    with torch.no_grad():
        before = model(frames, evaluation_mode=EVAL)["loss_rgb_mse"]
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(40):
        view = frames if step % 2 == 0 else _reversed(frames)  # alternate which view is the target
        optimizer.zero_grad()
        model(view, evaluation_mode=TRAIN)["objective"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(frames, evaluation_mode=EVAL)["loss_rgb_mse"]
    assert after < 0.5 * before


def _reversed(frames: FrameData) -> FrameData:
    order = [1, 0]
    return FrameData(
        image_rgb=frames.image_rgb[order],
        fg_probability=frames.fg_probability[order],
        mask_crop=frames.mask_crop[order],
        depth_map=frames.depth_map[order],
        depth_mask=frames.depth_mask[order],
        camera=frames.camera[order],
        image_size_hw=frames.image_size_hw[order],
    )


def test_images_are_masked_with_bg_color_before_the_losses():
    frames = sphere_batch()
    model = make_model(bg_color=[1.0, 1.0, 1.0])
    image, _ = model._preprocess(frames)
    outside = frames.fg_probability[:, 0] == 0
    assert torch.all(image.permute(0, 2, 3, 1)[outside] == 1.0)
    unmasked = make_model(mask_images=False)
    assert torch.equal(unmasked._preprocess(frames)[0], frames.image_rgb)


def test_unknown_loss_weight_key_is_an_error_naming_it_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"loss_rgb_mes.*did you mean 'loss_rgb_mse'.*loss_mask_bce"):
        make_model(loss_weights={"loss_rgb_mes": 1.0})


def test_tweak_hooks_hide_the_fields_the_model_sets():
    cfg = get_default_args(GenericModel)
    for key in RAYSAMPLER_PARENT_FIELDS:
        assert key not in cfg.raysampler_AdaptiveRaySampler_args and key not in cfg.raysampler_NearFarRaySampler_args
    for key in RENDERER_PARENT_FIELDS:
        assert key not in cfg.renderer_MultiPassEmissionAbsorptionRenderer_args
    for key in ("latent_dim", "color_dim"):  # ImplicitFunctionBase.fields_set_by_parent
        assert key not in cfg.implicit_function_NeuralRadianceFieldImplicitFunction_args
    model = make_model(render_size=10, sampling_mode_training="full_grid", render_features_dimensions=3)
    assert (model.raysampler.image_width, model.raysampler.image_height) == (10, 10)
    assert model.raysampler.sampling_mode_training == "full_grid"
    assert model.renderer.object_bounding_sphere == model.raysampler.scene_extent
    assert model._implicit_functions[0].color_dim == 3 and model._implicit_functions[0].latent_dim == 0


def test_a_parent_set_field_in_member_args_is_an_error():
    args = dict(tiny_model_args(GenericModel))  # a typed config already refuses the key; plain dicts reach the model
    args["raysampler_AdaptiveRaySampler_args"] = {"image_width": 32}
    with pytest.raises(ConfigError, match=r"image_width.*GenericModel sets"):
        GenericModel(**args)


def test_num_passes_builds_one_function_per_pass():
    model = make_model(num_passes=3)
    functions = list(model._implicit_functions)
    assert len(functions) == 3 and len({id(f) for f in functions}) == 3


def test_feature_extractor_and_view_pooler_need_each_other():
    with pytest.raises(ConfigError, match=r"view pooler.*view_pooler_enabled=true"):
        make_model(image_feature_extractor_class_type="ResNetFeatureExtractor")
    with pytest.raises(ConfigError, match=r"view_pooler_enabled=True needs.*image_feature_extractor_class_type"):
        make_model(view_pooler_enabled=True)


def test_nvs_evaluator_scores_the_model_on_held_out_frames(tmp_path):
    model = make_model(num_passes=2)
    frames = sphere_batch((45.0, 180.0))
    loader = [collate([_frame(frames, i)]) for i in range(2)]
    averages = NVSEvaluator().run(model=model, dataloader=loader, device=torch.device("cpu"), exp_dir=str(tmp_path))
    expected = {"psnr_full_image", "psnr_masked", "psnr_fg", "rgb_l1_full_image", "rgb_l1_masked", "rgb_l1_fg", "iou"}
    assert expected | {"depth_abs_fg"} == set(averages)
    assert all(torch.isfinite(torch.tensor(averages[key])) for key in expected)
    assert model.training  # the evaluator restores the mode


def _frame(frames: FrameData, index: int) -> FrameData:
    """Frame `index` of a batch as a single (uncollated) frame."""
    fields = ("image_rgb", "fg_probability", "mask_crop", "depth_map", "depth_mask", "image_size_hw")
    return FrameData(camera=frames.camera[index], **{name: getattr(frames, name)[index] for name in fields})


def test_n_train_target_views_minus_one_renders_every_frame_of_the_batch():
    model = make_model(n_train_target_views=-1)
    batch = sphere_batch((0.0, 90.0, 180.0))
    assert model.n_targets(batch, training=True) == 3 and model.n_targets(batch, training=False) == 1
    preds = model(batch, evaluation_mode=EvaluationMode.TRAINING)
    assert torch.isfinite(preds["objective"])
    with pytest.raises(ConfigError, match="n_train_target_views=0"):
        make_model(n_train_target_views=0)
