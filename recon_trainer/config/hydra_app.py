"""Hydra wiring: the root config in the ConfigStore, the packaged configs on the search path,
and composition whose failures become one message a user can act on.

YAML configs start with `defaults: [default_config, _self_]` (or chain to another YAML). The
configs installed with the package (`recon_trainer.configs`, the repository's `configs/`) are
always on the search path; `--config-path` / `--config-dir` add a user's folder in front.
"""
import os
import re
import sys
from typing import Callable, List, Optional, Sequence

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from .defaults import get_default_args
from .errors import ConfigError
from .validate import unknown_key_message, validate_config

ROOT_CONFIG_NAME = "default_config"
PACKAGED_CONFIGS = "pkg://recon_trainer.configs"
HYDRA_VERSION_BASE = "1.3"
# Hydra neither changes the working directory nor writes .hydra/ or a log file unless a
# user overrides these (e.g. hydra.output_subdir=.hydra hydra.run.dir=outputs/x).
HYDRA_SETTINGS = {
    "run": {"dir": "."},
    "output_subdir": None,
    "job": {"chdir": False},
    "help": {
        "app_name": "recon_runner",
        "header": "recon_runner: train and evaluate an Experiment.\n"
        "List every slot and its registered implementations with: recon_runner --list-plugins",
    },
}
# Log to the console only: Hydra's default job logging also writes <task>.log into the run dir.
HYDRA_DEFAULTS = [{"override hydra/job_logging": "stdout"}, "_self_"]


class PackagedConfigsSearchPath(SearchPathPlugin):
    """Appends the configs installed with recon_trainer to Hydra's config search path."""

    def manipulate_search_path(self, search_path) -> None:
        if PACKAGED_CONFIGS not in [element.path for element in search_path.get_path()]:
            search_path.append(provider="recon_trainer", path=PACKAGED_CONFIGS)


def store_root_config(root: type, name: str = ROOT_CONFIG_NAME) -> None:
    """Store root's typed default config in Hydra's ConfigStore as `name` (with our Hydra
    settings) and put the packaged configs on Hydra's search path."""
    node = get_default_args(root)
    with open_dict(node):
        node.hydra = HYDRA_SETTINGS
        node.defaults = HYDRA_DEFAULTS
    ConfigStore.instance().store(name=name, node=node)
    Plugins.instance().register(PackagedConfigsSearchPath)


def compose_config(
    config_name: str = ROOT_CONFIG_NAME,
    overrides: Sequence[str] = (),
    config_path: Optional[str] = None,
    config_dir: Optional[str] = None,
) -> DictConfig:
    """Compose and validate a config as the command line would; raises ConfigError.

    `config_path` is the user's primary config folder, `config_dir` an extra one (both as
    `--config-path` / `--config-dir`); the packaged configs are searched after them.
    Call `store_root_config` first.
    """
    overrides = list(overrides)
    if config_dir is not None:
        overrides.append(f"hydra.searchpath=[file://{os.path.abspath(config_dir)}]")
    if config_path is not None:
        context = hydra.initialize_config_dir(config_dir=os.path.abspath(config_path), version_base=HYDRA_VERSION_BASE)
    else:
        context = hydra.initialize(config_path=None, version_base=HYDRA_VERSION_BASE)
    with context:
        try:
            cfg = hydra.compose(config_name, overrides=overrides)
        except (HydraException, OmegaConfBaseException) as error:
            raise ConfigError(describe_composition_error(error, overrides)) from None
    validate_config(cfg)
    return cfg


def describe_composition_error(error: BaseException, overrides: Sequence[str]) -> str:
    """One message for a failed composition: where (file or override), which dotted key, what
    was expected, and the closest valid key."""
    # Hydra wraps the OmegaConf error that names the key; its own text says where it came from.
    source = _error_source(error, overrides)
    cause = _first_cause_with_key(error)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        full_key = cause.full_key
        parent = cause.parent_node
        prefix = full_key.rsplit(".", 1)[0] + "." if "." in full_key else ""
        if isinstance(parent, DictConfig) and _is_schema_node(parent):
            return source + unknown_key_message(OmegaConf.get_type(parent), str(cause.key), prefix)
        return f"{source}'{full_key}' is a new key in a dictionary; add it with +{full_key}=..."
    if isinstance(cause, ValidationError):
        reason = str(cause).split("\n", 1)[0]
        return f"{source}bad value for '{cause.full_key}': {reason}"
    return source + str(error).strip()


def _is_schema_node(node: DictConfig) -> bool:
    schema = OmegaConf.get_type(node)
    return isinstance(schema, type) and schema is not dict


def _first_cause_with_key(error: Optional[BaseException]) -> Optional[BaseException]:
    while error is not None:
        if isinstance(error, OmegaConfBaseException) and getattr(error, "full_key", None):
            return error
        error = error.__cause__ or error.__context__
    return None


def _error_source(error: BaseException, overrides: Sequence[str]) -> str:
    message = str(error)
    in_file = re.match(r"In '([^']+)'", message)
    if in_file:
        return f"config '{in_file.group(1)}': "
    mentioned = re.search(r"override (?:'([^']+)'|(\S+))", message)
    if mentioned:
        key = mentioned.group(1) or mentioned.group(2).split("=", 1)[0]
        for override in overrides:
            if override.lstrip("+~").split("=", 1)[0] == key:
                return f"command-line override '{override}': "
        return f"command-line override '{mentioned.group(1) or mentioned.group(2)}': "
    return ""


def hydra_args_parser():
    """Hydra's own command-line parser (for --config-name, --config-path, --cfg, overrides...)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def needs_preflight(args) -> bool:
    """Whether a command composes one config that we can check before Hydra runs it
    (multirun sweeps are checked job by job instead)."""
    return not (args.help or args.hydra_help or args.multirun or args.shell_completion or args.info)


def run_hydra_app(task: Callable[[DictConfig], None], argv: List[str], prog: str) -> None:
    """Run `task` through `hydra.main` on the root config stored as ROOT_CONFIG_NAME."""
    app = hydra.main(config_path=None, config_name=ROOT_CONFIG_NAME, version_base=HYDRA_VERSION_BASE)(task)
    saved_argv = sys.argv
    sys.argv = [prog] + list(argv)
    try:
        app()
    finally:
        sys.argv = saved_argv
