"""recon_runner: compose an Experiment config with Hydra, check it, build it and run it.

    recon_runner --config-name NAME [key=value ...]   train / evaluate
    recon_runner --config-name NAME --cfg job         print the composed config
    recon_runner --help                               the configs and config groups, described
    recon_runner --list-plugins                       every slot and its implementations
    recon_runner --debug ...                          tracebacks for the errors below too

A user's mistake ends in one line `recon_runner: error: ...` and exit code 2; the other exit
codes are listed in recon_trainer/errors.py. A launcher script may import its own plugin
modules and then call `main()`.

Start-up: `--help` reads the config folders only (no plugin, no torch). `--cfg job` imports the
plugins (the printed config has every implementation's args), composes the config once and
prints it; Hydra runs the commands that need it (training, multirun, `--cfg hydra|all`, `--resolve`,
`--info`), after the same composition has checked the config.
"""
import sys
from typing import Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from recon_trainer.cli.reporting import pop_debug_flag, reported_errors
from recon_trainer.config.catalog import config_catalog, config_folders, format_catalog
from recon_trainer.config.hydra_app import (
    ROOT_CONFIG_NAME,
    compose_config,
    hydra_args_parser,
    needs_preflight,
    run_hydra_app,
    store_root_config,
)

PROG = "recon_runner"
LIST_PLUGINS_FLAG = "--list-plugins"
HELP = f"""{PROG}: train and evaluate an Experiment composed by Hydra from a config and overrides.

usage: {PROG} --config-name NAME [+GROUP=OPTION ...] [key=value ...] [--cfg job] [--debug]

  --config-name, -cn NAME    the config to start from (listed below; default: {ROOT_CONFIG_NAME})
  key=value, +key=value      set a key, add a key (~key deletes one); e.g. seed=1
  --cfg job                  print the composed config instead of running it (--resolve: resolved)
  --config-path, -cp DIR     a folder of your own configs, searched first
  --config-dir, -cd DIR      a folder of your own configs, searched after --config-path
  --multirun, -m             one run per combination of comma-separated values (a=1,2 b=x,y)
  --list-plugins             every slot of the config and its registered implementations
  --debug                    print the traceback of a reported error too
  --hydra-help               Hydra's own flags
"""
ROOT_DESCRIPTION = "every field at its default (no method's settings): the root every config starts from"


def run_experiment(cfg: DictConfig) -> None:
    """Hydra task: check the composed config, build the Experiment and run it (it saves its
    config and the command-line overrides in exp_dir).

    Checked again here because multirun jobs are composed by Hydra alone. Errors are reported
    here, inside the task, because Hydra prints a traceback for any exception that leaves it.
    """
    from hydra.core.hydra_config import HydraConfig

    from recon_trainer.config import validate_config
    from recon_trainer.experiment import Experiment
    from recon_trainer.training.interrupts import InterruptHandler

    with reported_errors(PROG), InterruptHandler(_describe_startup_interrupt):
        validate_config(cfg)
        experiment = Experiment(**cfg)
        experiment.run(overrides=list(HydraConfig.get().overrides.task))


def _describe_startup_interrupt(signum: int) -> str:
    return "outside training steps; there was nothing to save"


def format_help(config_path: Optional[str] = None, config_dir: Optional[str] = None) -> str:
    """The text of `--help`: usage, flags, and every config and config-group option on the search
    path with the first comment line of its YAML file (recon_trainer/config/catalog.py)."""
    configs, groups = config_catalog(config_folders(config_path, config_dir))
    return HELP + "\n" + format_catalog(configs, groups, ROOT_CONFIG_NAME, ROOT_DESCRIPTION)


def print_job_config(cfg: DictConfig, package: Optional[str] = None) -> None:
    """Print a composed config as Hydra's `--cfg job [--package P]` does."""
    if package == "_global_":
        package = None
    selected = cfg if package is None else OmegaConf.select(cfg, package)
    if selected is None:
        sys.stderr.write(f"package '{package}' not found in config\n")
        sys.exit(1)
    if not OmegaConf.is_config(selected):
        print(selected)
        return
    if package is not None:
        print(f"# @package {package}")
    sys.stdout.write(OmegaConf.to_yaml(selected))


def _prints_the_job_config_only(args) -> bool:
    """Whether Hydra would only print the job's config (`--cfg job` and no other command). With
    --resolve Hydra prints it: it can resolve `${hydra:...}` interpolations, which need its state."""
    return (args.cfg == "job" and not args.run and not args.resolve
            and getattr(args, "experimental_rerun", None) is None)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of recon_runner; `argv` defaults to the process's arguments."""
    argv, _ = pop_debug_flag(argv)
    with reported_errors(PROG):
        if LIST_PLUGINS_FLAG not in argv:
            args = hydra_args_parser().parse_args(argv)
            if args.help:  # from the config folders alone: no plugin is imported
                print(format_help(args.config_path, args.config_dir), end="")
                return
        # Imported here, not at the top: torch and the plugins are not needed for --help.
        from recon_trainer.config import expand_args_fields
        from recon_trainer.config.listing import format_plugin_listing
        from recon_trainer.experiment import Experiment
        from recon_trainer.training.interrupts import InterruptHandler

        with InterruptHandler(_describe_startup_interrupt):
            expand_args_fields(Experiment)  # imports the plugins first
            if LIST_PLUGINS_FLAG in argv:
                print(format_plugin_listing(Experiment), end="")
                return
            store_root_config(Experiment)
            if needs_preflight(args):  # compose once to report user errors before Hydra runs
                cfg = compose_config(args.config_name or ROOT_CONFIG_NAME, args.overrides, args.config_path,
                                     args.config_dir)
                if _prints_the_job_config_only(args):  # nothing left for Hydra to do: no second composition
                    print_job_config(cfg, args.package)
                    return
            run_hydra_app(run_experiment, argv, PROG)


if __name__ == "__main__":
    main()
