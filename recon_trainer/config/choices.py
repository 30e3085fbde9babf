"""Choice fields: config fields whose value is one of a fixed list of strings.

    mixed_precision: str = choice_field("no", ("no", "bf16", "fp16"))  # help text
    loggers: Tuple[str, ...] = choice_field(("console",), LOGGER_NAMES)  # each element is checked
    lr_policy: str = choice_field("MultiStepLR", LR_POLICIES, ignore_case=True)

The field's metadata carries its `Choices`. `validate_config` reports every bad value of the
selected branches under its dotted key when a config is composed; the class's `__post_init__`
calls `check_choices(self)`, so that an object built from Python without validation fails with
the same message (keyed `ClassName.field`). A field may hold one string, a sequence of strings
(each element is checked, keyed `field[i]`) or a mapping to strings (each value, keyed `field.name`).
"""
import copy
import dataclasses
from typing import Any, Iterable, Iterator, List, Mapping, Sequence, Tuple

from .errors import ConfigError, did_you_mean

CHOICES_METADATA_KEY = "recon_trainer.choices"


@dataclasses.dataclass(frozen=True)
class Choices:
    """The valid strings of a choice field; with `ignore_case`, any spelling of one is valid."""

    values: Tuple[str, ...]
    ignore_case: bool = False

    def accepts(self, value: Any) -> bool:
        """Whether `value` is one of the choices (a single string, not a container)."""
        if not isinstance(value, str):
            return False
        if self.ignore_case:
            return value.lower() in {choice.lower() for choice in self.values}
        return value in self.values

    def problems(self, key: str, value: Any) -> List[str]:
        """One message per bad string in `value` (a string, or a sequence or mapping of them)."""
        return [self.message(item_key, item) for item_key, item in _items(key, value) if not self.accepts(item)]

    def message(self, key: str, value: Any) -> str:
        """`bad value 'x' for 'key'; did you mean 'y'? choices: a, b, c`."""
        hint = did_you_mean(value, self.values) if isinstance(value, str) else ""
        return f"bad value {value!r} for '{key}'{hint or ';'} choices: {', '.join(self.values)}"

    def check(self, key: str, value: Any) -> None:
        """Raise a ConfigError naming every bad string in `value` under `key`."""
        problems = self.problems(key, value)
        if problems:
            raise config_error(problems)


def choice_field(default: Any, choices: Iterable[str], *, ignore_case: bool = False) -> Any:
    """A dataclass field defaulting to `default` whose value must be one of `choices`.

    `default` is a string, a tuple of strings or a dict of strings (each dict gets a copy).
    """
    spec = Choices(tuple(choices), ignore_case)
    bad_default = spec.problems("default", default)
    if bad_default:
        raise ValueError(f"choice_field: {'; '.join(bad_default)}")
    metadata = {CHOICES_METADATA_KEY: spec}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choice_fields(schema: type) -> Iterator[Tuple[str, Choices]]:
    """(field name, Choices) for each choice field of the dataclass `schema`."""
    for field in dataclasses.fields(schema):
        if CHOICES_METADATA_KEY in field.metadata:
            yield field.name, field.metadata[CHOICES_METADATA_KEY]


def check_choices(obj: Any) -> None:
    """Raise a ConfigError for every bad value of `obj`'s choice fields; call it from __post_init__."""
    prefix = type(obj).__name__ + "."
    problems = [
        problem
        for name, choices in choice_fields(type(obj))
        for problem in choices.problems(prefix + name, getattr(obj, name))
    ]
    if problems:
        raise config_error(problems)


def config_error(problems: Sequence[str]) -> ConfigError:
    """One ConfigError for `problems`: the problem itself, or a header and one problem per line."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError("\n  ".join(["invalid config:", *problems]))


def _items(key: str, value: Any) -> Iterator[Tuple[str, Any]]:
    """(key, string) pairs of a choice field's value: itself, each element or each mapped value."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            yield f"{key}.{name}", item
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index, item in enumerate(value):
            yield f"{key}[{index}]", item
    else:
        yield key, value
