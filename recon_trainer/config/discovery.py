"""Plugin discovery: import the built-in plugins and those other packages advertise.

Runs once per process, before the first class is expanded, so every implementation is
registered before any container freezes its list of `<member>_<Impl>_args` fields.
"""
import importlib
import importlib.metadata
import importlib.util
import pkgutil
from typing import List, Optional

from .errors import PluginImportError

ENTRY_POINT_GROUP = "recon_trainer.plugins"
BUILTIN_PACKAGE = "plugins"
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
    if not getattr(package, "IS_RECON_TRAINER_PLUGINS", False):
        return []  # an unrelated top-level package that happens to be called "plugins"
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


def _load_entry_points() -> List[str]:
    loaded = []
    for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
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
