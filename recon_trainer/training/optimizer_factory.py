"""The optimizer_factory slot of Experiment: the optimizer and learning-rate schedule."""
import abc
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from recon_trainer.config import ReplaceableBase, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.training.lr_policies import exponential_factor, linear_exponential_factor, multistep_factor
from recon_trainer.training.param_groups import DEFAULT_GROUP, assign_param_groups

BREEDS = ("Adam", "AdamW", "SGD", "Adagrad")
LR_POLICIES = ("MultiStepLR", "Exponential", "LinearExponential")


class OptimizerFactoryBase(ReplaceableBase):
    """Builds the optimizer over a model's parameters and its learning-rate scheduler.

    When a run resumes, the experiment loads the optimizer's and the scheduler's states from the
    checkpoint after this call, so a factory builds them fresh.
    """

    @abc.abstractmethod
    def __call__(
        self, *, model: torch.nn.Module, exp_dir: str
    ) -> Tuple[torch.optim.Optimizer, Optional[torch.optim.lr_scheduler.LRScheduler]]:
        """(optimizer, scheduler or None) for `model`; the scheduler steps once per epoch."""


@registry.register
class ReconOptimizerFactory(OptimizerFactoryBase):
    """Adam / AdamW / SGD / Adagrad with per-group learning rates and an epoch-based LR policy.

    Parameter groups come from the modules' `param_groups` declarations (see
    recon_trainer/training/param_groups.py); group "default" uses `lr`, any other group the rate
    given in `group_learning_rates`. LR policies (factor on the base rate after `epoch` epochs):
    MultiStepLR: gamma ** (milestones passed); Exponential: gamma ** (epoch / exponential_lr_step_size);
    LinearExponential: linear from linear_exponential_start_gamma to 1 over
    linear_exponential_lr_milestone epochs, then Exponential counted from the milestone.
    """

    breed: str = choice_field("Adam", BREEDS, ignore_case=True)  # Adam, AdamW, SGD or Adagrad (any case)
    lr: float = 0.0005  # learning rate of the "default" parameter group
    betas: Tuple[float, float] = (0.9, 0.999)  # Adam / AdamW moment decay rates
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0  # L2 penalty (decoupled for AdamW), every group
    foreach: Optional[bool] = True  # torch's multi-tensor implementation (None: torch decides)
    # learning rate of each non-default parameter group
    group_learning_rates: Dict[str, float] = dataclasses.field(default_factory=dict)
    # MultiStepLR, Exponential or LinearExponential (any case)
    lr_policy: str = choice_field("MultiStepLR", LR_POLICIES, ignore_case=True)
    gamma: float = 0.1  # decay factor of every policy
    multistep_lr_milestones: Tuple[int, ...] = ()  # MultiStepLR: epochs at which the rate is multiplied by gamma
    exponential_lr_step_size: int = 250  # Exponential(-tail): epochs over which the rate falls by gamma
    linear_exponential_lr_milestone: int = 200  # LinearExponential: length of the linear warm-up in epochs
    linear_exponential_start_gamma: float = 0.1  # LinearExponential: factor at epoch 0

    def __post_init__(self) -> None:
        check_choices(self)

    def __call__(
        self, *, model: torch.nn.Module, exp_dir: str
    ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        optimizer = self._optimizer(self.param_group_dicts(model))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor())
        return optimizer, scheduler

    def param_group_dicts(self, model: torch.nn.Module) -> List[Dict[str, Any]]:
        """torch param groups: {"params", "lr", "name"} per group, "default" first."""
        groups = assign_param_groups(model)
        unknown = sorted(set(groups) - {DEFAULT_GROUP} - set(self.group_learning_rates))
        if unknown:
            raise ValueError(
                f"parameter group(s) {unknown} declared in the model's param_groups have no learning rate: "
                f"give one in the optimizer factory's group_learning_rates (on the command line: "
                f"+optimizer_factory_ReconOptimizerFactory_args.group_learning_rates.<group>=<lr>); "
                f"it has {dict(self.group_learning_rates)}"
            )
        rates = {DEFAULT_GROUP: self.lr, **self.group_learning_rates}
        return [{"params": params, "lr": rates[name], "name": name} for name, params in groups.items()]

    def _optimizer(self, param_groups: List[Dict[str, Any]]) -> torch.optim.Optimizer:
        common = {"lr": self.lr, "weight_decay": self.weight_decay, "foreach": self.foreach}
        breed = self.breed.lower()
        if breed == "adam":
            return torch.optim.Adam(param_groups, betas=tuple(self.betas), **common)
        if breed == "adamw":
            return torch.optim.AdamW(param_groups, betas=tuple(self.betas), **common)
        if breed == "sgd":
            return torch.optim.SGD(param_groups, momentum=self.momentum, **common)
        return torch.optim.Adagrad(param_groups, **common)

    def lr_factor(self) -> Callable[[int], float]:
        """The policy's factor as a function of the epoch (LambdaLR's lr_lambda)."""
        policy = self.lr_policy.lower()
        if policy == "multisteplr":
            return multistep_factor(self.multistep_lr_milestones, self.gamma)
        if policy == "exponential":
            return exponential_factor(self.gamma, self.exponential_lr_step_size)
        return linear_exponential_factor(
            self.linear_exponential_lr_milestone,
            self.linear_exponential_start_gamma,
            self.gamma,
            self.exponential_lr_step_size,
        )
