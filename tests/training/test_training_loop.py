"""ReconTrainingLoop through Experiment.run on the toy plugin: resume, guards, precision, evaluation."""
import json
import logging
import os
import re

import pytest
import torch

from recon_trainer.experiment import Experiment
from recon_trainer.training.checkpoints import checkpoint_file_name, find_checkpoint, list_checkpoints
from recon_trainer.training.finite_guard import NonFiniteLossError

from .helpers import assert_same_state, final_checkpoint
from .toy_plugin import toy_config


def run(cfg):
    experiment = Experiment(**cfg)
    experiment.run()
    return experiment


def loop_args(cfg):
    return cfg.training_loop_ReconTrainingLoop_args


def exponential_lr(cfg):
    optimizer = cfg.optimizer_factory_ReconOptimizerFactory_args
    optimizer.lr = 5e-4
    optimizer.lr_policy = "Exponential"
    optimizer.gamma = 0.1
    optimizer.exponential_lr_step_size = 2
    return cfg


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, caplog):
    whole = exponential_lr(toy_config(tmp_path / "whole", max_epochs=4))
    run(whole)
    parts = exponential_lr(toy_config(tmp_path / "parts", max_epochs=2))
    run(parts)
    assert final_checkpoint(tmp_path / "parts").optimizer["param_groups"][0]["lr"] == 5e-05
    loop_args(parts).max_epochs = 4
    with caplog.at_level(logging.INFO):
        run(parts)
    assert any("Resuming from" in r.getMessage() and checkpoint_file_name(1) in r.getMessage() for r in caplog.records)
    a, b = final_checkpoint(tmp_path / "whole"), final_checkpoint(tmp_path / "parts")
    assert_same_state(a, b)
    assert a.optimizer["param_groups"][0]["lr"] == 5e-4 * 0.1 ** 2
    assert a.stats["n_updates"]["train"] == {0: 6, 1: 6, 2: 6, 3: 6}
    assert sorted(a.stats["history"]) == ["train", "val"] and os.path.isfile(tmp_path / "whole" / "train_stats.png")


def test_step_budget_stops_mid_epoch_and_a_larger_budget_continues_exactly(tmp_path):
    whole = toy_config(tmp_path / "whole", max_steps=14)
    run(whole)
    parts = toy_config(tmp_path / "parts", max_steps=8)
    run(parts)
    stopped = final_checkpoint(tmp_path / "parts")
    assert (stopped.epoch, stopped.batches_done, stopped.global_step) == (1, 2, 8) and not stopped.epoch_finished
    run(parts)  # the same command again: the budget is spent, nothing changes
    assert list_checkpoints(str(tmp_path / "parts"))[-1].path == stopped.path
    loop_args(parts).max_steps = 14
    run(parts)
    assert_same_state(final_checkpoint(tmp_path / "whole"), final_checkpoint(tmp_path / "parts"))
    assert final_checkpoint(tmp_path / "whole").resume_position == (2, 2)


