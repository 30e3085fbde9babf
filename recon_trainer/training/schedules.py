"""Learning-rate schedules: the factor on each parameter group's base rate, a pure function of the
run's position (epochs finished, optimizer steps taken).

A schedule counts t in its unit: "epoch" (t = epochs finished; the rate changes once per epoch,
after the epoch's evaluations) or "step" (t = optimizer steps taken; the rate changes after every
step, as DUSt3R, Spann3R and MoGe do). Policies, the factor at t:

    MultiStepLR        gamma ** (number of multistep_lr_milestones <= t)
    Exponential        gamma ** (t / exponential_lr_step_size)
    LinearExponential  linear from linear_exponential_start_gamma (t = 0) to 1 (t =
                       linear_exponential_lr_milestone), then Exponential counted from there
    StepLR             gamma ** floor(t / step_size)                             (torch's StepLR)
    WarmupCosine       linear from warmup_start_factor (t = 0) to 1 (t = warmup), then half a
                       cosine down to min_factor (t = cosine_end), then min_factor (DUSt3R, Spann3R)
    LambdaLR           a formula per parameter group (lr_lambda, group_lr_lambdas)  (torch's LambdaLR)
    SequentialLR       `stages`, stage i + 1 taking over at t = stage_milestones[i] and counting
                       its own t from there                                     (torch's SequentialLR)

LambdaLR formulas (recon_trainer/config/expressions.py: arithmetic, min, max, cos, ...; nothing is
executed) see three variables: `t`, the units since the stage started (what torch's LambdaLR
calls `epoch`: MoGe's strings, whose scheduler steps every iteration, count optimizer steps),
`epoch` (epochs finished) and `step` (optimizer steps taken since the start of the run).

Each factor is a function of (epoch, step) alone, so the rates of a resumed run equal those of an
uninterrupted one; ScheduleLR, the torch scheduler applying them, holds only the two counters.
"""
import bisect
import dataclasses
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from recon_trainer.config import ConfigError, Configurable, plain
from recon_trainer.config.choices import Choices, check_choices, choice_field
from recon_trainer.config.errors import did_you_mean
from recon_trainer.config.expressions import Expression

EPOCH, STEP = "epoch", "step"
UNITS = (EPOCH, STEP)
POLICIES = (
    "MultiStepLR", "Exponential", "LinearExponential", "StepLR", "WarmupCosine", "LambdaLR", "SequentialLR",
)
LAMBDA_VARIABLES = ("t", "epoch", "step")

Factor = Callable[[int, int], float]  # (epochs finished, optimizer steps taken) -> factor
StageFactor = Callable[[int, int, int], float]  # (t in the unit since the stage started, epoch, step) -> factor


# ------------------------------------------------------------------------------ factors of t


def multistep_factor(milestones: Sequence[int], gamma: float) -> Callable[[int], float]:
    """gamma ** (number of milestones <= t)."""
    ordered = sorted(milestones)
    return lambda t: gamma ** bisect.bisect_right(ordered, t)


def exponential_factor(gamma: float, step_size: int) -> Callable[[int], float]:
    """gamma ** (t / step_size): the rate falls by gamma every step_size units, smoothly."""
    return lambda t: gamma ** (t / step_size)


def linear_exponential_factor(
    milestone: int, start_gamma: float, gamma: float, step_size: int
) -> Callable[[int], float]:
    """A linear ramp from start_gamma (t = 0) to 1 (t = `milestone`), then gamma ** ((t - milestone) / step_size)."""

    def factor(t: int) -> float:
        if t < milestone:
            weight_of_start = (milestone - t) / milestone
            return weight_of_start * start_gamma + (1 - weight_of_start)
        return gamma ** ((t - milestone) / step_size)

    return factor


