"""Plugin discovery: import the built-in plugins and those other packages advertise, and find
their YAML configs.

Runs once per process, before the first class is expanded, so every implementation is
registered before any container freezes its list of `<member>_<Impl>_args` fields.

A plugin is a package: the built-in ones are the sub-packages of `recon_trainer_plugins` (the
repository's plugins/ folder), another distribution advertises its own with an entry point in
the group `recon_trainer.plugins` (`toy_method = toy_method`). A plugin's configs are the YAML
files in a `configs/` folder beside the module the entry point names (for a built-in plugin:
plugins/<method>/configs/); they are on the config search path, so `--config-name` finds them
like the core's.
"""
import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
from typing import List, Optional

from .errors import PluginImportError

ENTRY_POINT_GROUP = "recon_trainer.plugins"
BUILTIN_PACKAGE = "recon_trainer_plugins"
CONFIGS_FOLDER = "configs"  # a plugin's YAML configs, beside its module
# Sub-packages of plugins/ that users import themselves (e.g. from a launcher script).
NOT_DISCOVERED = frozenset({"examples"})

_discovered: Optional[List[str]] = None


def discover_plugins() -> List[str]:
    """Import every built-in plugin package and `recon_trainer.plugins` entry point, once.

    Returns the imported module names. Raises PluginImportError naming the plugin and the
    real cause when one cannot be imported.
    """
    global _discovered
    if _discovered is None:
        _discovered = []  # set first: a plugin module may expand classes while importing
        try:
            _discovered += _import_framework_modules() + _import_builtin_plugins() + _load_entry_points()
        except PluginImportError:
            _discovered = None  # a later call reports the failure again instead of skipping it
            raise
    return _discovered


def _import_framework_modules() -> List[str]:
    from recon_trainer.builtins import BUILTIN_MODULES

    for name in BUILTIN_MODULES:
        importlib.import_module(name)
    return list(BUILTIN_MODULES)


def _import_builtin_plugins() -> List[str]:
    if importlib.util.find_spec(BUILTIN_PACKAGE) is None:
        return []
    package = importlib.import_module(BUILTIN_PACKAGE)
    imported = []
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name in NOT_DISCOVERED or module.name.startswith("_"):
            continue
        name = f"{BUILTIN_PACKAGE}.{module.name}"
        try:
            importlib.import_module(name)
        except Exception as error:
            raise PluginImportError(f"built-in plugin '{name}' failed to import: {type(error).__name__}: {error}") from error
        imported.append(name)
    return imported


def plugin_config_dirs() -> List[str]:
    """The `configs/` folders of the built-in plugins (in name order, examples included) and of
    the entry-point plugins (in entry-point name order), as absolute paths; the plugins
    themselves are not imported (a dotted entry point imports its parent package only)."""
    folders = []
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        for name in sorted(os.listdir(location)):
            folders.append(os.path.join(location, name, CONFIGS_FOLDER))
    for entry_point in _entry_points():
        try:
            module_spec = importlib.util.find_spec(entry_point.module)
        except (ImportError, ValueError):
            module_spec = None  # reported when discovery loads it
        if module_spec is not None and module_spec.origin:
            folders.append(os.path.join(os.path.dirname(module_spec.origin), CONFIGS_FOLDER))
    return [os.path.abspath(folder) for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


def _entry_points() -> List[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _load_entry_points() -> List[str]:
    loaded = []
    for entry_point in _entry_points():
        dist = getattr(entry_point, "dist", None)
        origin = f" from distribution '{dist.name}'" if dist is not None else ""
        try:
            entry_point.load()
        except Exception as error:
            raise PluginImportError(
                f"plugin entry point '{entry_point.name} = {entry_point.value}'{origin} failed to load: "
                f"{type(error).__name__}: {error}"
            ) from error
        loaded.append(entry_point.value)
    return loaded
