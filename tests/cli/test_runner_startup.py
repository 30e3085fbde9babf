"""recon_runner's quick commands: `--help` lists every config with its description without importing
torch or a plugin; `--cfg job` composes the config once and prints what Hydra's own `--cfg job` prints."""
import os
import subprocess
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra

from recon_trainer.cli import runner
from recon_trainer.config import expand_args_fields
from recon_trainer.config.catalog import config_catalog, config_folders, yaml_description
from recon_trainer.config.hydra_app import store_root_config
from recon_trainer.experiment import Experiment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FOLDERS = [os.path.join(REPO, "configs")] + sorted(
    os.path.join(REPO, "plugins", name, "configs") for name in os.listdir(os.path.join(REPO, "plugins"))
    if os.path.isdir(os.path.join(REPO, "plugins", name, "configs"))
)


def yaml_files():
    """(folder, path relative to it) of every config YAML of the core and the plugins."""
    for folder in CONFIG_FOLDERS:
        for root, _, files in os.walk(folder):
            for file in sorted(files):
                if file.endswith(".yaml"):
                    yield folder, os.path.relpath(os.path.join(root, file), folder)


def test_every_config_yaml_says_what_it_is():
    missing = [os.path.join(folder, name) for folder, name in yaml_files()
               if not yaml_description(os.path.join(folder, name))]
    assert missing == []


def test_description_is_the_first_comment_line_after_directives(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# @package _global_\n# A tiny run.\n# More about it.\nseed: 1\n")
    assert yaml_description(str(path)) == "A tiny run."
    path.write_text("# Many sequences of a category: train on the known frames,\n# evaluate on the others.\n")
    assert yaml_description(str(path)) == "Many sequences of a category: train on the known frames, ..."
    path.write_text("seed: 1  # not a description\n")
    assert yaml_description(str(path)) == ""


def test_help_lists_every_config_and_group_option_without_importing_torch(tmp_path):
    (tmp_path / "mine.yaml").write_text("# My own config.\ndefaults:\n  - repro_singleseq_nerf_blender\n")
    script = (
        "import sys\n"
        "from recon_trainer.cli.runner import main\n"
        f"main(['--help', '--config-dir', {str(tmp_path)!r}])\n"
        "heavy = [m for m in ('torch', 'recon_trainer_plugins.nerf', 'recon_trainer.experiment') if m in sys.modules]\n"
        "print('IMPORTED:', ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[-1] == "IMPORTED:"
    assert "mine My own config." in lines
    for folder, name in yaml_files():
        stem = name[: -len(".yaml")].replace(os.sep, "/")
        group, _, option = stem.rpartition("/")
        shown = f"+{group}={option}" if group else stem
        assert f"{shown} {yaml_description(os.path.join(folder, name))}".strip() in lines, shown
    assert any(line.startswith("default_config ") for line in lines)


def test_the_catalog_prefers_the_first_folder(tmp_path):
    (tmp_path / "repro_singleseq_nerf.yaml").write_text("# Shadows the packaged one.\n")
    configs, groups = config_catalog(config_folders(config_path=str(tmp_path)))
    assert configs["repro_singleseq_nerf"] == "Shadows the packaged one."
    assert "quick" in groups["preset"]


@pytest.fixture(scope="module")
def stored_root():
    expand_args_fields(Experiment)
    store_root_config(Experiment)


def hydra_output(argv, capsys) -> str:
    """What Hydra itself prints for `argv` (its own composition and show_cfg)."""
    try:
        runner.run_hydra_app(runner.run_experiment, list(argv), runner.PROG)
    finally:
        GlobalHydra.instance().clear()
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--config-name", "repro_singleseq_nerf_blender", "--cfg", "job"],
        ["--config-name", "repro_singleseq_nerf_blender", "+preset=quick", "seed=3", "--cfg", "job"],
        ["--config-name", "repro_multiseq_v2_nerf_ad", "--cfg", "job"],
        ["--config-name", "repro_singleseq_nerf", "--cfg", "job", "--package",
         "model_factory_ReconModelFactory_args.model_GenericModel_args.raysampler_AdaptiveRaySampler_args"],
        ["--config-name", "repro_singleseq_nerf", "--cfg", "job", "-p", "seed"],
    ],
)
def test_cfg_job_composes_once_and_prints_what_hydra_prints(argv, stored_root, capsys, monkeypatch):
    expected = hydra_output(argv, capsys)
    assert expected.strip()
    with monkeypatch.context() as patch:
        def no_hydra_run(*args, **kwargs):
            raise AssertionError("--cfg job ran the Hydra app (a second composition)")

        patch.setattr(runner, "run_hydra_app", no_hydra_run)
        runner.main(argv)
    assert capsys.readouterr().out == expected


def test_cfg_job_resolve_is_left_to_hydra(stored_root, capsys):
    """`--resolve` may need Hydra's state (`${hydra:...}`): Hydra prints, after our check."""
    argv = ["--config-name", "repro_multiseq_v2_nerf_ad", "--cfg", "job", "--resolve"]
    expected = hydra_output(argv, capsys)
    try:
        runner.main(argv)
    finally:
        GlobalHydra.instance().clear()
    assert capsys.readouterr().out == expected and "${" not in expected


def test_cfg_job_leaves_run_time_libraries_unimported(tmp_path):
    """Composing a config imports torch and the plugins, but none of the libraries only a run, a
    dataset or a logger needs (the issue's start-up list, plus accelerate)."""
    script = (
        "import sys\n"
        "from recon_trainer.cli.runner import main\n"
        "try:\n"
        "    main(['--config-name', 'repro_singleseq_nerf', '--cfg', 'job'])\n"
        "finally:\n"
        "    lazy = ('accelerate', 'torchvision', 'timm', 'scipy', 'h5py', 'mlflow', 'trimesh', 'lpips', 'matplotlib')\n"
        "    print('IMPORTED:', ','.join(m for m in lazy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].strip() == "IMPORTED:"