def step_factor(step_size: int, gamma: float) -> Callable[[int], float]:
    """gamma ** floor(t / step_size) (torch's StepLR)."""
    return lambda t: gamma ** (t // step_size)


def warmup_cosine_factor(
    warmup: int, start_factor: float, cosine_end: int, min_factor: float
) -> Callable[[int], float]:
    """start_factor + (1 - start_factor) * t / warmup for t < warmup; then
    min_factor + (1 - min_factor) * (1 + cos(pi * (t - warmup) / (cosine_end - warmup))) / 2 up to
    t = cosine_end; min_factor after it. DUSt3R's and Spann3R's `adjust_learning_rate` (there
    start_factor = 0 and min_factor = min_lr / lr) with t in epochs or optimizer steps."""

    def factor(t: int) -> float:
        if t < warmup:
            return start_factor + (1.0 - start_factor) * t / warmup
        if t >= cosine_end:
            return min_factor
        progress = (t - warmup) / (cosine_end - warmup)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# ----------------------------------------------------------------------- the schedule's config


class LrSchedule(Configurable):
    """The unit of the optimizer factory's `lr_policy` and the parameters of the policies added
    with per-step schedules (the module doc lists them all). gamma and the MultiStepLR /
    Exponential / LinearExponential parameters are the factory's own fields."""

    # what t counts: epochs finished (rate changed after each epoch) or optimizer steps taken (after each step)
    unit: str = choice_field(EPOCH, UNITS)
    step_size: int = 1  # StepLR: the rate is multiplied by the factory's gamma every step_size units
    warmup: int = 0  # WarmupCosine: units of linear warm-up (DUSt3R's warmup_epochs); 0: none
    warmup_start_factor: float = 0.0  # WarmupCosine: the factor at t = 0 (DUSt3R, Spann3R: 0)
    cosine_end: int = 0  # WarmupCosine: t where the half cosine reaches min_factor (DUSt3R's epochs); > warmup
    min_factor: float = 0.0  # WarmupCosine: the factor from cosine_end on (DUSt3R's min_lr / lr)
    lr_lambda: str = "1.0"  # LambdaLR: the factor of every group as a formula of t, epoch, step
    # LambdaLR: a formula per parameter group name (e.g. {backbone: "max(0.0, min(1.0, (t - 1000) / 1000))"})
    group_lr_lambdas: Dict[str, str] = dataclasses.field(default_factory=dict)
    # SequentialLR: the stages in order, each {policy: <name>, <parameter>: <value>, ...}; others as set here
    stages: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    stage_milestones: Tuple[int, ...] = ()  # SequentialLR: t where stage i + 1 starts (one fewer than stages)

    def __post_init__(self) -> None:
        check_choices(self)


# Fields of ReconOptimizerFactory and of LrSchedule that policies read; a stage may set any of them.
FACTORY_POLICY_FIELDS = (
    "gamma", "multistep_lr_milestones", "exponential_lr_step_size", "linear_exponential_lr_milestone",
    "linear_exponential_start_gamma",
)
SCHEDULE_POLICY_FIELDS = (
    "step_size", "warmup", "warmup_start_factor", "cosine_end", "min_factor", "lr_lambda", "group_lr_lambdas",
    "stages", "stage_milestones",
)
_NOT_IN_STAGES = ("stages", "stage_milestones")


@dataclasses.dataclass
class CompiledPolicy:
    """A checked policy: `factor(group)` is the StageFactor of a parameter group; `named_groups`
    maps each group a formula names to the key naming it (checked against the model's groups)."""

    factor: Callable[[str], StageFactor]
    named_groups: Dict[str, str] = dataclasses.field(default_factory=dict)


KeyOf = Callable[[str], str]  # parameter field name -> its dotted key in the config, for messages


def compile_policy(policy: str, params: Mapping[str, Any], key: KeyOf) -> CompiledPolicy:
    """Check the policy `policy` (a name of POLICIES, any case) with its parameters `params`
    (field name -> value) and compile it; ConfigError naming the key (`key(field)`), the value and
    what was expected."""
    name = _policy_name(policy, key("policy"))

    def require(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise ConfigError(f"{key(field)}={params[field]!r}: expected {expected}")

    if name == "MultiStepLR":
        return _of_t(multistep_factor(params["multistep_lr_milestones"], params["gamma"]))
    if name == "Exponential":
        require(params["exponential_lr_step_size"] > 0, "exponential_lr_step_size", "> 0")
        return _of_t(exponential_factor(params["gamma"], params["exponential_lr_step_size"]))
    if name == "LinearExponential":
        require(params["exponential_lr_step_size"] > 0, "exponential_lr_step_size", "> 0")
        require(params["linear_exponential_lr_milestone"] >= 0, "linear_exponential_lr_milestone", ">= 0")
        return _of_t(linear_exponential_factor(
            params["linear_exponential_lr_milestone"], params["linear_exponential_start_gamma"], params["gamma"],
            params["exponential_lr_step_size"],
        ))
    if name == "StepLR":
        require(params["step_size"] > 0, "step_size", "> 0")
        return _of_t(step_factor(params["step_size"], params["gamma"]))
    if name == "WarmupCosine":
        require(params["warmup"] >= 0, "warmup", ">= 0")
        require(params["cosine_end"] > params["warmup"], "cosine_end",
                f"> warmup ({params['warmup']}): the t where the cosine ends, e.g. the run's length in units")
        return _of_t(warmup_cosine_factor(
            params["warmup"], params["warmup_start_factor"], params["cosine_end"], params["min_factor"]
        ))
    if name == "LambdaLR":
        return _compile_lambdas(params, key)
    return _compile_sequential(params, key)


def _policy_name(policy: Any, key: str) -> str:
    """The canonical spelling of a policy name given in any case."""
    Choices(POLICIES, ignore_case=True).check(key, policy)
    return next(name for name in POLICIES if name.lower() == str(policy).lower())


def _of_t(factor: Callable[[int], float]) -> CompiledPolicy:
    """A policy of t alone, the same for every group."""
    return CompiledPolicy(lambda group: lambda t, epoch, step: factor(t))


def _compile_lambdas(params: Mapping[str, Any], key: KeyOf) -> CompiledPolicy:
    default = _formula(params["lr_lambda"], key("lr_lambda"))
    group_key = key("group_lr_lambdas")
    per_group = {group: _formula(text, f"{group_key}.{group}") for group, text in params["group_lr_lambdas"].items()}
    return CompiledPolicy(lambda group: per_group.get(group, default), {g: f"{group_key}.{g}" for g in per_group})


def _formula(text: Any, where: str) -> StageFactor:
    """A StageFactor evaluating the formula `text`; an arithmetic failure (a division by zero at
    some t) is a ConfigError naming the formula and the values."""
    expression = Expression(str(text), LAMBDA_VARIABLES, where)

    def factor(t: int, epoch: int, step: int) -> float:
        try:
            return float(expression(t=t, epoch=epoch, step=step))
        except (ArithmeticError, ValueError, TypeError) as error:
            values = f"t={t}, epoch={epoch}, step={step}"
            raise ConfigError(f"{where} {expression.text!r} fails at {values}: {error}") from None

    return factor


def _compile_sequential(params: Mapping[str, Any], key: KeyOf) -> CompiledPolicy:
    stages, milestones = list(params["stages"]), list(params["stage_milestones"])
    if not stages:
        raise ConfigError(f"{key('stages')} is empty: SequentialLR needs a list of stages, "
                          f"each {{policy: <name>, <parameter>: <value>, ...}}")
    if len(milestones) != len(stages) - 1:
        raise ConfigError(
            f"{key('stage_milestones')}={milestones}: expected {len(stages) - 1} milestone(s), one fewer than the "
            f"{len(stages)} stage(s) (stage i + 1 starts at t = stage_milestones[i])"
        )
    if any(m <= 0 for m in milestones) or any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ConfigError(f"{key('stage_milestones')}={milestones}: expected increasing positive values")
    compiled = []
    for index, stage in enumerate(stages):
        where = f"{key('stages')}[{index}]"
        stage_params, stage_policy = _stage_params(stage, params, where)
        if _policy_name(stage_policy, where + ".policy") == "SequentialLR":
            raise ConfigError(f"{where}.policy=SequentialLR: a stage cannot itself be SequentialLR")
        compiled.append(compile_policy(stage_policy, stage_params, lambda field, where=where: f"{where}.{field}"))

    def factor_of(group: str) -> StageFactor:
        stage_factors = [stage.factor(group) for stage in compiled]

        def factor(t: int, epoch: int, step: int) -> float:
            index = bisect.bisect_right(milestones, t)
            start = milestones[index - 1] if index else 0
            return stage_factors[index](t - start, epoch, step)

        return factor

    named = {group: name for stage in compiled for group, name in stage.named_groups.items()}
    return CompiledPolicy(factor_of, named)


def _stage_params(stage: Any, params: Mapping[str, Any], where: str) -> Tuple[Dict[str, Any], Any]:
    """(the parameters of one SequentialLR stage: `params` with the stage's entries, its policy)."""
    if not isinstance(stage, Mapping) or "policy" not in stage:
        raise ConfigError(f"{where}={stage!r}: expected a mapping {{policy: <name>, <parameter>: <value>, ...}}")
    allowed = [name for name in params if name not in _NOT_IN_STAGES]
    merged = dict(params)
    for name, value in stage.items():
        if name == "policy":
            continue
        if name not in allowed:
            hint = did_you_mean(str(name), allowed) or ";"
            raise ConfigError(
                f"unknown key '{where}.{name}'{hint} a stage sets policy and any of: {', '.join(allowed)}"
            )
        merged[name] = _coerce(value, params[name], f"{where}.{name}")
    return merged, stage["policy"]


def _coerce(value: Any, like: Any, key: str) -> Any:
    """`value` (from an untyped stage mapping) as the type of the parameter's value `like`."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{key}={value!r}: expected {expected}")

    def integer(item: Any, expected: str) -> int:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not float(item).is_integer():
            raise fail(expected)
        return int(item)

    if isinstance(like, int):
        return integer(value, "an integer")
    if isinstance(like, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if isinstance(like, str):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise fail("a formula (a string)")
        return str(value)
    if isinstance(like, tuple):
        if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
            raise fail("a list of integers")
        return tuple(integer(item, "a list of integers") for item in value)
    if not isinstance(value, Mapping):  # group_lr_lambdas
        raise fail("a mapping of parameter group name to formula")
    return {str(group): _coerce(text, "", f"{key}.{group}") for group, text in value.items()}


def policy_params(factory: Any, schedule: LrSchedule) -> Dict[str, Any]:
    """The policy parameters (field name -> plain Python value) of an optimizer factory and its schedule."""
    params = {name: plain(getattr(factory, name)) for name in FACTORY_POLICY_FIELDS}
    params.update({name: plain(getattr(schedule, name)) for name in SCHEDULE_POLICY_FIELDS})
    for name in ("multistep_lr_milestones", "stage_milestones"):
        params[name] = tuple(params[name])
    params["group_lr_lambdas"] = dict(params["group_lr_lambdas"])
    return params


def group_factors(compiled: CompiledPolicy, group_names: Sequence[str], unit: str) -> List[Factor]:
    """The Factor of each parameter group (in optimizer order) of a compiled policy counted in
    `unit`; ConfigError when a formula names a group the model does not have."""
    unknown = {group: key for group, key in compiled.named_groups.items() if group not in group_names}
    if unknown:
        group, key = next(iter(unknown.items()))
        raise ConfigError(
            f"{key}: the model has no parameter group {group!r}{did_you_mean(group, group_names) or ';'} "
            f"its groups: {', '.join(group_names)}"
        )
    factors = []
    for name in group_names:
        stage_factor = compiled.factor(name)
        if unit == STEP:
            factors.append(lambda epoch, step, f=stage_factor: f(step, epoch, step))
        else:
            factors.append(lambda epoch, step, f=stage_factor: f(epoch, epoch, step))
    return factors


# ----------------------------------------------------------------------------- the scheduler


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """Sets the rate of parameter group g to base_lrs[g] * factors[g](epoch, step).

    The trainer calls `advance(epoch=..., step=...)` with its own counters after every optimizer
    step and every epoch, so the rate is always a function of where the run is. torch's `step()`
    advances by one `unit` (one epoch or one optimizer step), like any torch scheduler;
    `last_epoch` is the counter in the unit.

    The state (`state_dict`) is the two counters; loading it re-applies the rates with the base
    rates this scheduler was built with (the configured ones: a resumed run uses the new config's
    learning rates). A state of an earlier per-epoch LambdaLR loads as its epoch count.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factors: Sequence[Factor], unit: str = EPOCH) -> None:
        if len(factors) != len(optimizer.param_groups):
            raise ValueError(f"ScheduleLR: {len(factors)} factor(s) for {len(optimizer.param_groups)} parameter groups")
        Choices(UNITS).check("ScheduleLR.unit", unit)
        self.factors = list(factors)
        self.unit = unit
        self.epoch = 0  # epochs finished
        self.global_step = 0  # optimizer steps taken
        super().__init__(optimizer)

    def get_lr(self) -> List[float]:
        return [base * float(factor(self.epoch, self.global_step)) for base, factor in zip(self.base_lrs, self.factors)]

    def step(self, epoch: Optional[int] = None) -> None:
        """One unit further (the first call, from the constructor, applies the rates at (0, 0))."""
        if epoch is not None:
            raise TypeError("ScheduleLR.step() takes no epoch; advance(epoch=..., step=...) sets the position")
        self._step_count = getattr(self, "_step_count", 0) + 1
        if self.last_epoch < 0:
            self.advance(epoch=self.epoch, step=self.global_step)
        elif self.unit == STEP:
            self.advance(epoch=self.epoch, step=self.global_step + 1)
        else:
            self.advance(epoch=self.epoch + 1, step=self.global_step)

    def advance(self, *, epoch: int, step: int) -> List[float]:
        """Move to `epoch` epochs finished and `step` optimizer steps taken and set the groups'
        rates; the rates."""
        self.epoch, self.global_step = int(epoch), int(step)
        self.last_epoch = self.global_step if self.unit == STEP else self.epoch
        rates = self.get_lr()
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"] = rate
        self._last_lr = list(rates)
        return rates

    def state_dict(self) -> Dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "factors")}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if "global_step" in state_dict:
            epoch, step = state_dict["epoch"], state_dict["global_step"]
        else:  # a LambdaLR state of a per-epoch schedule: last_epoch counted epochs
            epoch, step = state_dict.get("last_epoch", 0), 0
        self._step_count = state_dict.get("_step_count", self._step_count)
        self.advance(epoch=epoch, step=step)
