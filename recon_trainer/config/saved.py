"""Read a config saved by an earlier run (exp_dir/expconfig.yaml) back into a typed config.

A file written by an older version may hold keys this version no longer has; they are listed
with their dotted paths instead of failing on the first one deep inside OmegaConf.
"""
from __future__ import annotations

import os
from typing import Any, List

from omegaconf import DictConfig, OmegaConf

from .defaults import get_default_args
from .errors import ConfigError


def unknown_keys(schema: DictConfig, saved: Any, path: str = "") -> List[str]:
    """Dotted paths of the keys of the plain `saved` tree that the typed `schema` lacks.

    A field typed as a dict (e.g. loss_weights) takes any key, so its keys are never unknown.
    """
    if not isinstance(saved, dict) or not isinstance(schema, DictConfig) or OmegaConf.get_type(schema) is dict:
        return []
    found = []
    for key, value in saved.items():
        dotted = f"{path}{key}"
        if key not in schema:
            found.append(dotted)
        else:
            found += unknown_keys(schema[key], value, dotted + ".")
    return found


def load_saved_config(path: str, root: type, drop_unknown_keys: bool = False) -> DictConfig:
    """The config saved at `path`, merged over `root`'s defaults.

    Unknown keys raise ConfigError listing all of them, unless `drop_unknown_keys`, which leaves
    them out and prints one line naming them.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"no saved config at {path} (is exp_dir the folder of a run?)")
    saved = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    defaults = get_default_args(root)
    unknown = unknown_keys(defaults, saved)
    if unknown and not drop_unknown_keys:
        listed = "\n  ".join(unknown)
        raise ConfigError(
            f"{path} has keys this version of recon_trainer does not know (written by another version?):\n"
            f"  {listed}\nRemove them from the file, or pass drop_unknown_keys=True to ignore them."
        )
    for dotted in unknown:
        parent, _, key = dotted.rpartition(".")
        node = saved
        for part in parent.split(".") if parent else []:
            node = node[part]
        del node[key]
    if unknown:
        print(f"ignoring {len(unknown)} unknown key(s) of {path}: {', '.join(unknown)}")
    try:
        return OmegaConf.merge(defaults, saved)
    except Exception as error:  # a bad value type: name the file
        raise ConfigError(f"{path}: {error}") from error
