"""validate_config and compose_config: every user error named with its dotted path."""
import dataclasses
import textwrap
from typing import Dict, Optional

import pytest
from omegaconf import OmegaConf

from recon_trainer.config import ConfigError, Configurable, get_default_args, run_auto_creation, validate_config
from recon_trainer.config.hydra_app import compose_config, store_root_config

from .fruits import Fruit


class Garden(Configurable):
    """A small root config for composition tests."""

    tree: Fruit
    tree_class_type: str = "Pear"
    spare: Optional[Fruit]
    spare_class_type: Optional[str] = None
    rows: int = 3
    weights: Dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        run_auto_creation(self)


def problems_of(cfg) -> str:
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    return str(error.value)


def test_valid_default_config_passes():
    validate_config(get_default_args(Garden))


def test_unknown_class_type_with_closest_match_and_choices():
    cfg = get_default_args(Garden)
    cfg.tree_class_type = "Peer"
    assert problems_of(cfg) == (
        "tree_class_type='Peer' is not registered for Fruit; did you mean 'Pear'? "
        "choices: Banana, Kiwi, LargePear, Orange, Pear"
    )


def test_missing_values_only_in_selected_branch():
    cfg = get_default_args(Garden)
    validate_config(cfg)  # Banana's ??? fields are harmless while Banana is not selected
    cfg.tree_class_type = "Banana"
    message = problems_of(cfg)
    assert "missing value 'tree_Banana_args.pips'" in message and "tree_Banana_args.bananame" in message


def test_added_keys_are_unknown():
    cfg = get_default_args(Garden)
    for key in ("rowz", "tree_Pear_args.n_pipz"):  # as Hydra's +key=value adds them
        OmegaConf.update(cfg, key, 1, force_add=True)
    message = problems_of(cfg)
    assert "unknown key 'rowz'; did you mean 'rows'?" in message
    assert "unknown key 'tree_Pear_args.n_pipz'; did you mean 'tree_Pear_args.n_pips'?" in message


def test_optional_slot_may_be_empty():
    cfg = get_default_args(Garden)
    cfg.spare_class_type = None
    validate_config(cfg)
    assert Garden(**cfg).spare is None


@pytest.fixture
def garden_configs(tmp_path):
    store_root_config(Garden)
    (tmp_path / "orchard.yaml").write_text("defaults:\n  - default_config\n  - _self_\nrows: 5\n")
    (tmp_path / "typo.yaml").write_text(
        textwrap.dedent(
            """\
            defaults:
              - default_config
              - _self_
            tree_Pear_args:
              n_pipz: 4
            """
        )
    )
    (tmp_path / "badtype.yaml").write_text("defaults:\n  - default_config\n  - _self_\nrows: many\n")
    (tmp_path / "unregistered.yaml").write_text("defaults:\n  - default_config\n  - _self_\ntree_Apple_args: {}\n")
    return str(tmp_path)


def test_compose_with_overrides(garden_configs):
    cfg = compose_config("orchard", ["tree_class_type=Orange", "+weights.a=0.5"], config_path=garden_configs)
    assert cfg.rows == 5 and cfg.tree_class_type == "Orange" and cfg.weights == {"a": 0.5}
    assert OmegaConf.get_type(cfg) is Garden
    assert isinstance(Garden(**cfg).tree, Fruit)


@pytest.mark.parametrize(
    "name, overrides, expected",
    [
        ("orchard", ["rowz=1"], "command-line override 'rowz=1': unknown key 'rowz'; did you mean 'rows'?"),
        (
            "orchard",
            ["tree_Pear_args.n_pipz=1"],
            "command-line override 'tree_Pear_args.n_pipz=1': unknown key 'tree_Pear_args.n_pipz'; "
            "did you mean 'tree_Pear_args.n_pips'?",
        ),
        (
            "orchard",
            ["rows=abc"],
            "command-line override 'rows=abc': bad value for 'rows': "
            "Value 'abc' of type 'str' could not be converted to Integer",
        ),
        ("orchard", ["weights.a=1"], "command-line override 'weights.a=1': 'weights.a' is a new key in a dictionary; add it with +weights.a=..."),
        ("orchard", ["+bogus=1"], "unknown key 'bogus'"),
        ("orchard", ["tree_class_type=Peer"], "tree_class_type='Peer' is not registered for Fruit; did you mean 'Pear'?"),
        ("typo", [], "config 'typo': unknown key 'tree_Pear_args.n_pipz'; did you mean 'tree_Pear_args.n_pips'?"),
        ("badtype", [], "config 'badtype': bad value for 'rows': Value 'many' of type 'str' could not be converted to Integer"),
        ("unregistered", [], "config 'unregistered': unknown key 'tree_Apple_args': Apple is not registered for Fruit"),
        ("orchad", [], "config 'orchad' not found; did you mean 'orchard'? configs: badtype, default_config, "),
    ],
)
def test_compose_errors(garden_configs, name, overrides, expected):
    with pytest.raises(ConfigError) as error:
        compose_config(name, overrides, config_path=garden_configs)
    assert str(error.value).startswith(expected)
