"""The optimizer_factory slot of Experiment: the optimizer and learning-rate schedule."""
import abc
import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import torch

from recon_trainer.config import ConfigError, ReplaceableBase, registry, run_auto_creation
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.training.param_groups import DEFAULT_GROUP, assign_param_groups
from recon_trainer.training.schedules import (
    POLICIES,
    SCHEDULE_POLICY_FIELDS,
    CompiledPolicy,
    Factor,
    LrSchedule,
    ScheduleLR,
    compile_policy,
    group_factors,
    policy_params,
)

BREEDS = ("Adam", "AdamW", "SGD", "Adagrad")
LR_POLICIES = POLICIES


class OptimizerFactoryBase(ReplaceableBase):
    """Builds the optimizer over a model's parameters and its learning-rate scheduler.

    When a run resumes, the experiment loads the optimizer's and the scheduler's states from the
    checkpoint after this call, so a factory builds them fresh.
    """

    @abc.abstractmethod
    def __call__(
        self, *, model: torch.nn.Module, exp_dir: str
    ) -> Tuple[torch.optim.Optimizer, Optional[torch.optim.lr_scheduler.LRScheduler]]:
        """(optimizer, scheduler or None) for `model`.

        A ScheduleLR (recon_trainer/training/schedules.py) is advanced by the trainer after every
        optimizer step and every epoch; any other torch scheduler steps once per epoch."""


