"""Hydra wiring: the root config in the ConfigStore, the packaged configs on the search path,
and composition whose failures become one message a user can act on.

YAML configs start with `defaults: [default_config, _self_]` (or chain to another YAML). The
configs installed with the package (`recon_trainer.configs`, the repository's `configs/`) and
every plugin's `configs/` folder are always on the search path; `--config-path` /
`--config-dir` add a user's folder in front.
"""
import contextlib
import os
import re
import sys
from typing import Callable, Iterator, List, Optional, Sequence

import hydra
import yaml
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.plugins import Plugins
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from .defaults import get_default_args
from .discovery import plugin_config_dirs
from .errors import ConfigError, did_you_mean
from .validate import unknown_key_message, validate_config

ROOT_CONFIG_NAME = "default_config"
CONFIG_PATH_FLAGS = ("--config-path", "-cp")
PACKAGED_CONFIGS = "pkg://recon_trainer.configs"
HYDRA_VERSION_BASE = "1.3"
# Hydra neither changes the working directory nor writes .hydra/ or a log file unless a
# user overrides these (e.g. hydra.output_subdir=.hydra hydra.run.dir=outputs/x).
HYDRA_SETTINGS = {
    "run": {"dir": "."},
    "output_subdir": None,
    "job": {"chdir": False},
}  # --help is recon_runner's own (cli/runner.py): Hydra's would compose and print the whole config
# Log to the console only: Hydra's default job logging also writes <task>.log into the run dir.
HYDRA_DEFAULTS = [{"override hydra/job_logging": "stdout"}, "_self_"]
# Where Hydra's messages stop saying what went wrong and start listing its search path.
_SEARCH_PATH_LISTING = re.compile(r"\n\s*(Config search path|Search path):", re.IGNORECASE)


class PackagedConfigsSearchPath(SearchPathPlugin):
    """Appends the configs installed with recon_trainer, then each plugin's configs/ folder
    (config/discovery.py), to Hydra's config search path."""

    def manipulate_search_path(self, search_path) -> None:
        present = [element.path for element in search_path.get_path()]
        for path in [PACKAGED_CONFIGS] + [f"file://{folder}" for folder in plugin_config_dirs()]:
            if path not in present:
                search_path.append(provider="recon_trainer", path=path)


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
    `--config-path` / `--config-dir`, see `initialized_hydra`). Call `store_root_config` first.
    """
    overrides = list(overrides)
    with initialized_hydra(config_path, config_dir):
        try:
            cfg = hydra.compose(config_name, overrides=overrides)
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as error:
            raise ConfigError(describe_composition_error(error, overrides)) from None
    validate_config(cfg)
    return cfg


@contextlib.contextmanager
def initialized_hydra(config_path: Optional[str] = None, config_dir: Optional[str] = None) -> Iterator[None]:
    """Hydra initialised, within the block, with the search path `hydra.main` builds for
    `--config-path config_path --config-dir config_dir`: Hydra's own configs, config_path, the
    packaged configs, config_dir, the ConfigStore. Hydra's global state is restored afterwards."""
    if config_dir is not None and not os.path.isdir(config_dir):
        raise ConfigError(f"--config-dir '{os.path.abspath(config_dir)}': no such directory")
    search_path = create_config_search_path(f"file://{os.path.abspath(config_path)}" if config_path else None)
    if config_dir is not None:
        search_path.prepend("command-line", f"file://{os.path.abspath(config_dir)}", SearchPathQuery(provider="schema"))
    with hydra.initialize(config_path=None, version_base=HYDRA_VERSION_BASE):  # backs up Hydra's global state
        GlobalHydra.instance().clear()
        Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
        yield


def describe_composition_error(error: BaseException, overrides: Sequence[str]) -> str:
    """One line for a failed composition: where (file or override), which dotted key or config,
    what was expected, and the closest valid choice.

    Call it where Hydra is initialised (inside `hydra.initialize*` or a Hydra app), so that the
    configs on the search path can be listed for a config that is not found.
    """
    yaml_error = _first_cause(error, yaml.YAMLError)
    if yaml_error is not None:
        return yaml_error_message(yaml_error)
    if isinstance(error, OverrideParseException):
        return override_parse_message(error)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        return missing_config_message(error, overrides)
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
    return source + _one_line(str(error))


