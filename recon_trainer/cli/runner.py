"""recon_runner: compose an Experiment config with Hydra, check it, build it and run it.

    recon_runner --config-name NAME [key=value ...]   train / evaluate
    recon_runner --config-name NAME --cfg job         print the composed config
    recon_runner --list-plugins                       every slot and its implementations
    recon_runner --debug ...                          tracebacks for the errors below too

A user's mistake ends in one line `recon_runner: error: ...` and exit code 2; the other exit
codes are listed in recon_trainer/errors.py. A launcher script may import its own plugin
modules and then call `main()`.
"""
from typing import Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recon_trainer.cli.reporting import pop_debug_flag, reported_errors
from recon_trainer.config import expand_args_fields, validate_config
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
from recon_trainer.training.interrupts import InterruptHandler

PROG = "recon_runner"
LIST_PLUGINS_FLAG = "--list-plugins"


def run_experiment(cfg: DictConfig) -> None:
    """Hydra task: check the composed config, build the Experiment and run it (it saves its
    config and the command-line overrides in exp_dir).

    Checked again here because multirun jobs are composed by Hydra alone. Errors are reported
    here, inside the task, because Hydra prints a traceback for any exception that leaves it.
    """
    with reported_errors(PROG), InterruptHandler(_describe_startup_interrupt):
        validate_config(cfg)
        experiment = Experiment(**cfg)
        experiment.run(overrides=list(HydraConfig.get().overrides.task))


def _describe_startup_interrupt(signum: int) -> str:
    return "outside training steps; there was nothing to save"


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of recon_runner; `argv` defaults to the process's arguments."""
    argv, _ = pop_debug_flag(argv)
    with reported_errors(PROG), InterruptHandler(_describe_startup_interrupt):
        expand_args_fields(Experiment)  # imports the plugins first
        if LIST_PLUGINS_FLAG in argv:
            print(format_plugin_listing(Experiment), end="")
            return
        store_root_config(Experiment)
        args = hydra_args_parser().parse_args(argv)
        if needs_preflight(args):  # compose once to report user errors before Hydra runs
            compose_config(args.config_name or ROOT_CONFIG_NAME, args.overrides, args.config_path, args.config_dir)
        run_hydra_app(run_experiment, argv, PROG)


if __name__ == "__main__":
    main()
