"""Per-step and per-epoch learning-rate schedules against torch's reference schedulers, across a
resume, and through the trainer."""
import io
import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.experiment import Experiment
from recon_trainer.training.checkpoints import (
    TrainingCheckpoint,
    load_scheduler_state_dict,
    restore_optimizer_and_scheduler,
    scheduler_state_dict,
)
from recon_trainer.training.optimizer_factory import ReconOptimizerFactory
from recon_trainer.training.schedules import ScheduleLR

from .helpers import assert_same_state, final_checkpoint
from .toy_plugin import toy_config

MOGE_FREEZE = "max(0.0, min(1.0, (t - {start}) / {length}))"  # MoGe v1's string, torch's `epoch` written t


class TwoGroups(torch.nn.Module):
    """A head ("default" group) and a backbone (group "backbone"), like MoGe's two groups."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 1)
        self.backbone = torch.nn.Linear(2, 2)
        self.param_groups = {"backbone": "backbone"}


def one_group() -> torch.nn.Module:
    return torch.nn.Linear(2, 1)


def factory(**fields) -> ReconOptimizerFactory:
    """ReconOptimizerFactory built from its default config (the path a YAML config takes);
    `schedule_args` entries go to the nested node."""
    cfg = get_default_args(ReconOptimizerFactory)
    cfg.breed = "SGD"
    for key, value in fields.pop("schedule_args", {}).items():
        cfg.schedule_args[key] = value
    for key, value in fields.items():
        cfg[key] = value
    return ReconOptimizerFactory(**cfg)


def rates(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


def assert_close(got, expected, rel=1e-12, abs_=1e-20):
    """Lists of per-group rates (one list per step) equal within float rounding."""
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert a == pytest.approx(b, rel=rel, abs=abs_), f"step {index}: {a} != {b}"


def run_torch(optimizer, scheduler, n_steps):
    """The rates in use at each of n_steps steps of a torch scheduler (stepped after each)."""
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "scheduler.step() before optimizer.step()" notices
        for _ in range(n_steps):
            seen.append(rates(optimizer))
            optimizer.step()
            scheduler.step()
    return seen


def run_ours(optimizer, scheduler, n_steps):
    seen = []
    for _ in range(n_steps):
        seen.append(rates(optimizer))
        optimizer.step()
        scheduler.step()
    return seen


def sgd(model, lr, group_lr=None):
    groups = [{"params": model.head.parameters(), "lr": lr}]
    if group_lr is not None:
        groups.append({"params": model.backbone.parameters(), "lr": group_lr})
    return torch.optim.SGD(groups, lr=lr)


def moge_factory(start=1000, length=1000, milestone=2000, step_size=25000):
    return factory(
        lr=1e-4, group_learning_rates={"backbone": 1e-5}, lr_policy="SequentialLR",
        schedule_args={
            "unit": "step",
            "stages": [
                {"policy": "LambdaLR",
                 "group_lr_lambdas": {"backbone": MOGE_FREEZE.format(start=start, length=length)}},
                {"policy": "StepLR", "step_size": step_size, "gamma": 0.5},
            ],
            "stage_milestones": [milestone],
        },
    )


def moge_torch(start=1000, length=1000, milestone=2000, step_size=25000):
    """MoGe v1's scheduler with torch: SequentialLR([LambdaLR(["1.0", freeze]), StepLR], [milestone])."""
    model = TwoGroups()
    optimizer = sgd(model, 1e-4, 1e-5)
    freeze = lambda epoch: max(0.0, min(1.0, (epoch - start) / length))  # noqa: E731
    scheduler = torch_lr.SequentialLR(
        optimizer,
        [torch_lr.LambdaLR(optimizer, [lambda epoch: 1.0, freeze]),
         torch_lr.StepLR(optimizer, step_size=step_size, gamma=0.5)],
        milestones=[milestone],
    )
    return optimizer, scheduler


# --------------------------------------------------------------------- against torch's schedulers


