"""Config mistakes end in one line `recon_runner: error: ...` and exit code 2: choice fields checked
when the config is composed, YAML syntax errors, unknown configs and presets, bad overrides."""
import textwrap
from typing import Dict, Tuple

import pytest

from recon_trainer.config import ConfigError, Configurable, expand_args_fields, get_default_args, validate_config
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.experiment import Experiment

from .helpers import LOOP, OPT, RUNNER, assert_reported, run

NERF = ["--config-name", "repro_singleseq_nerf_blender"]
COLOURS = ("red", "green", "blue")


class Lamp(Configurable):
    """A config with every kind of choice field."""

    colour: str = choice_field("red", COLOURS)  # one string
    modes: Tuple[str, ...] = choice_field(("on",), ("on", "off", "blink"))  # each element
    unit: str = choice_field("Lux", ("Lux", "Candela"), ignore_case=True)  # any spelling
    by_room: Dict[str, str] = choice_field({"hall": "red"}, COLOURS)  # each value

    def __post_init__(self) -> None:
        check_choices(self)


def problems_of(cfg) -> str:
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    return str(error.value)


def test_valid_choices_pass_in_any_case_where_allowed():
    cfg = get_default_args(Lamp)
    cfg.unit = "candela"
    cfg.modes = ["blink", "off"]
    validate_config(cfg)
    assert Lamp(**cfg).unit == "candela"


def test_every_bad_choice_is_reported_with_its_key_the_closest_choice_and_the_choices():
    cfg = get_default_args(Lamp)
    cfg.colour = "gren"
    cfg.modes = ["on", "blnk"]
    cfg.unit = "Candel"
    cfg.by_room.hall = "purple"
    assert problems_of(cfg).splitlines() == [
        "invalid config:",
        "  bad value 'gren' for 'colour'; did you mean 'green'? choices: red, green, blue",
        "  bad value 'blnk' for 'modes[1]'; did you mean 'blink'? choices: on, off, blink",
        "  bad value 'Candel' for 'unit'; did you mean 'Candela'? choices: Lux, Candela",
        "  bad value 'purple' for 'by_room.hall'; choices: red, green, blue",
    ]


def test_objects_built_from_python_fail_with_the_same_message():
    expand_args_fields(Lamp)
    with pytest.raises(ConfigError, match=r"^bad value 'gren' for 'Lamp.colour'; did you mean 'green'\? choices: red"):
        Lamp(colour="gren")
    with pytest.raises(ConfigError, match=r"^bad value 'of' for 'Lamp.modes\[0\]'; did you mean 'off'\?"):
        Lamp(modes=("of",))


def test_a_bad_default_is_a_programming_error():
    with pytest.raises(ValueError, match="bad value 'purple' for 'default'"):
        choice_field("purple", COLOURS)


def test_only_the_selected_branches_are_checked():
    expand_args_fields(Experiment)
    cfg = get_default_args(Experiment)
    cfg.data_source_MixtureDataSource_args.mixing = "equl"  # MixtureDataSource is not selected
    validate_config(cfg)
    cfg.data_source_class_type = "MixtureDataSource"
    assert problems_of(cfg) == (
        "bad value 'equl' for 'data_source_MixtureDataSource_args.mixing'; did you mean 'equal'? "
        "choices: concat, equal, weighted"
    )


@pytest.mark.parametrize(
    "override, expected",
    [
        (f"{LOOP}.mixed_precision=bf61", f"bad value 'bf61' for '{LOOP}.mixed_precision'; did you mean 'bf16'? "
         "choices: no, bf16, fp16"),
        (f"{OPT}.breed=Adamm", f"bad value 'Adamm' for '{OPT}.breed'; did you mean 'Adam'? "
         "choices: Adam, AdamW, SGD, Adagrad"),
        (f"{OPT}.lr_policy=Exponental", f"bad value 'Exponental' for '{OPT}.lr_policy'; did you mean 'Exponential'? "
         "choices: MultiStepLR, Exponential, LinearExponential, StepLR, WarmupCosine, LambdaLR, SequentialLR"),
        (f"{LOOP}.logging_args.loggers=[tensorbord]",
         f"bad value 'tensorbord' for '{LOOP}.logging_args.loggers[0]'; did you mean 'tensorboard'? "
         "choices: console, tensorboard, visdom, mlflow"),
    ],
)
def test_choice_typo_on_the_command_line(tmp_path, override, expected):
    result = run(RUNNER + NERF + [override, "--cfg", "job"], cwd=tmp_path)
    assert assert_reported(result) == f"recon_runner: error: {expected}"


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    (tmp_path / "broken.yaml").write_text("defaults:\n  - repro_singleseq_nerf_blender\n  - _self_\nseed: [1, 2\nexp_dir: x\n")
    result = run(RUNNER + ["--config-path", tmp_path, "--config-name", "broken", "--cfg", "job"], cwd=tmp_path)
    assert assert_reported(result) == (
        f"recon_runner: error: invalid YAML in config file '{tmp_path / 'broken.yaml'}' at line 5, column 8: "
        "expected ',' or ']', but got ':' (while parsing a flow sequence at line 4, column 7)"
    )