@registry.register
class ReconOptimizerFactory(OptimizerFactoryBase):
    """Adam / AdamW / SGD / Adagrad with per-group learning rates and a learning-rate schedule.

    Parameter groups come from the modules' `param_groups` declarations (see
    recon_trainer/training/param_groups.py); group "default" uses `lr`, any other group the rate
    given in `group_learning_rates`. The scheduler (a ScheduleLR) multiplies each group's rate by
    the `lr_policy`'s factor at t, t counted in `schedule_args.unit`: epochs finished (the
    default) or optimizer steps taken. Policies (recon_trainer/training/schedules.py):
    MultiStepLR: gamma ** (milestones passed); Exponential: gamma ** (t / exponential_lr_step_size);
    LinearExponential: linear from linear_exponential_start_gamma to 1 over
    linear_exponential_lr_milestone units, then Exponential counted from the milestone;
    StepLR, WarmupCosine, LambdaLR (formulas per group) and SequentialLR (stages) take their
    parameters from `schedule_args`.
    """

    breed: str = choice_field("Adam", BREEDS, ignore_case=True)  # Adam, AdamW, SGD or Adagrad (any case)
    lr: float = 0.0005  # learning rate of the "default" parameter group
    betas: Tuple[float, float] = (0.9, 0.999)  # Adam / AdamW moment decay rates
    eps: float = 1.0e-8  # Adam / AdamW / Adagrad term added to the denominator (Symphonies: 1e-3 for fp16)
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0  # L2 penalty (decoupled for AdamW), every group
    # no weight decay on 1-D parameters (norms) and biases, as MAE / CroCo / DUSt3R's param groups do
    no_decay_1d: bool = False
    foreach: Optional[bool] = True  # torch's multi-tensor implementation (None: torch decides)
    # learning rate of each non-default parameter group
    group_learning_rates: Dict[str, float] = dataclasses.field(default_factory=dict)
    # learning rate of a non-default group as a multiple of `lr` (mmengine's lr_mult), instead of a rate
    group_lr_multipliers: Dict[str, float] = dataclasses.field(default_factory=dict)
    # MultiStepLR, Exponential, LinearExponential, StepLR, WarmupCosine, LambdaLR or SequentialLR (any case)
    lr_policy: str = choice_field("MultiStepLR", LR_POLICIES, ignore_case=True)
    gamma: float = 0.1  # decay factor of MultiStepLR, Exponential, LinearExponential and StepLR
    multistep_lr_milestones: Tuple[int, ...] = ()  # MultiStepLR: t (units) at which the rate is multiplied by gamma
    exponential_lr_step_size: int = 250  # Exponential(-tail): units over which the rate falls by gamma
    linear_exponential_lr_milestone: int = 200  # LinearExponential: length of the linear warm-up in units
    linear_exponential_start_gamma: float = 0.1  # LinearExponential: factor at t = 0
    schedule: LrSchedule  # the unit of t (epoch or step) and the other policies' parameters

    def __post_init__(self) -> None:
        check_choices(self)
        both = sorted(set(self.group_learning_rates) & set(self.group_lr_multipliers))
        if both:
            raise ConfigError(f"{type(self).__name__}: group(s) {both} have both a rate in group_learning_rates and a "
                              "multiplier in group_lr_multipliers; expected one of the two")
        if self.eps <= 0:
            raise ConfigError(f"{type(self).__name__}.eps={self.eps}: expected a positive number")
        run_auto_creation(self)
        self.compiled_policy()  # a mistake in the schedule fails when the config is built

    def __call__(self, *, model: torch.nn.Module, exp_dir: str) -> Tuple[torch.optim.Optimizer, ScheduleLR]:
        optimizer = self._optimizer(self.param_group_dicts(model))
        factors = self.lr_factors([group["name"] for group in optimizer.param_groups])
        return optimizer, ScheduleLR(optimizer, factors, unit=self.schedule.unit)

    def param_group_dicts(self, model: torch.nn.Module) -> List[Dict[str, Any]]:
        """torch param groups: {"params", "lr", "name"} per group, "default" first; with no_decay_1d
        each group is split in two of the same name, the second (1-D parameters and biases) with
        weight_decay 0."""
        groups = assign_param_groups(model)
        rates = {DEFAULT_GROUP: self.lr, **self.group_learning_rates,
                 **{name: self.lr * factor for name, factor in self.group_lr_multipliers.items()}}
        unknown = sorted(set(groups) - set(rates))
        if unknown:
            raise ValueError(
                f"parameter group(s) {unknown} declared in the model's param_groups have no learning rate: "
                f"give one in the optimizer factory's group_learning_rates (on the command line: "
                f"+optimizer_factory_ReconOptimizerFactory_args.group_learning_rates.<group>=<lr>) or a multiple of "
                f"lr in group_lr_multipliers; it has {dict(self.group_learning_rates)} and "
                f"{dict(self.group_lr_multipliers)}"
            )
        if not self.no_decay_1d:
            return [{"params": params, "lr": rates[name], "name": name} for name, params in groups.items()]
        names = {id(param): name for name, param in model.named_parameters()}
        dicts = []
        for name, params in groups.items():
            flat = [p for p in params if p.ndim <= 1 or names.get(id(p), "").endswith(".bias")]
            flat_ids = {id(p) for p in flat}
            decayed = [p for p in params if id(p) not in flat_ids]
            if decayed:
                dicts.append({"params": decayed, "lr": rates[name], "name": name})
            if flat:
                dicts.append({"params": flat, "lr": rates[name], "name": name, "weight_decay": 0.0})
        return dicts

    def _optimizer(self, param_groups: List[Dict[str, Any]]) -> torch.optim.Optimizer:
        common = {"lr": self.lr, "weight_decay": self.weight_decay, "foreach": self.foreach}
        breed = self.breed.lower()
        if breed == "adam":
            return torch.optim.Adam(param_groups, betas=tuple(self.betas), eps=self.eps, **common)
        if breed == "adamw":
            return torch.optim.AdamW(param_groups, betas=tuple(self.betas), eps=self.eps, **common)
        if breed == "sgd":
            return torch.optim.SGD(param_groups, momentum=self.momentum, **common)
        return torch.optim.Adagrad(param_groups, eps=self.eps, **common)

    def compiled_policy(self) -> CompiledPolicy:
        """The checked `lr_policy` with its parameters (ConfigError naming the key when wrong)."""
        prefix = type(self).__name__

        def key(field: str) -> str:
            if field == "policy":
                return f"{prefix}.lr_policy"
            return f"{prefix}.schedule_args.{field}" if field in SCHEDULE_POLICY_FIELDS else f"{prefix}.{field}"

        return compile_policy(self.lr_policy, policy_params(self, self.schedule), key)

    def lr_factors(self, group_names: List[str]) -> List[Factor]:
        """The factor of each parameter group, in order, as a function of (epochs finished,
        optimizer steps taken)."""
        return group_factors(self.compiled_policy(), group_names, self.schedule.unit)
