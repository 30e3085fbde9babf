"""What the trainer calls besides forward: the model's step hooks and own training step, the
data's epoch hooks, and eval mode for frozen submodules."""
import torch

from recon_trainer.experiment import Experiment
from recon_trainer.models.base import EvaluationMode, TrainStepContext
from recon_trainer.training.train_mode import frozen_modules, set_train_mode

from . import toy_plugin
from .helpers import final_checkpoint
from .toy_plugin import toy_config

MODEL = "model_factory_ReconModelFactory_args"


def run(cfg) -> Experiment:
    experiment = Experiment(**cfg)
    experiment.run()
    return experiment


def test_on_train_step_start_sees_the_global_step_and_epoch(tmp_path):
    cfg = toy_config(tmp_path, max_epochs=2, gradient_accumulation_steps=2)
    cfg[MODEL].model_ToyModel_args.record_hooks = True
    model = run(cfg).model_factory.model
    seen = [(step, epoch) for step, epoch, _ in model.hook_calls]
    # 6 batches per epoch, 2 per optimizer step: both batches of a step see the steps taken before it
    assert seen == [(0, 0), (0, 0), (1, 0), (1, 0), (2, 0), (2, 0), (3, 1), (3, 1), (4, 1), (4, 1), (5, 1), (5, 1)]


def test_default_train_step_runs_forward_in_training_mode_through_the_prepared_model():
    model = toy_plugin.ToyModel()
    batch = toy_plugin.collate(toy_plugin.ToyDataSource()._frames(2, 0, "train", torch.Generator().manual_seed(0)))
    calls = []

    def forward(batch, evaluation_mode):
        calls.append(evaluation_mode)
        return {"objective": torch.zeros(())}

    preds = model.train_step(batch, TrainStepContext(global_step=3, epoch=1, batch_index=0, forward=forward))
    assert calls == [EvaluationMode.TRAINING] and set(preds) == {"objective"}


class TwoPassToy(toy_plugin.ToyModel):
    """Owns its training step: the objective of two forward passes (a model with a teacher or
    several views would do this)."""

    def train_step(self, batch, context):
        self.contexts = getattr(self, "contexts", []) + [(context.global_step, context.epoch, context.batch_index)]
        first = context.forward(batch, evaluation_mode=EvaluationMode.TRAINING)
        second = context.forward(batch, evaluation_mode=EvaluationMode.TRAINING)
        return {**first, "objective": 0.5 * (first["objective"] + second["objective"])}


def test_a_model_owning_its_train_step(tmp_path):
    from recon_trainer.config import get_default_args
    from recon_trainer.training.training_loop import ReconTrainingLoop

    model = TwoPassToy(input_noise_std=0.0)
    loop_cfg = get_default_args(ReconTrainingLoop)
    loop_cfg.evaluator_class_type = None
    loop_cfg.max_epochs = 1
    loop_cfg.progress_bar = False
    loop_cfg.metric_print_interval = 0
    loop = ReconTrainingLoop(**loop_cfg)
    _, loaders = toy_plugin.ToyDataSource(shuffle=False).get_datasets_and_dataloaders()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loop.run(model=model, optimizer=optimizer, scheduler=None, dataloaders=loaders, exp_dir=str(tmp_path))
    assert model.contexts == [(step, 0, step) for step in range(6)]
    assert model._n_forwards == 12  # two passes per batch
    assert final_checkpoint(tmp_path).global_step == 6


# ------------------------------------------------------------------------------ frozen submodules


class Backbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Linear(4, 4)
        self.norm = torch.nn.BatchNorm1d(4)
        self.drop = torch.nn.Dropout(0.5)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.head = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4, affine=False))
        self.partly = Backbone()  # only its norm is frozen


def test_set_train_mode_keeps_frozen_submodules_in_eval_mode():
    net = Net()
    net.backbone.requires_grad_(False)
    net.partly.norm.requires_grad_(False)
    net.eval()
    set_train_mode(net)
    assert frozen_modules(net) == [net.backbone, net.partly.norm]
    assert not net.backbone.training and not net.backbone.norm.training and not net.backbone.drop.training
    assert net.training and net.head.training and net.head[1].training  # no parameters: trains
    assert net.partly.training and net.partly.conv.training and not net.partly.norm.training
    before = net.backbone.norm.running_mean.clone()
    net.backbone.norm(torch.randn(8, 4) + 3.0)
    net.partly.norm(torch.randn(8, 4) + 3.0)
    assert torch.equal(net.backbone.norm.running_mean, before)
    assert torch.equal(net.partly.norm.running_mean, torch.zeros(4))
    x = torch.ones(2, 4)
    assert torch.equal(net.backbone.drop(x), x)  # no dropout in the frozen part


def test_a_frozen_batchnorm_keeps_its_statistics_through_training_and_validation(tmp_path):
    cfg = toy_config(tmp_path, max_epochs=2)
    cfg[MODEL].model_ToyModel_args.frozen_norm = True
    run(cfg)
    state = final_checkpoint(tmp_path).model
    assert torch.equal(state["norm.running_mean"], torch.zeros(8))
    assert torch.equal(state["norm.running_var"], torch.ones(8))
    assert int(state["norm.num_batches_tracked"]) == 0
    assert not torch.equal(state["hidden.weight"], toy_plugin.ToyModel(frozen_norm=True).hidden.weight)  # trained


# ---------------------------------------------------------------------------------- epoch hooks


def test_the_data_epoch_hooks_run_every_epoch_and_after_a_resume(tmp_path):
    toy_plugin.EPOCH_HOOK_CALLS.clear()
    cfg = toy_config(tmp_path, max_epochs=3, max_steps=8)  # stops 2 batches into epoch 1
    cfg.data_source_ToyDataSource_args.epoch_aware = True
    run(cfg)
    assert toy_plugin.EPOCH_HOOK_CALLS == [(0, 3), (1, 3)]
    toy_plugin.EPOCH_HOOK_CALLS.clear()
    cfg.training_loop_ReconTrainingLoop_args.max_steps = -1
    run(cfg)  # resumes inside epoch 1
    assert toy_plugin.EPOCH_HOOK_CALLS == [(1, 3), (2, 3)]