def yaml_error_message(error: yaml.YAMLError) -> str:
    """`invalid YAML in config file 'F' at line L, column C: <problem> (<context> at line L', column C')`."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"invalid YAML in a config file: {_one_line(str(error))}"
    mark = error.problem_mark
    message = f"invalid YAML in config file '{mark.name}' at {_position(mark)}: {error.problem}"
    if error.context:
        at = f" at {_position(error.context_mark)}" if error.context_mark is not None else ""
        message += f" ({error.context}{at})"
    return message


def override_parse_message(error: OverrideParseException) -> str:
    """Why a command-line override could not be parsed, and its syntax."""
    override = error.override
    if "=" not in override and not override.startswith("~"):
        reason = "expected key=value"
    else:
        lines = [line.strip() for line in error.message.splitlines()]
        details = [line for line in lines if line and not line.startswith(("Error parsing", "See https", "^"))]
        reason = "cannot parse it: " + " ".join(details)
    return (
        f"command-line override '{override}': {reason} "
        "(key=value sets a key, +key=value adds one, ~key deletes one)"
    )


def missing_config_message(error: MissingConfigException, overrides: Sequence[str]) -> str:
    """`config 'X' not found; did you mean 'Y'? configs: ...`, for a primary config, a defaults
    entry or a config group option (`+preset=X`), prefixed with where it was asked for."""
    group, _, name = str(error.missing_cfg_file).rpartition("/")
    options = _visible(error.options) if error.options is not None else available_configs(group)
    chosen_by = [override for override in overrides if group and override.lstrip("+~").split("=", 1)[0] == group]
    source = f"command-line override '{chosen_by[0]}': " if chosen_by else _error_source(error, overrides)
    where, listing = (f" in group '{group}'", f"configs in '{group}'") if group else ("", "configs")
    return (
        f"{source}config '{name}' not found{where}{did_you_mean(name, options) or ';'} "
        f"{listing}: {', '.join(options) or 'none'}"
    )


def available_configs(group: str) -> List[str]:
    """Names of the configs of `group` ("" for the top level) on the search path of the
    initialised Hydra ([] when it is not initialised)."""
    if not GlobalHydra.instance().is_initialized():
        return []
    return _visible(GlobalHydra.instance().config_loader().get_group_options(group, ObjectType.CONFIG))


def _visible(names: Sequence[str]) -> List[str]:
    """Config names without Hydra's internal ones (`_dummy_empty_config_`)."""
    return [name for name in names if not name.startswith("_")]


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _one_line(text: str) -> str:
    """Hydra's message without its search-path listing, its lines joined."""
    text = _SEARCH_PATH_LISTING.split(text, maxsplit=1)[0]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _first_cause(error: Optional[BaseException], kind: type) -> Optional[BaseException]:
    """`error` or the first exception of type `kind` among its causes and contexts."""
    while error is not None and not isinstance(error, kind):
        error = error.__cause__ or error.__context__
    return error


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


def absolute_config_path(argv: Sequence[str]) -> List[str]:
    """`argv` with the folder of --config-path / -cp made absolute from the current directory, as
    the preflight composition reads it (Hydra itself would read a relative one from the folder
    of the module that calls it)."""
    args = list(argv)
    for i, arg in enumerate(args):
        for flag in CONFIG_PATH_FLAGS:
            if arg == flag and i + 1 < len(args):
                args[i + 1] = os.path.abspath(args[i + 1])
            elif arg.startswith(flag + "="):
                args[i] = f"{flag}={os.path.abspath(arg[len(flag) + 1:])}"
    return args


def needs_preflight(args) -> bool:
    """Whether a command composes one config that we can check before Hydra runs it
    (multirun sweeps are checked job by job instead)."""
    return not (args.help or args.hydra_help or args.multirun or args.shell_completion or args.info)


def run_hydra_app(task: Callable[[DictConfig], None], argv: List[str], prog: str) -> None:
    """Run `task` through `hydra.main` on the root config stored as ROOT_CONFIG_NAME."""
    app = hydra.main(config_path=None, config_name=ROOT_CONFIG_NAME, version_base=HYDRA_VERSION_BASE)(task)
    saved_argv = sys.argv
    sys.argv = [prog] + absolute_config_path(argv)
    try:
        app()
    finally:
        sys.argv = saved_argv
