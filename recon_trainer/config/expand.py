"""expand_args_fields: turn a Configurable / ReplaceableBase subclass into a dataclass, in place.

For each member annotation it adds the config fields and the `create_<member>` functions:

    x: Base                    -> x_class_type: str, x_<Impl>_args: dict for each registered Impl
    x: Optional[Base]          -> the same with x_class_type: Optional[str]
    x: SomeConfigurable        -> x_args: dict
    x: Optional[Configurable]  -> x_args: dict (x_enabled: bool must be declared)

Field order: declared fields first, then per member (in declaration order) the added
class type and the args fields, implementations sorted by name.
"""
import dataclasses
import sys
import typing
import warnings
from typing import Any, Callable, Dict, List, Optional

from omegaconf import DictConfig, open_dict

from .bases import Configurable, ReplaceableBase, install_expander
from .defaults import DEFAULTS_IN_PROGRESS, get_default_args
from .discovery import discover_plugins
from .errors import ConfigError
from .members import (
    CREATE_PREFIX,
    IMPL_SUFFIX,
    PRE_EXPAND_NAME,
    TWEAK_SUFFIX,
    MemberKind,
    MemberSpec,
    classify,
)
from .registry import UNDEFAULTED, late_registration_message, namespace_of, registry



def is_expanded(cls: type) -> bool:
    """True once expand_args_fields has processed `cls` itself (a dataclass subclass is not)."""
    return "__dataclass_fields__" in cls.__dict__


def expand_args_fields(cls: type) -> type:
    """Make `cls` a dataclass with its member fields; a no-op after the first call."""
    if is_expanded(cls):
        return cls
    discover_plugins()  # every implementation must be registered before fields are frozen
    pre_expand = getattr(cls, PRE_EXPAND_NAME, None)
    if pre_expand is not None:
        pre_expand()

    members: Dict[str, MemberSpec] = {}
    creation_functions: List[str] = []
    for base in reversed(cls.__mro__[1:]):
        if base in (Configurable, ReplaceableBase) or not issubclass(base, (Configurable, ReplaceableBase)):
            continue
        expand_args_fields(base)
        members.update(base._processed_members)
        creation_functions += [f for f in base._creation_functions if f not in creation_functions]

    own = cls.__dict__.get("__annotations__", {})
    resolved = _resolve_annotations(cls) if any(isinstance(a, str) for a in own.values()) else dict(own)
    own_members: List[MemberSpec] = []
    for name in list(own):
        found = classify(resolved[name])
        if found is None:
            _reject_misplaced_slot(cls, name, resolved[name])
            continue
        member_type, kind = found
        del cls.__annotations__[name]
        spec = _add_member_fields(cls, name, member_type, kind, resolved[name])
        members[name] = spec
        own_members.append(spec)
        create_name = CREATE_PREFIX + name
        if create_name in creation_functions:
            warnings.warn(f"Clash with {create_name} in a base class.")
        else:
            creation_functions.append(create_name)
        _add_create_functions(cls, spec)

    cls._processed_members = members
    cls._creation_functions = tuple(creation_functions)
    torch = sys.modules.get("torch")
    is_module = torch is not None and issubclass(cls, torch.nn.Module)
    # eq=False keeps identity equality and hashing, which torch modules rely on.
    dataclasses.dataclass(eq=False, repr=not is_module)(cls)
    if is_module:
        _run_module_init_first(cls, torch.nn.Module.__init__)
    for spec in own_members:
        if spec.kind.replaceable:
            registry.note_slot(cls, spec.name, spec.base)
    return cls


def run_auto_creation(self: Any) -> None:
    """Build every member of `self` by calling its create_* functions (base members first).

    Call it from `__post_init__`; members stay unset otherwise.
    """
    for create_name in type(self)._creation_functions:
        getattr(self, create_name)()


def _resolve_annotations(cls: type) -> Dict[str, Any]:
    """Own annotations with string forms (`from __future__ import annotations`) resolved."""
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in cls.__dict__["__annotations__"]}


def _reject_misplaced_slot(cls: type, name: str, annotation: Any) -> None:
    """A non-root ReplaceableBase annotation would become an unusable plain field: say so."""
    if isinstance(annotation, type) and issubclass(annotation, ReplaceableBase):
        root = namespace_of(annotation)
        raise TypeError(
            f"{cls.__qualname__}.{name}: annotate a slot with its namespace "
            f"{root.__name__ if root else 'root (a direct subclass of ReplaceableBase)'}, "
            f"not {annotation.__name__}."
        )


def _declared_names(cls: type) -> set:
    return {key for klass in cls.__mro__ for key in klass.__dict__.get("__annotations__", {})}


