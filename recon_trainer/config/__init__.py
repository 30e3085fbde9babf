"""The configuration system: config classes, the plugin registry and the Hydra wiring.

A config is a tree of dataclasses. A member typed with a `ReplaceableBase` namespace is a slot:
`raysampler_class_type=NearFarRaySampler` picks the implementation and
`raysampler_NearFarRaySampler_args.n_pts_per_ray_training=32` sets it.
"""
from .bases import Configurable, ReplaceableBase
from .defaults import enable_get_default_args, get_default_args, get_default_args_field, plain, remove_keys
from .errors import ConfigError, PluginImportError
from .expand import expand_args_fields, is_expanded, run_auto_creation
from .members import MemberKind, MemberSpec
from .prune import remove_unused_components
from .registry import UNDEFAULTED, LateRegistrationWarning, registry
from .validate import validate_config

__all__ = [
    "Configurable",
    "ConfigError",
    "LateRegistrationWarning",
    "MemberKind",
    "MemberSpec",
    "PluginImportError",
    "ReplaceableBase",
    "UNDEFAULTED",
    "enable_get_default_args",
    "expand_args_fields",
    "get_default_args",
    "get_default_args_field",
    "is_expanded",
    "plain",
    "registry",
    "remove_keys",
    "remove_unused_components",
    "run_auto_creation",
    "validate_config",
]
