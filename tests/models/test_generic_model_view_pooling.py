"""GenericModel with source-view features, global codes, object masks and a renderer's own losses (interface I2)."""

from typing import Any, Dict, List

import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.frame_data import FrameData
from recon_trainer.evaluation.nvs_evaluator import withhold_target
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.generic_model import GenericModel
from recon_trainer.models.implicit_rendering_model import KNOWN_LOSSES
from recon_trainer.models.view_losses import sample_at_ndc
from recon_trainer.rendering.renderer import LOSSES_AUX_KEY, BaseRenderer, RendererOutput

from .tiny_scene import sphere_batch, tiny_model_args

TRAIN = EvaluationMode.TRAINING
EVAL = EvaluationMode.EVALUATION


def pooled_model(aggregator: str = "AngleWeightedReductionFeatureAggregator", encoding_dim: int = 4, **fields):
    cfg = tiny_model_args(
        GenericModel,
        image_feature_extractor_class_type="ResNetFeatureExtractor",
        view_pooler_enabled=True,
        global_encoder_class_type="SequenceAutodecoder",
        **fields,
    )
    resnet = cfg.image_feature_extractor_ResNetFeatureExtractor_args
    resnet.name, resnet.image_rescale, resnet.stages, resnet.proj_dim = "resnet18", 1.0, [1, 2], 8
    cfg.view_pooler_args.feature_aggregator_class_type = aggregator
    cfg.global_encoder_SequenceAutodecoder_args.autodecoder_args.encoding_dim = encoding_dim
    cfg.global_encoder_SequenceAutodecoder_args.autodecoder_args.n_instances = 2
    torch.manual_seed(0)
    return GenericModel(**cfg)


class RecordingRenderer(BaseRenderer):
    """Records its keyword arguments and renders the first implicit function's mean sample (never registered);
    with evaluate=False it does not call the function and renders zeros."""

    LOSS_NAMES = ("loss_extra",)

    def __init__(self, wants_object_mask: bool = False, extra_loss: Any = None, evaluate: bool = True) -> None:
        torch.nn.Module.__init__(self)
        self.wants_object_mask, self.extra_loss, self.evaluate = wants_object_mask, extra_loss, evaluate
        self.calls: List[Dict[str, Any]] = []

    def requires_object_mask(self) -> bool:
        return self.wants_object_mask

    def forward(self, *, ray_bundle, implicit_functions, evaluation_mode, **kwargs) -> RendererOutput:
        self.calls.append({"implicit_function": implicit_functions[0], "ray_bundle": ray_bundle, **kwargs})
        if self.evaluate:
            densities, colors, _ = implicit_functions[0](ray_bundle=ray_bundle)
        else:
            densities = torch.zeros_like(ray_bundle.lengths)[..., None]
            colors = densities.expand(*densities.shape[:-1], 3)
        aux = {} if self.extra_loss is None else {LOSSES_AUX_KEY: {"loss_extra": self.extra_loss}}
        return RendererOutput(
            features=colors.mean(-2), depths=densities.mean(-2), masks=densities.mean(-2).sigmoid(), aux=aux
        )


def test_latent_dim_is_the_pooled_dim_plus_the_code():
    model = pooled_model()
    feat_dim = model.image_feature_extractor.get_feat_dims()
    assert feat_dim == 2 * 8 + 3 + 1
    assert model._latent_dims() == (2 * feat_dim, 4)  # AVG and STD
    assert model._implicit_functions[0].latent_dim == 2 * feat_dim + 4


@pytest.mark.parametrize(
    "aggregator, per_view",
    [("AngleWeightedReductionFeatureAggregator", False), ("AngleWeightedIdentityFeatureAggregator", True)],
)
def test_fun_viewpool_pools_all_frames_at_the_targets_points(aggregator, per_view):
    model = pooled_model(aggregator, n_train_target_views=2)
    model.renderer = RecordingRenderer(evaluate=False)  # NeRF does not read per-view features
    model(sphere_batch((0.0, 90.0, 180.0)), evaluation_mode=TRAIN)
    function = model.renderer.calls[0]["implicit_function"]
    fun_viewpool, global_code = function.keywords["fun_viewpool"], function.keywords["global_code"]
    assert global_code.shape == (2, 4) and len(function.keywords["camera"]) == 2
    d = model._latent_dims()[0]
    pooled = fun_viewpool(torch.randn(2, 5, 6, 3) * 0.3)
    assert pooled.shape == ((2, 5, 6, 3, d) if per_view else (2, 5, 6, d))
    if per_view:
        assert torch.all(pooled[0, ..., 0, :] == 0) and torch.all(pooled[1, ..., 1, :] == 0)  # own views excluded


