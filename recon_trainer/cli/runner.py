"""recon_runner: compose an Experiment config with Hydra, check it, build it and run it.

    recon_runner --config-name NAME [key=value ...]   train / evaluate
    recon_runner --config-name NAME --cfg job         print the composed config
    recon_runner --list-plugins                       every slot and its implementations

A launcher script may import its own plugin modules and then call `main()`.
"""
import os
import sys
from typing import Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from recon_trainer.config import ConfigError, PluginImportError, expand_args_fields, validate_config
from recon_trainer.config.hydra_app import (
    ROOT_CONFIG_NAME,
    compose_config,
    hydra_args_parser,
    needs_preflight,
    run_hydra_app,
    store_root_config,
)
from recon_trainer.config.listing import format_plugin_listing
from recon_trainer.experiment import Experiment
from recon_trainer.fileio import atomic_write
from recon_trainer.training.distributed import is_main_process

PROG = "recon_runner"
LIST_PLUGINS_FLAG = "--list-plugins"
EXPCONFIG_FILE = "expconfig.yaml"  # in exp_dir: the config the run was started with
OVERRIDES_FILE = "overrides.yaml"  # in exp_dir: the command-line overrides of that start


def _fail(error: Exception) -> None:
    print(f"{PROG}: error: {error}", file=sys.stderr)
    sys.exit(2)


def run_experiment(cfg: DictConfig) -> None:
    """Hydra task: check the composed config, build the Experiment, save its config and run it.

    Checked again here because multirun jobs are composed by Hydra alone.
    """
    try:
        validate_config(cfg)
        experiment = Experiment(**cfg)
    except ConfigError as error:
        _fail(error)
    if is_main_process():
        save_run_config(experiment, HydraConfig.get().overrides.task)
    experiment.run()


def save_run_config(experiment: Experiment, overrides: Sequence[str]) -> None:
    """Write exp_dir/expconfig.yaml (the resolved config with only the chosen implementations'
    args) and exp_dir/overrides.yaml (the command-line overrides), each atomically."""
    atomic_write(os.path.join(experiment.exp_dir, EXPCONFIG_FILE), OmegaConf.to_yaml(experiment.resolved_config()))
    atomic_write(os.path.join(experiment.exp_dir, OVERRIDES_FILE), OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of recon_runner; `argv` defaults to the process's arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        expand_args_fields(Experiment)  # imports the plugins first
        if LIST_PLUGINS_FLAG in argv:
            print(format_plugin_listing(Experiment), end="")
            return
        store_root_config(Experiment)
        args = hydra_args_parser().parse_args(argv)
        if needs_preflight(args):  # compose once to report user errors before Hydra runs
            compose_config(args.config_name or ROOT_CONFIG_NAME, args.overrides, args.config_path, args.config_dir)
    except (ConfigError, PluginImportError) as error:
        _fail(error)
    run_hydra_app(run_experiment, argv, PROG)


if __name__ == "__main__":
    main()