def _add_field(cls: type, key: str, annotation: Any, default: Any) -> None:
    if key in _declared_names(cls):
        raise ValueError(f"Cannot generate {cls.__qualname__}.{key} because it is already present.")
    cls.__annotations__[key] = annotation
    setattr(cls, key, default)


def _add_member_fields(cls: type, name: str, member_type: type, kind: MemberKind, declared: Any) -> MemberSpec:
    spec = MemberSpec(name=name, kind=kind, base=member_type, declared=declared)
    if kind.replaceable:
        if spec.type_key not in _declared_names(cls):
            _add_field(cls, spec.type_key, Optional[str] if kind.optional else str, UNDEFAULTED)
        for impl in registry.get_all(member_type):
            if issubclass(impl, cls) or impl in DEFAULTS_IN_PROGRESS:
                continue  # recursion guard: an implementation may not contain itself
            impl_name = impl.__name__
            spec.implementations[impl_name] = impl
            lookup = lambda impl_name=impl_name: registry.get(member_type, impl_name)  # noqa: E731
            _add_field(cls, spec.args_key(impl_name), dict, _args_field(cls, name, lookup))
        return spec
    if issubclass(member_type, cls):
        raise ValueError(f"Cannot process {cls.__qualname__}.{name}: a class cannot contain itself.")
    if kind.optional and spec.enabled_key not in _declared_names(cls):
        raise ValueError(
            f"{name} is an Optional[{member_type.__name__}] member but there is no corresponding "
            f"member {spec.enabled_key}."
        )
    _add_field(cls, spec.args_key(), dict, _args_field(cls, name, lambda: member_type))
    return spec


def _args_field(cls: type, member: str, lookup: Callable[[], type]) -> dataclasses.Field:
    """A field whose default is the looked-up class's default args, after `<member>_tweak_args`.

    The lookup runs at call time, so a re-registered implementation's new defaults are used.
    """

    def default_args() -> DictConfig:
        impl = lookup()
        args = get_default_args(impl)
        tweak = getattr(cls, member + TWEAK_SUFFIX, None)
        if tweak is not None:
            with open_dict(args):
                tweak(impl, args)
        return args

    return dataclasses.field(default_factory=default_args)


def _add_create_functions(cls: type, spec: MemberSpec) -> None:
    """Add create_<name> and create_<name>_impl unless the class defines them."""
    create_name = CREATE_PREFIX + spec.name
    impl_name = create_name + IMPL_SUFFIX

    def create(self) -> None:
        if spec.kind.replaceable:
            control = getattr(self, spec.type_key)
            args = getattr(self, spec.args_key(control), None) if isinstance(control, str) else None
        else:
            control = getattr(self, spec.enabled_key) if spec.kind.optional else True
            args = getattr(self, spec.args_key())
        getattr(self, impl_name)(control, args)

    def create_impl(self, control: Any, args: Any) -> None:
        if control is None or control is False:
            setattr(self, spec.name, None)
            return
        if spec.kind.replaceable:
            built_type = _chosen_implementation(type(self), spec, control, args)
        else:
            built_type = spec.base
        expand_args_fields(built_type)
        setattr(self, spec.name, built_type(**args))

    for function, function_name in ((create, create_name), (create_impl, impl_name)):
        if not hasattr(cls, function_name):
            function.__name__ = function_name
            function.__qualname__ = f"{cls.__qualname__}.{function_name}"
            setattr(cls, function_name, function)


def _chosen_implementation(container: type, spec: MemberSpec, class_type: Any, args: Any) -> type:
    if not isinstance(class_type, str):
        raise ValueError(
            f"{container.__qualname__}.{spec.type_key} must name an implementation of "
            f"{spec.base.__name__}, got {class_type!r}. Perhaps this is from {spec.type_key}?"
        )
    chosen = registry.get(spec.base, class_type, slot=f"{container.__qualname__}.{spec.type_key}")
    if args is None:
        raise ConfigError(late_registration_message(container, spec.name, class_type))
    known = spec.implementations.get(class_type)
    if known is not None and known is not chosen:
        warnings.warn(f"New implementation of {class_type} is being chosen.")
    return chosen


def _run_module_init_first(cls: type, module_init: Callable) -> None:
    """Wrap the dataclass __init__ of a torch.nn.Module so Module.__init__ runs before fields are set."""
    dataclass_init = cls.__init__

    def __init__(self, *args, **kwargs) -> None:
        module_init(self)
        dataclass_init(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__wrapped__ = dataclass_init
    cls.__init__ = __init__


install_expander(expand_args_fields)