def test_config_name_typo_suggests_the_config_and_lists_them(tmp_path):
    result = run(RUNNER + ["--config-name", "repro_singleseq_nerf_blendr", "--cfg", "job"], cwd=tmp_path)
    line = assert_reported(result)
    assert line.startswith(
        "recon_runner: error: config 'repro_singleseq_nerf_blendr' not found; "
        "did you mean 'repro_singleseq_nerf_blender'? configs: default_config, dust3r_pairs, example_line_fit, "
        "midas_mix, "
    )
    assert ", repro_singleseq_nerf_blender, " in line and "_dummy" not in line


def test_preset_typo_names_the_override_and_the_presets(tmp_path):
    result = run(RUNNER + NERF + ["+preset=quik", "--cfg", "job"], cwd=tmp_path)
    assert assert_reported(result) == (
        "recon_runner: error: command-line override '+preset=quik': config 'quik' not found in group 'preset'; "
        "did you mean 'quick'? configs in 'preset': dpt_large, midas_quick, moge_quick, moge_quick_v2, quick, "
        "spann3r_quick, symphonies_quick"
    )


def test_missing_defaults_target_in_a_user_config(tmp_path):
    (tmp_path / "mine.yaml").write_text("defaults:\n  - repro_singleseq_nerf_blendr\n  - _self_\n")
    result = run(RUNNER + ["--config-dir", tmp_path, "--config-name", "mine", "--cfg", "job"], cwd=tmp_path)
    line = assert_reported(result)
    assert line.startswith(
        "recon_runner: error: config 'mine': config 'repro_singleseq_nerf_blendr' not found; "
        "did you mean 'repro_singleseq_nerf_blender'? configs: "
    )
    assert ", mine, " in line  # the user's folder is listed with the packaged configs


def test_override_without_equals(tmp_path):
    result = run(RUNNER + NERF + ["seed", "--cfg", "job"], cwd=tmp_path)
    assert assert_reported(result) == (
        "recon_runner: error: command-line override 'seed': expected key=value "
        "(key=value sets a key, +key=value adds one, ~key deletes one)"
    )


@pytest.fixture
def experiment_configs():
    expand_args_fields(Experiment)
    store_root_config(Experiment)


@pytest.mark.parametrize(
    "overrides, expected",
    [  # in-process: recon_runner reports these messages as they are (tests/config/test_runner_cli.py)
        (["seed=abc"], "command-line override 'seed=abc': bad value for 'seed': "
         "Value 'abc' of type 'str' could not be converted to Integer"),
        (["sed=1"], "command-line override 'sed=1': unknown key 'sed'; did you mean 'seed'?"),
        (["seed=[1,"], "command-line override 'seed=[1,': cannot parse it: no viable alternative at input '[1,' "
         "(key=value sets a key, +key=value adds one, ~key deletes one)"),
        (["preset=quick"], "command-line override 'preset=quick': Could not override 'preset'. No match in the "
         "defaults list. To append to your default list use +preset=quick"),
    ],
)
def test_other_composition_mistakes_are_one_line(experiment_configs, overrides, expected):
    with pytest.raises(ConfigError) as error:
        compose_config("repro_singleseq_nerf_blender", overrides)
    assert str(error.value) == expected


def test_yaml_error_in_a_config_dir_in_process(experiment_configs, tmp_path):
    (tmp_path / "tabs.yaml").write_text(textwrap.dedent("""\
        defaults:
          - repro_singleseq_nerf_blender
          - _self_
        seed: 1
          exp_dir: x
        """))
    with pytest.raises(ConfigError, match=r"^invalid YAML in config file '.*tabs.yaml' at line 5, column 10: "):
        compose_config("tabs", config_dir=str(tmp_path))
