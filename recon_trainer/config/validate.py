"""Check a composed config against its schema before anything is built.

OmegaConf already rejects unknown keys and badly typed values while merging into a typed
config; this adds what merging cannot see: keys added with `+key=`, class types naming no
registered implementation, values of choice fields (choices.py) that are not among their
choices, and mandatory values (`???`) left unset in the selected branches.
"""
import dataclasses
from typing import List

from omegaconf import DictConfig, OmegaConf

from .choices import choice_fields, config_error
from .errors import did_you_mean
from .members import ARGS_SUFFIX, MemberSpec
from .registry import UNDEFAULTED, late_registration_message, registry, unknown_implementation_message


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem (with dotted paths) of a typed config."""
    problems = config_problems(cfg)
    if problems:
        raise config_error(problems)


def config_problems(cfg: DictConfig, path: str = "") -> List[str]:
    """Problems of `cfg` and of the branches it selects; `path` prefixes the keys reported."""
    schema = OmegaConf.get_type(cfg)
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return _nested_problems(cfg, path, skip=set())
    field_names = [f.name for f in dataclasses.fields(schema)]
    problems = [unknown_key_message(schema, str(key), path) for key in cfg.keys() if key not in field_names]
    problems += _choice_problems(cfg, schema, path)
    selected_branches = set()
    unselected = set()
    for spec in getattr(schema, "_processed_members", {}).values():
        if spec.kind.replaceable:
            unselected.update(spec.args_key(name) for name in spec.implementations)
            chosen, problem = _check_class_type(cfg, schema, spec, path)
            if problem:
                problems.append(problem)
            elif chosen is not None:
                selected_branches.add(spec.args_key(chosen))
        else:
            unselected.add(spec.args_key())
            if not spec.kind.optional or cfg.get(spec.enabled_key, False):
                selected_branches.add(spec.args_key())
    skip = (unselected - selected_branches) | {k for k in cfg.keys() if k not in field_names}
    return problems + _nested_problems(cfg, path, skip)


def unknown_key_message(schema: type, key: str, path: str = "") -> str:
    """Why `key` is not in `schema`'s config, with the closest valid key. An args key of an
    implementation that is not registered says so and lists the registered ones."""
    for spec in getattr(schema, "_processed_members", {}).values():
        start, end = spec.name + "_", ARGS_SUFFIX
        if spec.kind.replaceable and key.startswith(start) and key.endswith(end) and len(key) > len(start + end):
            impl_name = key[len(start) : -len(end)]
            choices = [impl.__name__ for impl in registry.get_all(spec.base)]
            if impl_name not in choices:
                return (
                    f"unknown key '{path}{key}': {impl_name} is not registered for {spec.base.__name__}"
                    f"{did_you_mean(impl_name, choices) or ';'} choices: {', '.join(choices) or 'none'} "
                    f"(is the plugin that defines {impl_name} imported?)"
                )
    field_names = [f.name for f in dataclasses.fields(schema)]
    return f"unknown key '{path}{key}'{did_you_mean(key, field_names, prefix=path)}"


def _choice_problems(cfg: DictConfig, schema: type, path: str) -> List[str]:
    """Bad values of `schema`'s choice fields set in `cfg` (missing values are reported apart)."""
    return [
        problem
        for name, choices in choice_fields(schema)
        if name in cfg and not OmegaConf.is_missing(cfg, name) and not OmegaConf.is_interpolation(cfg, name)
        for problem in choices.problems(path + name, cfg[name])
    ]


def _nested_problems(cfg: DictConfig, path: str, skip: set) -> List[str]:
    problems = []
    for key in cfg.keys():
        if key in skip or OmegaConf.is_interpolation(cfg, key):
            continue
        if OmegaConf.is_missing(cfg, key):
            problems.append(f"missing value '{path}{key}': it has no default, set it in the config or with {path}{key}=...")
            continue
        value = cfg[key]
        if isinstance(value, DictConfig):
            problems += config_problems(value, f"{path}{key}.")
    return problems


def _check_class_type(cfg: DictConfig, schema: type, spec: MemberSpec, path: str):
    """(chosen implementation name or None, problem message or None) for one slot."""
    slot = f"{path}{spec.type_key}"
    choices = [impl.__name__ for impl in registry.get_all(spec.base)]
    if OmegaConf.is_missing(cfg, spec.type_key):
        return None, unknown_implementation_message(slot, UNDEFAULTED, spec.base, choices)
    chosen = cfg[spec.type_key]
    if chosen is None:  # only an Optional slot's class type can hold None
        return None, None
    if chosen not in choices:
        return None, unknown_implementation_message(slot, chosen, spec.base, choices)
    if chosen not in spec.implementations:
        return None, f"{slot}={chosen!r}: {late_registration_message(schema, spec.name, chosen)}"
    return chosen, None
