"""OverfitModel: one pass, a separate coarse function, or one function shared by both passes."""

import pytest
import torch

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.overfit_model import OverfitModel

from .tiny_scene import sphere_batch, tiny_model_args


def make_model(**fields) -> OverfitModel:
    torch.manual_seed(0)
    return OverfitModel(**tiny_model_args(OverfitModel, **fields))


def test_defaults_have_no_passes_or_extractor_fields():
    cfg = get_default_args(OverfitModel)
    assert "num_passes" not in cfg and "image_feature_extractor_class_type" not in cfg
    assert cfg.coarse_implicit_function_class_type is None and cfg.share_implicit_function_across_passes is False
    assert "latent_dim" not in cfg.coarse_implicit_function_NeuralRadianceFieldImplicitFunction_args


def test_single_pass_by_default():
    model = make_model()
    preds = model(sphere_batch(), evaluation_mode=EvaluationMode.TRAINING)
    assert model._implicit_functions_per_pass() == [model.implicit_function]
    assert "loss_prev_stage_rgb_mse" not in preds and torch.isfinite(preds["objective"])


def test_separate_coarse_function_renders_the_first_pass():
    model = make_model(coarse_implicit_function_class_type="NeuralRadianceFieldImplicitFunction")
    coarse, fine = model._implicit_functions_per_pass()
    assert coarse is model.coarse_implicit_function and fine is model.implicit_function and coarse is not fine
    preds = model(sphere_batch(), evaluation_mode=EvaluationMode.TRAINING)
    preds["objective"].backward()
    assert torch.isfinite(preds["loss_prev_stage_rgb_mse"])
    assert all(p.grad is not None for p in coarse.parameters())


def test_shared_function_renders_both_passes():
    model = make_model(share_implicit_function_across_passes=True)
    assert model._implicit_functions_per_pass() == [model.implicit_function, model.implicit_function]
    preds = model(sphere_batch(), evaluation_mode=EvaluationMode.TRAINING)
    assert torch.isfinite(preds["loss_prev_stage_rgb_mse"])


def test_sharing_and_a_coarse_function_contradict():
    with pytest.raises(ConfigError, match="contradict"):
        make_model(
            share_implicit_function_across_passes=True,
            coarse_implicit_function_class_type="NeuralRadianceFieldImplicitFunction",
        )


def test_a_global_code_reaches_the_implicit_function_and_its_norm_is_a_loss():
    cfg = tiny_model_args(OverfitModel, global_encoder_class_type="SequenceAutodecoder")
    cfg.global_encoder_SequenceAutodecoder_args.autodecoder_args.encoding_dim = 3
    torch.manual_seed(0)
    model = OverfitModel(**cfg)
    assert model.implicit_function.latent_dim == 3
    preds = model(sphere_batch(), evaluation_mode=EvaluationMode.TRAINING)
    (preds["objective"] + preds["loss_autodecoder_norm"]).backward()
    assert model.global_encoder.autodecoder._codes.weight.grad.abs().sum() > 0
