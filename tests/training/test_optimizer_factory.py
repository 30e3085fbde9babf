"""ReconOptimizerFactory: breeds, parameter groups and learning-rate policies."""
import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.training.optimizer_factory import ReconOptimizerFactory
from recon_trainer.training.param_groups import assign_param_groups
from recon_trainer.training.schedules import ScheduleLR


class Block(torch.nn.Module):
    def __init__(self, param_groups=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.bias = torch.nn.Parameter(torch.zeros(1))
        if param_groups is not None:
            self.param_groups = param_groups


class Net(torch.nn.Module):
    def __init__(self, param_groups=None, decoder_groups=None):
        super().__init__()
        self.encoder = Block()
        self.decoder = Block(decoder_groups)
        self.decoder.inner = Block()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.frozen = torch.nn.Parameter(torch.ones(1), requires_grad=False)
        if param_groups is not None:
            self.param_groups = param_groups


def group_of(model):
    """parameter name -> group name."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group for group, params in assign_param_groups(model).items() for p in params}


@pytest.mark.parametrize("breed", ["Adam", "AdamW", "SGD", "Adagrad"])
def test_breeds_and_their_hyperparameters(breed):
    factory = ReconOptimizerFactory(breed=breed, lr=0.02, weight_decay=0.1, betas=(0.8, 0.9), momentum=0.7)
    optimizer, scheduler = factory(model=Net(), exp_dir="unused")
    assert type(optimizer) is getattr(torch.optim, breed)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.1 and group["foreach"] is True
    if breed in ("Adam", "AdamW"):
        assert group["betas"] == (0.8, 0.9)
    if breed == "SGD":
        assert group["momentum"] == 0.7
    assert isinstance(scheduler, ScheduleLR) and scheduler.unit == "epoch"


def test_unknown_breed_and_policy_are_named():
    with pytest.raises(ConfigError, match="bad value 'RMSprop' for 'ReconOptimizerFactory.breed'; choices: Adam, AdamW"):
        ReconOptimizerFactory(breed="RMSprop")
    with pytest.raises(ConfigError, match="bad value 'Cosine' for 'ReconOptimizerFactory.lr_policy'"):
        ReconOptimizerFactory(lr_policy="Cosine")


def test_breed_is_case_insensitive():
    optimizer, _ = ReconOptimizerFactory(breed="adamw")(model=torch.nn.Linear(2, 2), exp_dir="")
    assert isinstance(optimizer, torch.optim.AdamW)


def test_without_declarations_every_trainable_parameter_is_default():
    groups = group_of(Net())
    assert set(groups.values()) == {"default"}
    assert "frozen" not in groups and len(groups) == 7


def test_self_member_parameter_and_dotted_declarations():
    model = Net(param_groups={"self": "base", "decoder": "dec", "encoder.bias": "bias", "decoder.inner.weight": "w"})
    assert group_of(model) == {
        "scale": "base",
        "encoder.weight": "base",
        "encoder.bias": "bias",
        "decoder.weight": "dec",
        "decoder.bias": "dec",
        "decoder.inner.weight": "w",
        "decoder.inner.bias": "dec",
    }


def test_a_members_own_declarations_win_over_its_parents():
    model = Net(param_groups={"decoder": "from_parent", "decoder.bias": "parent_bias"},
                decoder_groups={"self": "own", "bias": "own_bias"})
    groups = group_of(model)
    assert groups["decoder.weight"] == "own" and groups["decoder.bias"] == "own_bias"
    assert groups["decoder.inner.weight"] == "own" and groups["encoder.weight"] == "default"


def test_groups_get_their_own_learning_rates():
    factory = ReconOptimizerFactory(lr=0.1, group_learning_rates={"dec": 0.5, "unused": 9.0})
    optimizer, _ = factory(model=Net(param_groups={"decoder": "dec"}), exp_dir="unused")
    rates = {group["name"]: (group["lr"], len(group["params"])) for group in optimizer.param_groups}
    assert rates == {"default": (0.1, 3), "dec": (0.5, 4)}


def test_a_group_rate_may_be_a_multiple_of_lr_and_eps_reaches_adamw():
    factory = ReconOptimizerFactory(breed="AdamW", lr=2e-4, eps=1e-3, group_lr_multipliers={"dec": 0.1})
    optimizer, _ = factory(model=Net(param_groups={"decoder": "dec"}), exp_dir="unused")
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates == {"default": 2e-4, "dec": pytest.approx(2e-5)}
    assert all(group["eps"] == 1e-3 for group in optimizer.param_groups)


def test_a_group_with_a_rate_and_a_multiplier_is_refused():
    with pytest.raises(ConfigError, match=r"\['dec'\] have both"):
        ReconOptimizerFactory(group_learning_rates={"dec": 0.5}, group_lr_multipliers={"dec": 0.1})


def test_a_group_without_learning_rate_is_named():
    factory = ReconOptimizerFactory(group_learning_rates={"dec": 0.5})
    with pytest.raises(ValueError, match=r"parameter group\(s\) \['enc'\] .*group_learning_rates"):
        factory(model=Net(param_groups={"decoder": "dec", "encoder": "enc"}), exp_dir="unused")


def rates_after_epochs(n_epochs, **factory_args):
    """The learning rate in use after each of n_epochs epochs (the scheduler steps per epoch)."""
    optimizer, scheduler = ReconOptimizerFactory(lr=5e-4, **factory_args)(model=Net(), exp_dir="unused")
    rates = []
    for _ in range(n_epochs):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def test_exponential_policy_matches_implicitron_values():
    rates = rates_after_epochs(2, lr_policy="Exponential", gamma=0.1, exponential_lr_step_size=2)
    assert rates == [0.00015811388300841897, 5e-05]


@pytest.mark.parametrize("spelling", ["MultiStepLR", "multisteplr", "MULTISTEPLR"])
def test_multistep_policy_any_case(spelling):
    rates = rates_after_epochs(4, lr_policy=spelling, gamma=0.5, multistep_lr_milestones=(3, 1))
    assert rates == [5e-4 * 0.5, 5e-4 * 0.5, 5e-4 * 0.25, 5e-4 * 0.25]


def test_linear_exponential_policy():
    rates = rates_after_epochs(
        6, lr_policy="LinearExponential", linear_exponential_lr_milestone=4, linear_exponential_start_gamma=0.2,
        gamma=0.1, exponential_lr_step_size=2,
    )
    ramp = [5e-4 * (w * 0.2 + (1 - w)) for w in (0.75, 0.5, 0.25)]
    assert rates == pytest.approx(ramp + [5e-4, 5e-4 * 0.1 ** 0.5, 5e-4 * 0.1], rel=1e-15)


def test_a_shared_parameter_is_in_one_group_only():
    model = Net(param_groups={"decoder": "dec"})
    model.decoder.weight = model.encoder.weight  # tied weights, reached first through the encoder
    groups = assign_param_groups(model)
    assert sum(p is model.encoder.weight for params in groups.values() for p in params) == 1
    optimizer, _ = ReconOptimizerFactory(group_learning_rates={"dec": 0.5})(model=model, exp_dir="unused")
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(p.requires_grad for p in model.parameters())


def test_no_decay_1d_splits_each_group_and_keeps_its_schedule():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model.param_groups = {"2": "head"}
    factory = ReconOptimizerFactory(breed="AdamW", lr=0.1, weight_decay=0.05, no_decay_1d=True,
                                    group_learning_rates={"head": 0.01}, lr_policy="Exponential", gamma=0.5,
                                    exponential_lr_step_size=1)
    optimizer, scheduler = factory(model=model, exp_dir="")
    shapes = [(g["name"], g["weight_decay"], sorted(tuple(p.shape) for p in g["params"]))
              for g in optimizer.param_groups]
    assert shapes == [("default", 0.05, [(4, 3)]), ("default", 0.0, [(4,), (4,), (4,)]),
                      ("head", 0.05, [(2, 4)]), ("head", 0.0, [(2,)])]
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.05, 0.005, 0.005])
