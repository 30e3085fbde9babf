"""get_default_args: the typed default config of a config class, dataclass, function or class."""
import copy
import dataclasses
import enum
import inspect
import sys
import warnings
from typing import Any, Callable, Iterable, List, Optional, Tuple

from omegaconf import DictConfig, ListConfig, Node, OmegaConf, open_dict

from .bases import Configurable, ReplaceableBase, expand_config_class

# Classes whose default config is being built right now, outermost first. An implementation
# on this stack gets no args field in a container expanded meanwhile (recursion guard).
DEFAULTS_IN_PROGRESS: List[type] = []
_PLAIN_VALUES = (int, float, bool, str, bytes, tuple, enum.Enum)
_NO_COPY = "no_deepcopy_set_nodes"  # OmegaConf's flag: a node set into a config is not copied first


def _is_config_class(C: Any) -> bool:
    return isinstance(C, type) and issubclass(C, (Configurable, ReplaceableBase))


def get_default_args(C: Any) -> DictConfig:
    """A fresh, typed DictConfig of C's defaults (`OmegaConf.get_type(result) is C`).

    C may be a Configurable / ReplaceableBase class (expanded first), a dataclass or an instance
    of one, or a function / plain class prepared with `enable_get_default_args`. Nested args
    are typed too; tuples become lists, enums stay enums (set by name), fields without a
    default are MISSING (`???`). `None` gives an empty config.
    """
    if C is None:
        return DictConfig({})
    if _is_config_class(C):
        if C in DEFAULTS_IN_PROGRESS:
            chain = " -> ".join(c.__qualname__ for c in DEFAULTS_IN_PROGRESS + [C])
            raise ValueError(f"Recursive config: the defaults of {C.__qualname__} contain themselves ({chain}).")
        expand_config_class(C)
        DEFAULTS_IN_PROGRESS.append(C)
        try:
            return _structured(C)
        finally:
            DEFAULTS_IN_PROGRESS.pop()
    if dataclasses.is_dataclass(C):
        return _structured(C)
    if inspect.isfunction(C) or inspect.isclass(C):
        default_args_class = getattr(sys.modules[C.__module__], _default_args_class_name(C), None)
        if default_args_class is None:
            raise ValueError(f"Cannot get args for {C.__qualname__}. Was enable_get_default_args forgotten?")
        return _structured(default_args_class)
    raise ValueError(f"Cannot get default args of {C!r}: expected a class, a dataclass or a function.")


def _structured(C: Any) -> DictConfig:
    """OmegaConf.structured(C). For a class whose fields have no config node as their default, it
    is built without OmegaConf's copy of each field's node as it is set: the nodes are fresh (a
    default_factory's, e.g. a nested args field's get_default_args) so nothing is shared, and each
    nested args block is copied once instead of once per level above it, which halves the time
    to build Experiment's default config. (OmegaConf.unsafe_merge sets the same flag; it is
    cleared before the config is returned.) An instance is copied as usual: its nodes are its own."""
    no_copy = isinstance(C, type) and not any(isinstance(f.default, Node) for f in dataclasses.fields(C))
    try:
        cfg = OmegaConf.structured(C, flags={_NO_COPY: True} if no_copy else None)
    except Exception as error:
        error.add_note(f"(while building the default config of {getattr(C, '__qualname__', C)!r})")
        raise
    if no_copy:
        cfg._set_flag(_NO_COPY, None)
    return cfg


def get_default_args_field(C: Any, hook: Optional[Callable[[DictConfig], None]] = None) -> dataclasses.Field:
    """A dataclass field defaulting to `get_default_args(C)`, edited by `hook` (under open_dict).

    Use it for a member holding the args of a plain class or function that is not a config class.
    """

    def default_args() -> DictConfig:
        args = get_default_args(C)
        if hook is not None:
            with open_dict(args):
                hook(args)
        return args

    return dataclasses.field(default_factory=default_args)


def _default_args_class_name(C: Any) -> str:
    return f"_{C.__name__}_default_args_"


def enable_get_default_args(C: Any, *, overwrite: bool = True) -> None:
    """Let `get_default_args(C)` work for a function or a plain class.

    Builds a dataclass of C's defaulted, annotated parameters and stores it in C's module
    (so the resulting configs pickle). Parameters without a default are left out, and so are
    defaults that cannot live in a config (object references). A defaulted parameter without
    an annotation is an error.
    """
    if not (inspect.isfunction(C) or inspect.isclass(C)):
        raise ValueError(f"enable_get_default_args expects a function or a class, got {C!r}.")
    fields = _default_args_fields(C)
    name = _default_args_class_name(C)
    module = sys.modules[C.__module__]
    if hasattr(module, name):
        if not overwrite:
            raise ValueError(f"Cannot overwrite {name} in {C.__module__}.")
        warnings.warn(f"Overwriting {name} in {C.__module__}.")
    default_args_class = dataclasses.make_dataclass(name, fields)
    default_args_class.__module__ = C.__module__
    setattr(module, name, default_args_class)


def _default_args_fields(C: Any) -> List[Tuple[str, Any, dataclasses.Field]]:
    signature = inspect.signature(C.__init__ if inspect.isclass(C) else C, eval_str=True)
    parameters = list(signature.parameters.values())[1 if inspect.isclass(C) else 0 :]
    fields = []
    for parameter in parameters:
        default = parameter.default
        if default is inspect.Parameter.empty:
            continue
        if parameter.annotation is inspect.Parameter.empty:
            raise ValueError(
                f"enable_get_default_args({C.__qualname__}): argument '{parameter.name}' has a "
                f"default but no type annotation."
            )
        annotation = parameter.annotation
        if isinstance(default, (set, frozenset)):
            default, annotation = tuple(default), Tuple[Any, ...]
        if isinstance(default, (list, dict)):
            field = dataclasses.field(default_factory=lambda default=default: copy.deepcopy(default))
        elif default is None or isinstance(default, _PLAIN_VALUES):
            field = dataclasses.field(default=default)
        else:
            continue  # an object reference cannot be written in a config
        fields.append((parameter.name, annotation, field))
    return fields


def remove_keys(args: Any, keys: Iterable[str]) -> None:
    """Delete those of `keys` that `args` (a config node) has: a `<member>_tweak_args` hook's way
    to hide the fields a parent sets itself."""
    for key in keys:
        if key in args:
            del args[key]


def plain(value: Any) -> Any:
    """A config value as plain Python: DictConfig / ListConfig become dicts / lists (interpolations
    resolved); anything else is returned as it is."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