def test_a_renderer_that_requires_it_gets_the_object_mask_chunked_with_the_rays():
    model = pooled_model(chunk_size_grid=100 * 16)  # points: 100 rays of 16 samples per chunk
    model.renderer = RecordingRenderer(wants_object_mask=True)
    frames = sphere_batch((0.0, 90.0, 180.0))
    model(frames, evaluation_mode=TRAIN)
    call = model.renderer.calls[-1]
    expected = sample_at_ndc(frames.fg_probability[:1], call["ray_bundle"].xys, "nearest")[..., 0] > 0.5
    assert call["object_mask"].dtype == torch.bool and torch.equal(call["object_mask"], expected)
    assert expected.any() and not expected.all()
    model.renderer.calls.clear()
    with torch.no_grad():
        model.eval()(frames, evaluation_mode=EVAL)
    masks = [call["object_mask"] for call in model.renderer.calls]
    assert len(masks) == 3 and sum(m.shape[1] for m in masks) == 16 * 16  # 3 chunks of 86 rays or fewer
    model.renderer.calls.clear()
    without_fg = FrameData(camera=frames.camera, image_rgb=frames.image_rgb, sequence_name=frames.sequence_name)
    with torch.no_grad():
        model(without_fg, evaluation_mode=EVAL)
    assert all(call["object_mask"] is None for call in model.renderer.calls)
    plain = pooled_model()
    plain.renderer = RecordingRenderer(wants_object_mask=False)
    plain(frames, evaluation_mode=TRAIN)
    assert "object_mask" not in plain.renderer.calls[0]


def test_a_renderers_own_loss_terms_are_added_and_can_be_weighted():
    model = pooled_model()
    model.renderer = RecordingRenderer(extra_loss=torch.tensor(0.75))
    model.loss_weights = {"loss_rgb_mse": 1.0, "loss_extra": 0.5}
    preds = model(sphere_batch(), evaluation_mode=TRAIN)
    assert preds["loss_extra"].item() == 0.75
    assert preds["objective"].item() == pytest.approx((preds["loss_rgb_mse"] + 0.5 * preds["loss_extra"]).item())
    assert "loss_extra" not in pooled_model()(sphere_batch(), evaluation_mode=TRAIN)


def test_loss_weights_may_name_only_the_models_and_the_renderers_losses():
    with pytest.raises(ConfigError, match="'loss_eikonal', which the model .*MultiPassEmissionAbsorptionRenderer"):
        pooled_model(loss_weights={"loss_rgb_mse": 1.0, "loss_eikonal": 0.1})


def test_new_losses_are_known_and_logged():
    for name in ("rgb_l1", "rgb_huber", "mask_neg_iou", "autodecoder_norm"):
        assert f"loss_{name}" in KNOWN_LOSSES and f"loss_{name}" in GenericModel.log_vars


def test_training_steps_reach_the_extractor_and_the_codes_and_evaluation_withholds_the_target():
    model = pooled_model(n_train_target_views=2)
    frames = sphere_batch((0.0, 90.0, 180.0))
    frames.sequence_name = ["a", "a", "b"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        preds = model(frames, evaluation_mode=TRAIN)
        preds["objective"].backward()
        assert model.image_feature_extractor.stem[0].weight.grad.abs().sum() > 0
        codes_grad = model.global_encoder.autodecoder._codes.weight.grad
        assert codes_grad[0].abs().sum() > 0 and codes_grad[1].abs().sum() == 0  # "b" is no target
        optimizer.step()
    assert torch.isfinite(preds["objective"]) and torch.isfinite(preds["loss_autodecoder_norm"])
    model.eval()
    with torch.no_grad():
        preds = model(withhold_target(frames), evaluation_mode=EVAL)
    assert preds["images_render"].shape == (1, 3, 16, 16) and torch.isfinite(preds["images_render"]).all()


def test_a_fly_around_of_a_pooled_model_reads_the_source_views():
    from recon_trainer.visualization.flyaround import render_trajectory

    model = pooled_model()
    sources = sphere_batch((0.0, 90.0, 180.0))
    targets = sphere_batch((45.0, 135.0)).camera
    frames = render_trajectory(model, targets, (16, 16), sources=sources)
    assert frames["rgb"].shape == (2, 3, 16, 16) and torch.isfinite(frames["rgb"]).all()
    darker = sphere_batch((0.0, 90.0, 180.0))
    darker.image_rgb = darker.image_rgb * 0.2
    assert not torch.allclose(render_trajectory(model, targets, (16, 16), sources=darker)["rgb"], frames["rgb"])
    with pytest.raises(ValueError, match="source images"):
        render_trajectory(model, targets, (16, 16), sequence_name="sphere")
