"""recon_runner as a user runs it: from another directory, with overrides, errors, plugins."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

LAUNCHER = [sys.executable, "-m", "recon_trainer_plugins.examples.launch_line_fit"]
RUNNER = [sys.executable, "-m", "recon_trainer.cli.runner"]


def run(command, cwd, env_extra=None):
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(env_extra or {})
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_user_error(result, expected):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[0] == f"recon_runner: error: {expected}"


def test_launcher_runs_the_example_plugin_from_any_directory(tmp_path):
    result = run(LAUNCHER + ["--config-name", "example_line_fit", "exp_dir=run1"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fitted = json.loads((tmp_path / "run1" / "line_fit.json").read_text())
    assert abs(fitted["slope"] - 2.0) < 0.05 and abs(fitted["intercept"] + 0.5) < 0.05
    # no change of directory (exp_dir is relative to where we ran), nothing else written
    assert sorted(os.listdir(tmp_path)) == ["run1"]
    assert sorted(os.listdir(tmp_path / "run1")) == [".lock", "expconfig.yaml", "line_fit.json", "overrides.yaml"]
    assert (tmp_path / "run1" / ".lock").read_text() == ""  # released


def test_hydra_outputs_only_when_asked(tmp_path):
    result = run(
        LAUNCHER + ["--config-name", "example_line_fit", "exp_dir=run", "hydra.output_subdir=.hydra",
                    "training_loop_LineFitLoop_args.n_epochs=1"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((tmp_path / ".hydra" / "overrides.yaml").read_text())
    assert "training_loop_LineFitLoop_args.n_epochs=1" in saved


def test_cfg_job_prints_the_resolved_config(tmp_path):
    result = run(
        LAUNCHER + ["--config-name", "example_line_fit", "--cfg", "job", "seed=7",
                    "data_source_LineDataSource_args.slope=3.5"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["seed"] == 7 and printed["data_source_LineDataSource_args"]["slope"] == 3.5
    assert "hydra" not in printed and os.listdir(tmp_path) == []


def test_user_config_folder_chains_onto_packaged_config(tmp_path):
    folder = tmp_path / "my_configs"
    folder.mkdir()
    (folder / "steep.yaml").write_text(
        textwrap.dedent(
            """\
            defaults:
              - example_line_fit
              - _self_
            exp_dir: steep_run
            data_source_LineDataSource_args:
              slope: -1.0
            """
        )
    )
    result = run(LAUNCHER + ["--config-path", str(folder), "--config-name", "steep"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fitted = json.loads((tmp_path / "steep_run" / "line_fit.json").read_text())
    assert abs(fitted["slope"] + 1.0) < 0.05


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["data_source_class_type=LineDataSorce"],
            "data_source_class_type='LineDataSorce' is not registered for DataSourceBase; "
            "did you mean 'LineDataSource'? choices: LineDataSource, MixtureDataSource, ReconDataSource",
        ),
        (
            ["data_source_LineDataSource_args.slpe=3"],
            "command-line override 'data_source_LineDataSource_args.slpe=3': unknown key "
            "'data_source_LineDataSource_args.slpe'; did you mean 'data_source_LineDataSource_args.slope'?",
        ),
        (
            ["seed=abc"],
            "command-line override 'seed=abc': bad value for 'seed': "
            "Value 'abc' of type 'str' could not be converted to Integer",
        ),
        (["+sed=1"], "unknown key 'sed'; did you mean 'seed'?"),
    ],
)
def test_user_errors_are_one_message_and_exit_2(tmp_path, overrides, expected):
    result = run(LAUNCHER + ["--config-name", "example_line_fit"] + overrides, cwd=tmp_path)
    assert_user_error(result, expected)


def test_yaml_error_names_the_file(tmp_path):
    (tmp_path / "typo.yaml").write_text("defaults:\n  - example_line_fit\n  - _self_\nexp_dri: x\n")
    result = run(LAUNCHER + ["--config-path", str(tmp_path), "--config-name", "typo"], cwd=tmp_path)
    assert_user_error(result, "config 'typo': unknown key 'exp_dri'; did you mean 'exp_dir'?")


def test_plugin_not_imported_is_named(tmp_path):
    result = run(RUNNER + ["--config-name", "example_line_fit"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "LineDataSource is not registered for DataSourceBase" in result.stderr
    assert "is the plugin that defines LineDataSource imported?" in result.stderr


def squeezed(lines):
    """The lines with runs of spaces (column padding) collapsed and the indent removed."""
    return [" ".join(line.split()) for line in lines]


def test_list_plugins(tmp_path):
    result = run(LAUNCHER + ["--list-plugins"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "DataSourceBase: Where the data comes from: builds the datasets of each split and their loaders." in lines
    assert "  slots: data_source_class_type" in lines
    assert "- LineDataSource Noisy samples of y = slope * x + intercept with x uniform in [-1, 1]." in squeezed(lines)


def make_entry_point_plugin(site, module_body, name="gardenplug"):
    """A package advertised under the recon_trainer.plugins entry point, as pip installs one."""
    (site / name).mkdir()
    (site / name / "__init__.py").write_text(module_body)
    dist_info = site / f"{name}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[recon_trainer.plugins]\n{name} = {name}\n")


def test_entry_point_plugins_are_discovered(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_entry_point_plugin(
        site,
        textwrap.dedent(
            '''\
            from recon_trainer.config import registry
            from recon_trainer.training.training_loop import TrainingLoopBase

            @registry.register
            class GardenLoop(TrainingLoopBase):
                """A training loop shipped by a third-party package."""

                def run(self, **kwargs):
                    print("garden loop ran")
            '''
        ),
    )
    result = run(RUNNER + ["--list-plugins"], cwd=tmp_path, env_extra={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    assert "- GardenLoop A training loop shipped by a third-party package." in squeezed(result.stdout.splitlines())


def test_broken_entry_point_is_named(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_entry_point_plugin(site, "import a_module_that_is_not_installed\n", name="brokenplug")
    result = run(RUNNER + ["--list-plugins"], cwd=tmp_path, env_extra={"PYTHONPATH": str(site)})
    assert_user_error(
        result,
        "plugin entry point 'brokenplug = brokenplug' from distribution 'brokenplug' failed to load: "
        "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'",
    )
