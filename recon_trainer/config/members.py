"""Which annotations are config members, and what a processed member looks like."""
import dataclasses
import enum
import inspect
from typing import Any, Dict, Optional, Tuple, Union, get_args, get_origin

from .bases import Configurable, ReplaceableBase

TYPE_SUFFIX = "_class_type"
ARGS_SUFFIX = "_args"
ENABLED_SUFFIX = "_enabled"
CREATE_PREFIX = "create_"
IMPL_SUFFIX = "_impl"
TWEAK_SUFFIX = "_tweak_args"
PRE_EXPAND_NAME = "pre_expand"


class MemberKind(enum.Enum):
    """How a member annotation is turned into config fields."""

    REPLACEABLE = "x: Base -> x_class_type + x_<Impl>_args"
    OPTIONAL_REPLACEABLE = "x: Optional[Base] -> the same, class type may be None"
    CONFIGURABLE = "x: SomeConfigurable -> x_args"
    OPTIONAL_CONFIGURABLE = "x: Optional[SomeConfigurable] -> x_args, built when x_enabled"

    @property
    def replaceable(self) -> bool:
        return self in (MemberKind.REPLACEABLE, MemberKind.OPTIONAL_REPLACEABLE)

    @property
    def optional(self) -> bool:
        return self in (MemberKind.OPTIONAL_REPLACEABLE, MemberKind.OPTIONAL_CONFIGURABLE)


@dataclasses.dataclass(frozen=True, eq=False)
class MemberSpec:
    """A processed member `name` of a container class.

    `implementations` (replaceable members only) maps each implementation name that got an
    `<name>_<Impl>_args` field to the class the registry held at expansion time.
    """

    name: str
    kind: MemberKind
    base: type
    declared: Any
    implementations: Dict[str, type] = dataclasses.field(default_factory=dict)

    @property
    def type_key(self) -> str:
        return self.name + TYPE_SUFFIX

    @property
    def enabled_key(self) -> str:
        return self.name + ENABLED_SUFFIX

    def args_key(self, impl_name: Optional[str] = None) -> str:
        """`<name>_<impl_name>_args` for a replaceable member, `<name>_args` otherwise."""
        return f"{self.name}_{impl_name}{ARGS_SUFFIX}" if self.kind.replaceable else self.name + ARGS_SUFFIX


def _is_namespace_root(type_: Any) -> bool:
    return inspect.isclass(type_) and ReplaceableBase in type_.__bases__


def _is_configurable(type_: Any) -> bool:
    return inspect.isclass(type_) and issubclass(type_, Configurable) and type_ is not Configurable


def classify(annotation: Any) -> Optional[Tuple[type, MemberKind]]:
    """(member class, kind) for a member annotation, or None for an ordinary field.

    `Tuple[Base]`, `List[Base]`, `Optional[int]` and other unions are ordinary fields.
    """
    if get_origin(annotation) is Union:
        args = get_args(annotation)
        if len(args) != 2 or type(None) not in args:
            return None
        inner = args[0] if args[1] is type(None) else args[1]
        if _is_namespace_root(inner):
            return inner, MemberKind.OPTIONAL_REPLACEABLE
        if _is_configurable(inner):
            return inner, MemberKind.OPTIONAL_CONFIGURABLE
        return None
    if _is_namespace_root(annotation):
        return annotation, MemberKind.REPLACEABLE
    if _is_configurable(annotation):
        return annotation, MemberKind.CONFIGURABLE
    return None
