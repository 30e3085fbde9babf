"""The depth-predictor protocol: metric alignment of each kind of prediction on constructed cases
(exact recovery of a known scale, or scale and shift in disparity), its refusals, and loading a
depth model from a tiny MiDaS run directory (config and checkpoint written as the trainer does)."""
import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from recon_trainer.config import ConfigError, expand_args_fields
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.experiment import Experiment
from recon_trainer.fileio import atomic_write
from recon_trainer.models.base import EvaluationMode
from recon_trainer.models.depth_predictor import (
    ALIGNMENT_MODES,
    DEPTH_KINDS,
    DepthPrediction,
    DepthPredictor,
    align_depth,
    load_depth_predictor,
    median,
)
from recon_trainer.training.checkpoints import TrainingCheckpoint, config_digest, save_checkpoint
from recon_trainer.training.run_directory import EXPCONFIG_FILE


def scene_depth(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """(B, 6, 8) depths in [1, 5] m with a few unknown (0) pixels."""
    g = torch.Generator().manual_seed(seed)
    depth = 1 + 4 * torch.rand(batch, 6, 8, generator=g)
    depth[:, 0, :3] = 0
    return depth


def test_constants():
    assert DEPTH_KINDS == ("metric", "relative_depth", "disparity")
    assert ALIGNMENT_MODES == ("none", "per_scene", "prior_scale")


def test_per_scene_recovers_the_scale_of_relative_depth():
    truth = 1 + 4 * torch.rand(2, 6, 8, generator=torch.Generator().manual_seed(1))
    reference = truth.clone()
    reference[:, 0, :3] = 0  # unknown reference pixels are left out of the fit, yet get a depth
    scales = torch.tensor([0.2, 7.0])
    prediction = DepthPrediction(truth / scales[:, None, None], "relative_depth")
    torch.testing.assert_close(align_depth(prediction, reference, "per_scene"), truth, rtol=1e-6, atol=0)


def test_per_scene_scale_is_the_median_ratio():
    g = torch.Generator().manual_seed(2)
    reference, values = scene_depth(1, seed=3), 0.5 + torch.rand(1, 6, 8, generator=g)
    fit = reference[0].numpy() > 0
    expected = np.median(reference[0].numpy()[fit]) / np.median(values[0].numpy()[fit])
    aligned = align_depth(DepthPrediction(values, "relative_depth"), reference, "per_scene")
    torch.testing.assert_close(aligned, values * float(expected), rtol=1e-6, atol=0)
    assert median(torch.tensor([4.0, 1.0, 3.0, 2.0])).item() == 2.5


def test_per_scene_recovers_depth_from_disparity_up_to_scale_and_shift():
    truth = 1 + 4 * torch.rand(2, 6, 8, generator=torch.Generator().manual_seed(4))
    reference = truth.clone()
    reference[:, 0, :3] = 0
    scale, shift = torch.tensor([3.0, 0.5]), torch.tensor([-0.1, 0.2])
    disparity = (1 / truth) * scale[:, None, None] + shift[:, None, None]
    aligned = align_depth(DepthPrediction(disparity, "disparity"), reference, "per_scene")
    # without max_depth the depth is capped at each image's largest reference depth (MiDaS's protocol)
    largest = reference.flatten(1).amax(1)[:, None, None]
    torch.testing.assert_close(aligned, torch.minimum(truth, largest), rtol=1e-5, atol=0)
    assert (aligned[reference == 0] < truth[reference == 0]).any()  # some unknown pixel was farther
    capped = align_depth(DepthPrediction(disparity, "disparity"), reference, "per_scene", max_depth=3.0)
    torch.testing.assert_close(capped, truth.clamp(max=3.0), rtol=1e-5, atol=0)


def test_prior_scale_multiplies_relative_depth_and_divides_disparity():
    values = torch.tensor([[[0.5, 2.0], [1.0, 0.0]]])
    relative = align_depth(DepthPrediction(values, "relative_depth"), None, "prior_scale", prior_scale=3.0)
    torch.testing.assert_close(relative, torch.tensor([[[1.5, 6.0], [3.0, 0.0]]]))
    depth = align_depth(DepthPrediction(values, "disparity"), None, "prior_scale", prior_scale=3.0)
    torch.testing.assert_close(depth, torch.tensor([[[6.0, 1.5], [3.0, 0.0]]]))  # zero disparity: unknown
    capped = align_depth(DepthPrediction(values, "disparity"), None, "prior_scale", prior_scale=3.0, max_depth=4.0)
    torch.testing.assert_close(capped, torch.tensor([[[4.0, 1.5], [3.0, 4.0]]]))


def test_none_keeps_metric_depth_and_refuses_relative_kinds():
    metric = scene_depth()
    torch.testing.assert_close(align_depth(DepthPrediction(metric, "metric"), None, "none"), metric)
    for kind in ("relative_depth", "disparity"):
        with pytest.raises(ConfigError, match=f"it is {kind}.*per_scene.*prior_scale"):
            align_depth(DepthPrediction(metric, kind), None, "none")


def test_invalid_pixels_are_unknown_and_left_out_of_the_fit():
    truth = scene_depth(1)
    values = truth / 2
    valid = torch.ones_like(truth, dtype=torch.bool)
    valid[0, 3:, :] = False
    values[0, 3:, :] = 1e6  # garbage where the model says it is invalid
    values[0, 2, 5] = float("nan")
    aligned = align_depth(DepthPrediction(values, "relative_depth", valid), truth, "per_scene")
    known = valid & torch.isfinite(values) & (truth > 0)
    torch.testing.assert_close(aligned[known], truth[known], rtol=1e-6, atol=0)
    assert (aligned[~valid] == 0).all() and aligned[0, 2, 5] == 0 and aligned.dtype == torch.float32


def test_alignment_errors():
    prediction = DepthPrediction(scene_depth(), "relative_depth")
    with pytest.raises(ConfigError, match="'per_scene' needs each sample's ground-truth depth"):
        align_depth(prediction, None, "per_scene")
    with pytest.raises(ConfigError, match="expected one of none, per_scene, prior_scale"):
        align_depth(prediction, None, "median")
    with pytest.raises(ConfigError, match="prior_scale=0"):
        align_depth(prediction, None, "prior_scale", prior_scale=0)
    with pytest.raises(ValueError, match="image 1 of the batch has no pixel"):
        reference = scene_depth()
        reference[1] = 0
        align_depth(prediction, reference, "per_scene")
    with pytest.raises(ValueError, match="same"):
        align_depth(prediction, scene_depth()[:, :4], "per_scene")
    with pytest.raises(ValueError, match="expected one of metric, relative_depth, disparity"):
        DepthPrediction(scene_depth(), "depth")
    with pytest.raises(ValueError, match=r"expected \(B, H, W\)"):
        DepthPrediction(scene_depth()[0], "metric")


# ------------------------------------------------------------------------------- loading from a run

def write_run(exp_dir: str, config: str, overrides, shift_weights: float = 0.0, epochs=(0,)) -> torch.nn.Module:
    """A run directory as the trainer leaves it: exp_dir/expconfig.yaml (the resolved config) and one
    checkpoint per epoch in `epochs` (the model's weights shifted by shift_weights * (epoch + 1)).
    Returns the model of the last checkpoint."""
    experiment = Experiment(**compose_config(config, [f"exp_dir={exp_dir}", *overrides]))
    model = experiment.model_factory(exp_dir=exp_dir)
    os.makedirs(exp_dir, exist_ok=True)
    config_yaml = OmegaConf.to_yaml(experiment.resolved_config())
    atomic_write(os.path.join(exp_dir, EXPCONFIG_FILE), config_yaml)
    start = {key: value.clone() for key, value in model.state_dict().items()}
    for epoch in epochs:
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if value.is_floating_point():
                    value.copy_(start[key] + shift_weights * (epoch + 1))
        save_checkpoint(TrainingCheckpoint(epoch=epoch, batches_done=1, epoch_finished=True, global_step=epoch + 1,
                                           model=model.state_dict(), config_yaml=config_yaml,
                                           config_digest=config_digest(config_yaml)), exp_dir)
    return model


MIDAS = ["+preset=midas_quick", "model_factory_ReconModelFactory_args.model_MidasModel_args.features=16",
         "model_factory_ReconModelFactory_args.model_MidasModel_args.net_size=64"]


@pytest.fixture(scope="module")
def midas_run(tmp_path_factory):
    expand_args_fields(Experiment)
    store_root_config(Experiment)
    exp_dir = str(tmp_path_factory.mktemp("depth_runs") / "midas")
    model = write_run(exp_dir, "midas_redweb", MIDAS, shift_weights=1e-3, epochs=(0, 1))
    return exp_dir, model.eval()


def image(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 48, 64, generator=torch.Generator().manual_seed(5))


def test_loads_the_newest_checkpoint_of_a_run_directory(midas_run):
    exp_dir, saved = midas_run
    rng = torch.get_rng_state()
    model = load_depth_predictor(exp_dir, "cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # building the model drew no random numbers of the caller's
    assert isinstance(model, DepthPredictor) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    for key, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    prediction = model.predict_depth(image())
    assert prediction.kind == "disparity" and prediction.values.shape == (2, 48, 64)
    assert prediction.values.dtype == torch.float32 and (prediction.values >= 0).all()
    with torch.no_grad():
        from recon_trainer_plugins.midas.batch import DepthBatch

        expected = saved(DepthBatch(image_rgb=image()), evaluation_mode=EvaluationMode.EVALUATION)["disparity"][:, 0]
    torch.testing.assert_close(prediction.values, expected)


def test_loads_a_chosen_checkpoint_file(midas_run):
    exp_dir, saved = midas_run
    older = load_depth_predictor(os.path.join(exp_dir, "checkpoint_epoch_00000000.pth"))
    key = next(k for k, v in saved.state_dict().items() if v.is_floating_point())
    torch.testing.assert_close(older.state_dict()[key], saved.state_dict()[key] - 1e-3)


def test_the_moving_average_of_the_weights_is_used_as_the_run_evaluated_with_it(tmp_path, midas_run):
    exp_dir, saved = midas_run
    (tmp_path / EXPCONFIG_FILE).write_text(open(os.path.join(exp_dir, EXPCONFIG_FILE)).read())
    name, param = next(iter(saved.named_parameters()))
    ema = {"decay": 0.9, "n_averaged": 3, "averages": {name: param.detach() + 0.25}}
    save_checkpoint(TrainingCheckpoint(epoch=0, batches_done=1, epoch_finished=True, global_step=1,
                                       model=saved.state_dict(), ema=ema), str(tmp_path))
    model = load_depth_predictor(str(tmp_path))
    torch.testing.assert_close(dict(model.named_parameters())[name], param.detach() + 0.25)


def test_a_run_whose_model_predicts_no_depth_is_refused(tmp_path, midas_run):
    exp_dir = str(tmp_path / "nerf")
    write_run(exp_dir, "default_config", [])
    with pytest.raises(ConfigError, match=f"depth predictor '{exp_dir}'.*GenericModel has no predict_depth"):
        load_depth_predictor(exp_dir)


def test_paths_that_are_not_runs_are_refused(tmp_path, midas_run):
    with pytest.raises(ConfigError, match="no such file or folder; expected a recon_trainer run directory"):
        load_depth_predictor(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="expconfig.yaml is missing"):
        load_depth_predictor(str(tmp_path))
    exp_dir, _ = midas_run
    empty_run = tmp_path / "no_checkpoint"
    empty_run.mkdir()
    (empty_run / EXPCONFIG_FILE).write_text((open(os.path.join(exp_dir, EXPCONFIG_FILE)).read()))
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        load_depth_predictor(str(empty_run))
    broken = empty_run / "checkpoint_epoch_00000003.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable recon_trainer checkpoint"):
        load_depth_predictor(str(broken))


# ------------------------------------------------------------------------- the plugins' implementations

@pytest.mark.parametrize("version, scale_head, kind", [("v1", True, "relative_depth"), ("v2", True, "metric"),
                                                      ("v2", False, "relative_depth")])
def test_moge_predicts_metric_depth_only_with_a_scale_head(version, scale_head, kind):
    from recon_trainer_plugins.moge.inference import infer
    from recon_trainer_plugins.moge.model import MoGeModel
    from tests.plugins.moge.tiny_networks import v1_config, v2_config

    torch.manual_seed(0)
    network = v1_config() if version == "v1" else v2_config(**({} if scale_head else {"scale_head": None}))
    model = MoGeModel(version=version, network=network, resolution_level=0).eval()
    images = torch.rand(2, 3, 28, 36, generator=torch.Generator().manual_seed(6))
    prediction = model.predict_depth(images)
    assert isinstance(model, DepthPredictor)
    assert prediction.kind == kind and prediction.values.shape == (2, 28, 36)
    assert prediction.values.dtype == torch.float32 and prediction.valid.dtype == torch.bool
    expected = infer(model.net, images, num_tokens=model.num_tokens_at_level(0), apply_mask=False)
    torch.testing.assert_close(prediction.values, expected["depth"])
    torch.testing.assert_close(prediction.valid, expected["mask"])
