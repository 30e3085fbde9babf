"""The two marker bases of every config class.

Neither is a dataclass: a subclass becomes one when `expand_args_fields` runs, which happens at
its first instantiation at the latest. config/expand.py installs that function here when it is
imported (the package's __init__ imports it), so this module depends on nothing above it;
`expand_config_class` calls it for the modules below expand.py (defaults.py).
"""
from typing import Callable, Optional

_expand_on_first_use: Optional[Callable[[type], type]] = None


def install_expander(expand: Callable[[type], type]) -> None:
    """Make `expand` (config/expand.py's expand_args_fields) the function `expand_config_class` calls."""
    global _expand_on_first_use
    _expand_on_first_use = expand


def expand_config_class(cls: type) -> type:
    """Turn a config class into its dataclass (expand_args_fields; a no-op once done)."""
    return _expand_on_first_use(cls)


class Configurable:
    """A config class of fixed type: a member `x: MyConfigurable` gets the field `x_args`."""

    def __new__(cls, *args, **kwargs):
        expand_config_class(cls)
        return super().__new__(cls)


class ReplaceableBase:
    """A direct subclass opens a namespace of implementations, chosen by name.

    A member `x: MyBase` gets `x_class_type` plus one `x_<Impl>_args` per registered `Impl`.
    """

    def __new__(cls, *args, **kwargs):
        expand_config_class(cls)
        return super().__new__(cls)