def test_warmup_cosine_matches_torch_linear_then_cosine():
    warmup, end, start_factor, min_factor, lr = 5, 40, 0.1, 0.01, 0.2
    ours_optimizer, ours = factory(
        lr=lr, lr_policy="WarmupCosine",
        schedule_args={"unit": "step", "warmup": warmup, "cosine_end": end, "warmup_start_factor": start_factor,
                       "min_factor": min_factor},
    )(model=one_group(), exp_dir="")
    assert isinstance(ours, ScheduleLR) and ours.unit == "step"
    optimizer = torch.optim.SGD(one_group().parameters(), lr=lr)
    reference = torch_lr.SequentialLR(
        optimizer,
        [torch_lr.LinearLR(optimizer, start_factor=start_factor, total_iters=warmup),
         torch_lr.CosineAnnealingLR(optimizer, T_max=end - warmup, eta_min=min_factor * lr)],
        milestones=[warmup],
    )
    expected = run_torch(optimizer, reference, end + 1)
    got = run_ours(ours_optimizer, ours, end + 1)
    assert_close(got, expected)
    assert got[-1] == [min_factor * lr]
    ours_optimizer.step()
    ours.step()
    assert rates(ours_optimizer) == [min_factor * lr]  # stays at the minimum after cosine_end


def test_warmup_cosine_is_dust3rs_adjust_learning_rate():
    """DUSt3R / Spann3R: lr * t / warmup during the warm-up, then min_lr + (lr - min_lr) * half a cosine."""
    lr, min_lr, warmup, epochs = 1e-4, 1e-6, 3, 10
    optimizer, scheduler = factory(
        lr=lr, lr_policy="WarmupCosine",
        schedule_args={"warmup": warmup, "cosine_end": epochs, "min_factor": min_lr / lr},
    )(model=one_group(), exp_dir="")
    for epoch in range(epochs):
        if epoch < warmup:
            expected = lr * epoch / warmup
        else:
            expected = min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))
        assert rates(optimizer)[0] == pytest.approx(expected, rel=1e-12, abs=1e-18), epoch
        scheduler.step()


def test_moge_v1_scaled_down_matches_torch_step_by_step():
    kwargs = {"start": 10, "length": 10, "milestone": 20, "step_size": 7}
    optimizer, reference = moge_torch(**kwargs)
    expected = run_torch(optimizer, reference, 80)
    ours_optimizer, ours = moge_factory(**kwargs)(model=TwoGroups(), exp_dir="")
    assert [group["name"] for group in ours_optimizer.param_groups] == ["default", "backbone"]
    got = run_ours(ours_optimizer, ours, 80)
    assert_close(got, expected)
    assert got[10][1] == 0.0 and got[15][1] == pytest.approx(0.5e-5) and got[20] == [1e-4, 1e-5]
    assert got[27] == [0.5e-4, 0.5e-5]


def test_moge_v1_full_size_at_its_turning_points():
    points = [0, 999, 1000, 1001, 1500, 1999, 2000, 2001, 26999, 27000, 52000]
    optimizer, reference = moge_torch()
    expected = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(points[-1] + 1):
            if step in points:
                expected[step] = rates(optimizer)
            reference.step()
    ours_optimizer, ours = moge_factory()(model=TwoGroups(), exp_dir="")
    for step in points:
        assert_close([ours.advance(epoch=0, step=step)], [expected[step]])
    assert expected[1500] == pytest.approx([1e-4, 0.5e-5]) and expected[52000] == pytest.approx([2.5e-5, 2.5e-6])


def test_multistep_and_step_policies_per_step_match_torch():
    for policy, fields, make in [
        ("MultiStepLR", {"multistep_lr_milestones": [3, 7], "gamma": 0.5},
         lambda opt: torch_lr.MultiStepLR(opt, milestones=[3, 7], gamma=0.5)),
        ("StepLR", {"schedule_args": {"unit": "step", "step_size": 4}, "gamma": 0.3},
         lambda opt: torch_lr.StepLR(opt, step_size=4, gamma=0.3)),
    ]:
        optimizer = torch.optim.SGD(one_group().parameters(), lr=0.1)
        expected = run_torch(optimizer, make(optimizer), 12)
        fields.setdefault("schedule_args", {"unit": "step"})
        ours_optimizer, ours = factory(lr=0.1, lr_policy=policy, **fields)(model=one_group(), exp_dir="")
        assert_close(run_ours(ours_optimizer, ours, 12), expected)


