"""The registry: the implementations each replaceable namespace can be filled with.

A namespace is a class that directly subclasses `ReplaceableBase` (e.g. `ModelBase`). Its
registered subclasses are chosen by name through `<member>_class_type` in a config.
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Type

from .bases import ReplaceableBase
from .errors import ConfigError, did_you_mean

# The class type of a slot whose container declared no default implementation.
UNDEFAULTED = "UNDEFAULTED"


class LateRegistrationWarning(UserWarning):
    """An implementation was registered after a container using its namespace was expanded."""


def namespace_of(cls: type) -> Optional[type]:
    """The namespace root of `cls` (its ancestor directly below ReplaceableBase), or None."""
    if not isinstance(cls, type):
        return None
    for klass in cls.__mro__:
        if ReplaceableBase in klass.__bases__:
            return klass
    return None


def unknown_implementation_message(slot: str, name: object, base: type, choices: Sequence[str]) -> str:
    """The message for a class type naming nothing registered: slot, choices, closest match."""
    listed = ", ".join(choices) if choices else "none (is the plugin that provides one imported?)"
    if name == UNDEFAULTED:
        return f"{slot} is not set: choose an implementation of {base.__name__}; choices: {listed}"
    hint = did_you_mean(name, choices) if isinstance(name, str) else ""
    return f"{slot}={name!r} is not registered for {base.__name__}{hint or ';'} choices: {listed}"


def late_registration_message(container: type, member: str, impl_name: str) -> str:
    """Why `<member>_class_type=<impl_name>` cannot be used on an already expanded container."""
    return (
        f"{impl_name} was registered after {container.__qualname__} was expanded, so "
        f"{container.__qualname__} has no '{member}_{impl_name}_args' and cannot build it. "
        f"Import the module that defines {impl_name} before the config is built (a launcher "
        f"script imports it before calling main(); a package advertises it under the "
        f"'recon_trainer.plugins' entry point)."
    )


class Registry:
    """Maps each namespace to its implementations by class name; one per process (`registry`)."""

    def __init__(self) -> None:
        self._implementations: Dict[type, Dict[str, type]] = {}
        # namespace -> the (container, member) slots of already expanded containers
        self._slots: Dict[type, List[Tuple[type, str]]] = {}

    def register(self, cls: Type) -> Type:
        """Class decorator: make `cls` selectable by its name in its namespace. A second class of the
        same name in the namespace (another module) is an error: one would silently hide the other."""
        namespace = namespace_of(cls)
        if namespace is None:
            raise ValueError(
                f"Cannot register {cls!r}: it does not subclass a ReplaceableBase namespace. "
                f"Cannot tell what it is."
            )
        known = self._implementations.setdefault(namespace, {})
        other = known.get(cls.__name__)
        if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"Cannot register {cls.__module__}.{cls.__qualname__}: {namespace.__name__} already has "
                             f"an implementation named {cls.__name__} ({other.__module__}); rename one of them")
        known[cls.__name__] = cls
        self._warn_if_late(cls, namespace)
        return cls

    def get(self, base: type, name: str, slot: Optional[str] = None) -> type:
        """The implementation called `name` in base's namespace; it must subclass `base`."""
        if not isinstance(name, str):
            raise ValueError(f"Expected the name of a {base.__name__} implementation, got {name!r}.")
        namespace = namespace_of(base)
        found = self._implementations.get(namespace, {}).get(name)
        if found is None:
            choices = [c.__name__ for c in self.get_all(base)]
            raise ConfigError(unknown_implementation_message(slot or "class_type", name, base, choices))
        if not issubclass(found, base):
            raise ValueError(f"{name} resolves to {found} which does not subclass {base}")
        return found

    def get_all(self, base: type) -> List[type]:
        """Registered implementations below `base`, sorted by name (`base` itself excluded
        unless it is the namespace root)."""
        namespace = namespace_of(base)
        found = self._implementations.get(namespace, {})
        return [
            found[name]
            for name in sorted(found)
            if base is namespace or (issubclass(found[name], base) and found[name] is not base)
        ]

    def namespaces(self) -> List[type]:
        """Every namespace with at least one implementation, sorted by name."""
        return sorted((ns for ns, impls in self._implementations.items() if impls), key=lambda c: c.__name__)

    def note_slot(self, container: type, member: str, namespace: type) -> None:
        """Record that `container` (now expanded) has a slot `member` filled from `namespace`."""
        self._slots.setdefault(namespace, []).append((container, member))

    def _warn_if_late(self, cls: type, namespace: type) -> None:
        for container, member in self._slots.get(namespace, ()):
            spec = container._processed_members[member]
            if cls.__name__ in spec.implementations or not issubclass(cls, spec.base):
                continue
            if issubclass(cls, container):  # the recursion guard would skip it anyway
                continue
            warnings.warn(late_registration_message(container, member, cls.__name__), LateRegistrationWarning, stacklevel=3)


registry = Registry()
