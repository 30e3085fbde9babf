"""The EMA of the weights: its values, its place in checkpoints, resume, and evaluation with it."""
import copy

import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.experiment import Experiment
from recon_trainer.training.checkpoints import list_checkpoints, load_checkpoint
from recon_trainer.training.ema import WeightEMA, load_averaged_weights

from . import toy_plugin
from .helpers import assert_same_state, final_checkpoint
from .toy_plugin import toy_config

MODEL = "model_factory_ReconModelFactory_args"


def test_update_is_swa_utils_ema_and_the_hand_computed_average():
    model = torch.nn.Linear(3, 2)
    ema = WeightEMA(model, decay=0.75)
    reference = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.75)
    )
    history = []
    for step in range(5):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param))
        history.append({name: p.detach().clone() for name, p in model.named_parameters()})
        ema.update(model)
        reference.update_parameters(model)
    for name, averaged in zip(("weight", "bias"), reference.module.parameters()):
        expected = history[0][name]  # the first update copies
        for weights in history[1:]:
            expected = 0.75 * expected + 0.25 * weights[name]
        torch.testing.assert_close(ema.averages[name], expected, rtol=1e-6, atol=1e-7)
        assert torch.equal(ema.averages[name], averaged)


def test_applied_to_swaps_the_weights_in_and_back_buffers_stay():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(model, decay=0.5)
    own = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model[0].weight.fill_(4.0)
    ema.update(model)
    with torch.no_grad():
        model[0].weight.fill_(8.0)
    ema.update(model)  # 0.5 * 4 + 0.5 * 8 (exact in binary)
    model[1].running_mean.fill_(3.0)
    with pytest.raises(RuntimeError), ema.applied_to(model):
        assert torch.equal(model[0].weight, torch.full((2, 2), 6.0))
        assert torch.equal(model[0].bias, own["0.bias"])
        assert torch.equal(model[1].running_mean, torch.full((2,), 3.0))  # buffers: the model's own
        raise RuntimeError("an evaluation that fails")
    assert torch.equal(model[0].weight, torch.full((2, 2), 8.0))  # put back after the exception
    restored = WeightEMA(model, decay=0.9)
    assert restored.load_state_dict(ema.state_dict()) == []
    assert restored.n_averaged == 2 and torch.equal(restored.averages["0.weight"], torch.full((2, 2), 6.0))


def test_decay_must_be_below_one(tmp_path):
    with pytest.raises(ConfigError, match=r"ema_decay=1.0: expected 0 \(no EMA\) or 0 < decay < 1"):
        Experiment(**toy_config(tmp_path, ema_decay=1.0))


def ema_run(tmp_path, name, **loop_args):
    cfg = toy_config(tmp_path / name, ema_decay=0.6, **loop_args)
    cfg.optimizer_factory_ReconOptimizerFactory_args.breed = "SGD"
    cfg[MODEL].model_ToyModel_args.record_hooks = True
    return cfg


def test_trainer_keeps_the_hand_computed_average_and_saves_it(tmp_path):
    experiment = Experiment(**ema_run(tmp_path, "run", max_epochs=2))
    experiment.run()
    # the weights after step k are what on_train_step_start sees before step k + 1; the last from the checkpoint
    steps = [weights for step, _, weights in experiment.model_factory.model.hook_calls if step > 0]
    saved = final_checkpoint(tmp_path / "run")
    steps.append({name: saved.model[name] for name in steps[0]})
    assert len(steps) == saved.global_step == 12
    assert saved.ema["n_averaged"] == 12 and saved.ema["decay"] == 0.6
    for name in steps[0]:
        expected = steps[0][name]
        for weights in steps[1:]:
            expected = 0.6 * expected + 0.4 * weights[name]
        torch.testing.assert_close(saved.ema["averages"][name], expected, rtol=1e-6, atol=1e-7)
        assert not torch.equal(saved.ema["averages"][name], saved.model[name])


def test_resume_keeps_the_average_exactly(tmp_path):
    Experiment(**ema_run(tmp_path, "whole", max_epochs=3)).run()
    parts = ema_run(tmp_path, "parts", max_epochs=3, max_steps=8, checkpoint_interval_steps=3)
    Experiment(**parts).run()
    parts.training_loop_ReconTrainingLoop_args.max_steps = -1
    Experiment(**parts).run()
    whole, resumed = final_checkpoint(tmp_path / "whole"), final_checkpoint(tmp_path / "parts")
    assert_same_state(whole, resumed)
    assert whole.ema["n_averaged"] == resumed.ema["n_averaged"] == 18
    for name, value in whole.ema["averages"].items():
        assert torch.equal(resumed.ema["averages"][name], value), name


def evaluate_val(weights, exp_dir):
    """ToyEvaluator's val mse of a ToyModel holding `weights`."""
    model = toy_plugin.ToyModel()
    model.load_state_dict(weights, strict=False)
    model.eval()
    _, loaders = toy_plugin.ToyDataSource().get_datasets_and_dataloaders()
    return toy_plugin.ToyEvaluator().run(model=model, dataloader=loaders.val, device=torch.device("cpu"),
                                         exp_dir=str(exp_dir))["mse"]


@pytest.mark.parametrize("for_evaluation", [True, False])
def test_validation_uses_the_average_when_asked(tmp_path, for_evaluation):
    Experiment(**ema_run(tmp_path, "run", max_epochs=1, ema_for_evaluation=for_evaluation)).run()
    saved = final_checkpoint(tmp_path / "run")
    validated = saved.stats["history"]["val"]["mse"][0]
    with_ema = evaluate_val(saved.ema["averages"], tmp_path)
    without = evaluate_val(saved.model, tmp_path)
    assert abs(with_ema - without) > 1e-4
    assert validated == pytest.approx(with_ema if for_evaluation else without, rel=1e-6)


def test_a_checkpoint_without_an_ema_still_loads_and_starts_the_average(tmp_path, caplog):
    cfg = toy_config(tmp_path, max_epochs=1)
    Experiment(**cfg).run()
    path = list_checkpoints(str(tmp_path))[-1].path
    content = torch.load(path, weights_only=True)
    del content["ema"]  # as written before the entry existed
    torch.save(content, path)
    assert load_checkpoint(path).ema is None
    cfg.training_loop_ReconTrainingLoop_args.max_epochs = 2
    cfg.training_loop_ReconTrainingLoop_args.ema_decay = 0.9
    Experiment(**cfg).run()
    assert any("holds no EMA of the weights" in r.getMessage() for r in caplog.records)
    assert final_checkpoint(tmp_path).ema["n_averaged"] == 6


def test_saved_averages_can_be_put_into_a_model_for_good():
    model = torch.nn.Linear(3, 2)
    ema = WeightEMA(model, decay=0.5)
    ema.update(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    fresh = torch.nn.Linear(3, 2)
    load_averaged_weights(fresh, ema.state_dict())
    assert torch.equal(fresh.weight, ema.averages["weight"]) and torch.equal(fresh.bias, ema.averages["bias"])
    assert not torch.equal(fresh.weight, model.weight)