def test_lambda_sees_epoch_and_step():
    optimizer, scheduler = factory(
        lr=1.0, lr_policy="LambdaLR", schedule_args={"unit": "step", "lr_lambda": "0.5 ** epoch + step / 100"},
    )(model=one_group(), exp_dir="")
    assert scheduler.advance(epoch=2, step=30) == [0.25 + 0.3]
    scheduler.step()  # one unit: a step
    assert (scheduler.epoch, scheduler.global_step, rates(optimizer)) == (2, 31, [0.25 + 0.31])


# --------------------------------------------------------------------------------------- resume


def round_trip(state):
    """A state dict through torch.save and torch.load(weights_only=True), as a checkpoint takes it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("make", [
    lambda: moge_factory(start=10, length=10, milestone=20, step_size=7),
    lambda: factory(lr=0.2, lr_policy="WarmupCosine", group_learning_rates={"backbone": 0.02},
                    schedule_args={"unit": "step", "warmup": 5, "cosine_end": 40, "min_factor": 0.01}),
], ids=["moge_v1", "warmup_cosine"])
@pytest.mark.parametrize("k", [0, 3, 20, 33])
def test_a_resumed_schedule_continues_exactly(make, k):
    whole_optimizer, whole = make()(model=TwoGroups(), exp_dir="")
    uninterrupted = run_ours(whole_optimizer, whole, 60)

    first_optimizer, first = make()(model=TwoGroups(), exp_dir="")
    before = run_ours(first_optimizer, first, k)
    saved = TrainingCheckpoint(
        epoch=0, batches_done=k, epoch_finished=False, global_step=k, model={}, path="saved.pth",
        optimizer=round_trip(first_optimizer.state_dict()), scheduler=round_trip(scheduler_state_dict(first)),
    )
    resumed_optimizer, resumed = make()(model=TwoGroups(), exp_dir="")
    assert restore_optimizer_and_scheduler(saved, resumed_optimizer, resumed) == []
    assert rates(resumed_optimizer) == uninterrupted[k]
    after = run_ours(resumed_optimizer, resumed, 60 - k)
    assert before + after == uninterrupted  # bit for bit


def test_load_state_dict_alone_and_a_per_epoch_lambdalr_state():
    optimizer, scheduler = factory(lr=1.0, lr_policy="StepLR", schedule_args={"step_size": 2})(
        model=one_group(), exp_dir="")
    for _ in range(5):
        scheduler.step()
    state = round_trip(scheduler_state_dict(scheduler))
    fresh_optimizer, fresh = factory(lr=1.0, lr_policy="StepLR", schedule_args={"step_size": 2})(
        model=one_group(), exp_dir="")
    load_scheduler_state_dict(fresh, state)
    assert (fresh.epoch, fresh.last_epoch, rates(fresh_optimizer)) == (5, 5, [0.1**2])
    # a checkpoint written when the factory returned a per-epoch LambdaLR
    old_optimizer = torch.optim.SGD(one_group().parameters(), lr=1.0)
    old = torch_lr.LambdaLR(old_optimizer, lambda epoch: 1.0)
    for _ in range(3):
        old_optimizer.step()
        old.step()
    load_scheduler_state_dict(fresh, round_trip(scheduler_state_dict(old)))
    assert (fresh.epoch, fresh.global_step, rates(fresh_optimizer)) == (3, 0, [0.1])


# ------------------------------------------------------------------------------------ mistakes


@pytest.mark.parametrize("fields, message", [
    ({"lr_policy": "WarmupCosine", "schedule_args": {"warmup": 10}},
     r"ReconOptimizerFactory.schedule_args.cosine_end=0: expected > warmup \(10\)"),
    ({"lr_policy": "SequentialLR"}, r"ReconOptimizerFactory.schedule_args.stages is empty"),
    ({"lr_policy": "SequentialLR", "schedule_args": {"stages": [{"policy": "StepLR"}, {"policy": "StepLR"}]}},
     r"stage_milestones=\[\]: expected 1 milestone\(s\)"),
    ({"lr_policy": "SequentialLR", "schedule_args": {"stages": [{"policy": "StepLR", "step_sise": 3}],
                                                     "stage_milestones": []}},
     r"unknown key 'ReconOptimizerFactory.schedule_args.stages\[0\].step_sise'; did you mean 'step_size'\?"),
    ({"lr_policy": "SequentialLR", "schedule_args": {"stages": [{"policy": "Cosine"}]}},
     r"bad value 'Cosine' for 'ReconOptimizerFactory.schedule_args.stages\[0\].policy'"),
    ({"lr_policy": "SequentialLR", "schedule_args": {"stages": [{"policy": "StepLR", "step_size": 1.5}]}},
     r"stages\[0\].step_size=1.5: expected an integer"),
    ({"lr_policy": "LambdaLR", "schedule_args": {"lr_lambda": "epoh * 2"}},
     r"schedule_args.lr_lambda 'epoh \* 2': unknown name 'epoh'; did you mean 'epoch'\?"),
    ({"lr_policy": "LambdaLR", "schedule_args": {"lr_lambda": "__import__('os')"}}, r"unknown function"),
    ({"schedule_args": {"unit": "iteration"}}, r"bad value 'iteration' for 'LrSchedule.unit'"),
])
def test_mistakes_are_named_when_the_config_is_built(fields, message):
    with pytest.raises(ConfigError, match=message):
        factory(**fields)


def test_a_formula_for_a_group_the_model_lacks_or_failing_at_some_t():
    with pytest.raises(ConfigError, match=r"group_lr_lambdas.backbon: the model has no parameter group 'backbon'; "
                                          r"did you mean 'backbone'\?"):
        factory(lr_policy="LambdaLR", group_learning_rates={"backbone": 0.1},
                schedule_args={"group_lr_lambdas": {"backbon": "1.0"}})(model=TwoGroups(), exp_dir="")
    optimizer, scheduler = factory(lr_policy="LambdaLR", schedule_args={"lr_lambda": "1 / (2 - epoch)"})(
        model=one_group(), exp_dir="")
    scheduler.step()
    with pytest.raises(ConfigError, match=r"lr_lambda '1 / \(2 - epoch\)' fails at t=2, epoch=2, step=0"):
        scheduler.step()


# ------------------------------------------------------------------------------ through the trainer


def warmup_cosine_run(tmp_path, name, **loop_args):
    cfg = toy_config(tmp_path / name, logging={"loggers": ["tensorboard"], "metric_log_interval_steps": 1},
                     **loop_args)
    optimizer = cfg.optimizer_factory_ReconOptimizerFactory_args
    optimizer.breed, optimizer.lr, optimizer.lr_policy = "SGD", 0.05, "WarmupCosine"
    optimizer.schedule_args.unit = "step"
    optimizer.schedule_args.warmup = 4
    optimizer.schedule_args.cosine_end = 18  # 3 epochs of 6 steps
    optimizer.schedule_args.min_factor = 0.1
    return cfg


def logged_rates(exp_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(exp_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train_step/lr")]


def test_per_step_rates_in_the_trainer_across_a_resume(tmp_path):
    Experiment(**warmup_cosine_run(tmp_path, "whole")).run()
    parts = warmup_cosine_run(tmp_path, "parts", max_steps=8)  # stops 2 batches into epoch 1
    Experiment(**parts).run()
    stopped = final_checkpoint(tmp_path / "parts")
    assert (stopped.epoch, stopped.batches_done, stopped.scheduler["global_step"]) == (1, 2, 8)
    parts.training_loop_ReconTrainingLoop_args.max_steps = -1
    Experiment(**parts).run()

    whole, resumed = final_checkpoint(tmp_path / "whole"), final_checkpoint(tmp_path / "parts")
    assert_same_state(whole, resumed)
    factor = ReconOptimizerFactory(lr=0.05, lr_policy="WarmupCosine",
                                   schedule_args={"unit": "step", "warmup": 4, "cosine_end": 18, "min_factor": 0.1})
    (f,) = factor.lr_factors(["default"])
    expected = [(step, 0.05 * f(0, step - 1)) for step in range(1, 19)]  # step k used the rate at k - 1 steps
    for exp_dir in ("whole", "parts"):
        logged = logged_rates(tmp_path / exp_dir)
        assert [s for s, _ in logged] == list(range(1, 19))
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)  # float32 events
    assert len({round(v, 9) for _, v in expected}) > 12  # the rate changed within epochs
    assert whole.optimizer["param_groups"][0]["lr"] == 0.05 * 0.1  # after the last step: the minimum
    assert whole.scheduler["global_step"] == 18 and whole.scheduler["epoch"] == 3