def test_changed_config_warns_with_the_differing_keys(tmp_path, caplog):
    cfg = toy_config(tmp_path, max_epochs=1)
    run(cfg)
    loop_args(cfg).max_epochs = 2
    cfg.optimizer_factory_ReconOptimizerFactory_args.lr = 0.02
    with caplog.at_level(logging.WARNING):
        run(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "differs in 2 key(s)" in warnings[0] and checkpoint_file_name(0) in warnings[0]
    assert "optimizer_factory_ReconOptimizerFactory_args.lr: 0.01 -> 0.02" in warnings[0]
    assert "training_loop_ReconTrainingLoop_args.max_epochs: 1 -> 2" in warnings[0]


def test_chosen_epoch_and_fresh_start(tmp_path, caplog):
    cfg = toy_config(tmp_path, max_epochs=3, checkpoint_keep_last=0)
    run(cfg)
    factory = cfg.model_factory_ReconModelFactory_args
    factory.resume_epoch = 0
    experiment = Experiment(**cfg)
    experiment.model_factory(exp_dir=str(tmp_path))
    assert experiment.model_factory.resumed_checkpoint().path.endswith(checkpoint_file_name(0))
    factory.resume_epoch = -1
    factory.resume = False
    loop_args(cfg).max_epochs = 1
    with caplog.at_level(logging.WARNING):
        run(cfg)
    assert any("Starting afresh where an earlier run left checkpoints: moved 5 file(s)" in r.getMessage()
               for r in caplog.records)
    assert [f.epoch for f in list_checkpoints(str(tmp_path))] == [0]
    (earlier,) = os.listdir(tmp_path / "earlier_runs")  # nothing deleted
    assert [f.epoch for f in list_checkpoints(str(tmp_path / "earlier_runs" / earlier))] == [0, 1, 2]


def test_non_finite_objective_stops_before_the_step_and_saves_nothing_bad(tmp_path):
    cfg = toy_config(tmp_path, checkpoint_interval_steps=1)
    cfg.model_factory_ReconModelFactory_args.model_ToyModel_args.nan_at_forward = 8  # epoch 1, batch 2
    with pytest.raises(NonFiniteLossError) as raised:
        run(cfg)
    message = str(raised.value)
    assert re.match(
        r"Non-finite objective at epoch 1, batch 2, frames (toy_train/\d+, ){3}toy_train/\d+: "
        r"loss_mse=[0-9.]+, loss_l1=[0-9.]+, objective=nan\. The largest parameter magnitude is [0-9.]+\. "
        r"The optimizer did not step",
        message,
    ), message
    assert checkpoint_file_name(1, 2) in message
    newest = final_checkpoint(tmp_path)
    assert (newest.epoch, newest.batches_done, newest.global_step) == (1, 2, 8)


def test_skip_nonfinite_steps_skips_the_bad_step_and_trains_on(tmp_path):
    cfg = toy_config(tmp_path)
    cfg.model_factory_ReconModelFactory_args.model_ToyModel_args.nan_at_forward = 8  # epoch 1, batch 2
    loop_args(cfg).skip_nonfinite_steps = True
    experiment = run(cfg)
    newest = final_checkpoint(tmp_path)
    assert newest.epoch == loop_args(cfg).max_epochs - 1
    parameters = torch.cat([p.detach().flatten() for p in experiment.model_factory.model.parameters()])
    assert torch.isfinite(parameters).all()  # the NaN step changed nothing


def test_gradient_accumulation_equals_the_combined_batch(tmp_path):
    def sgd_run(name, batch_size, accumulation):
        cfg = toy_config(tmp_path / name, max_epochs=1, gradient_accumulation_steps=accumulation)
        cfg.data_source_ToyDataSource_args.batch_size = batch_size
        cfg.model_factory_ReconModelFactory_args.model_ToyModel_args.input_noise_std = 0.0
        cfg.optimizer_factory_ReconOptimizerFactory_args.breed = "SGD"
        cfg.optimizer_factory_ReconOptimizerFactory_args.lr = 0.1
        run(cfg)
        return final_checkpoint(tmp_path / name)

    accumulated, combined = sgd_run("accumulated", 4, 2), sgd_run("combined", 8, 1)
    assert accumulated.global_step == combined.global_step == 3
    for name, value in combined.model.items():
        torch.testing.assert_close(accumulated.model[name], value, rtol=1e-5, atol=1e-6)


def test_bf16_mixed_precision_runs_on_cpu(tmp_path):
    experiment = run(toy_config(tmp_path, max_epochs=1, mixed_precision="bf16"))
    assert experiment.model_factory.model.autocast_dtype == torch.bfloat16
    train = final_checkpoint(tmp_path).stats["history"]["train"]
    assert all(torch.isfinite(torch.tensor(v[0])) for v in train.values())


def test_eval_only_evaluates_the_checkpoint_without_training(tmp_path):
    cfg = toy_config(tmp_path, max_epochs=2)
    run(cfg)
    before = [(f.path, os.path.getmtime(f.path)) for f in list_checkpoints(str(tmp_path))]
    loop_args(cfg).eval_only = True
    run(cfg)
    result = json.loads((tmp_path / "results_test.json").read_text())
    assert result[0]["eval_epoch"] == 1 and result[0]["metrics"]["mse"] > 0
    assert [(f.path, os.path.getmtime(f.path)) for f in list_checkpoints(str(tmp_path))] == before


def test_named_test_sets_are_evaluated_one_by_one_when_asked(tmp_path):
    cfg = toy_config(tmp_path, max_epochs=1, test_when_finished=True, separate_test_sets=True)
    cfg.data_source_ToyDataSource_args.n_test_sets = 2
    run(cfg)
    result = json.loads((tmp_path / "results_test.json").read_text())
    assert sorted(result) == ["part0", "part1"]
    whole = toy_config(tmp_path / "whole", max_epochs=1, test_when_finished=True)
    run(whole)
    overall = json.loads((tmp_path / "whole" / "results_test.json").read_text())[0]["metrics"]["mse"]
    parts = [result[name][0]["metrics"]["mse"] for name in ("part0", "part1")]
    assert overall == pytest.approx(sum(parts) / 2)  # the same run; each part holds half of the 8 frames


def test_eval_only_needs_a_test_split(tmp_path):
    cfg = toy_config(tmp_path, eval_only=True)
    cfg.data_source_ToyDataSource_args.n_test = 0
    with pytest.raises(ValueError, match="eval_only=true needs a test loader"):
        run(cfg)


def test_test_when_finished_writes_results_and_status_lines(tmp_path, capsys):
    run(toy_config(tmp_path, max_epochs=2, test_when_finished=True, metric_print_interval=3))
    result = json.loads((tmp_path / "results_test.json").read_text())
    assert result[0]["eval_epoch"] == 1
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r"\[train\] \| epoch   0 \| it    3/6 \| objective: [0-9.]+ \| l1: [0-9.]+ \| mse: [0-9.]+ \| lr: 0\.01 "
        r"\| sec/it: [0-9.e-]+",
        out[0],
    ), out[0]
    assert any(re.fullmatch(r"\[val\] \| epoch   1 \| mse: [0-9.]+", line) for line in out)
    assert re.fullmatch(r"\[test\] \| epoch   1 \| mse: [0-9.]+", out[-1]), out[-1]


def test_newest_readable_checkpoint_is_used_after_a_corrupt_one(tmp_path, caplog):
    cfg = toy_config(tmp_path, max_epochs=2)
    run(cfg)
    newest = list_checkpoints(str(tmp_path))[-1].path
    with open(newest, "wb") as f:
        f.write(b"garbage")
    with caplog.at_level(logging.WARNING):
        found = find_checkpoint(str(tmp_path))
    assert found.epoch == 0 and sum(newest in r.getMessage() for r in caplog.records) == 1
