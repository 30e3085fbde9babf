"""The two marker bases of every config class.

Neither is a dataclass: a subclass becomes one when `expand_args_fields` runs, which happens at
its first instantiation at the latest.
"""


class Configurable:
    """A config class of fixed type: a member `x: MyConfigurable` gets the field `x_args`."""

    def __new__(cls, *args, **kwargs):
        from .expand import expand_args_fields

        expand_args_fields(cls)
        return super().__new__(cls)


class ReplaceableBase:
    """A direct subclass opens a namespace of implementations, chosen by name.

    A member `x: MyBase` gets `x_class_type` plus one `x_<Impl>_args` per registered `Impl`.
    """

    def __new__(cls, *args, **kwargs):
        from .expand import expand_args_fields

        expand_args_fields(cls)
        return super().__new__(cls)
