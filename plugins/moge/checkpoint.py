"""Building MoGe networks from `model_config` dicts and loading MoGe's released `model.pt` files.

A released checkpoint is `{"model_config": dict, "model": state dict}` (torch.save). MoGe-2's
config has `encoder` as a dict (and a `neck`); MoGe-1's `encoder` is a backbone name.
"""
from __future__ import annotations

import copy
import inspect
import warnings
from typing import Any, Dict, Mapping, Type, Union

import torch
from torch import nn

from recon_trainer.config import ConfigError, plain
from recon_trainer.errors import UserError

from .modules import IMAGENET_MEAN, IMAGENET_STD, check_choice, check_keys
from .network_v1 import MoGeV1Network
from .network_v2 import MoGeV2Network
from .state_dicts import load_checked_state_dict, read_torch_file

NETWORKS: Dict[str, Type[nn.Module]] = {"v1": MoGeV1Network, "v2": MoGeV2Network}
# MoGe saves the constant ImageNet statistics with the weights; ours are non-persistent buffers
NORMALISATION_KEYS = {"v1": ("image_mean", "image_std"), "v2": ("encoder.image_mean", "encoder.image_std")}
WHAT = "MoGe checkpoint"


def detect_version(model_config: Mapping[str, Any]) -> str:
    """"v2" when `encoder` is a dict or there is a `neck` (MoGe-2's layout), else "v1"."""
    return "v2" if isinstance(model_config.get("encoder"), dict) or "neck" in model_config else "v1"


def _without_unknown(config: Dict[str, Any], allowed: list, key: str) -> Dict[str, Any]:
    """`config` less the keys not in `allowed`, each dropped with a warning (MoGe ignores them too)."""
    unknown = [name for name in config if name not in allowed]
    if unknown:
        warnings.warn(f"{key}: ignoring unknown keys {unknown}")
    return {name: value for name, value in config.items() if name in allowed}


def network_from_config(version: str, model_config: Mapping[str, Any], key: str = "model_config",
                        ignore_unknown: bool = False) -> Union[MoGeV1Network, MoGeV2Network]:
    """A randomly initialised network of `version` ("v1" | "v2") from MoGe's `model_config` keys.

    ConfigError messages start with `key`. Unknown keys are errors, or (ignore_unknown, as MoGe does
    for released configs) dropped with a warning, also inside v2's nested dicts.
    """
    check_choice("version", version, tuple(NETWORKS))
    network_cls = NETWORKS[version]
    config = copy.deepcopy(plain(model_config))  # plain Python, never the caller's containers
    parameters = inspect.signature(network_cls).parameters
    allowed = list(parameters)
    required = [name for name, parameter in parameters.items() if parameter.default is inspect.Parameter.empty]
    if ignore_unknown and isinstance(config, dict):
        config = _without_unknown(config, allowed, key)
        if version == "v2":
            for name, keys in MoGeV2Network.NESTED_KEYS.items():
                if isinstance(config.get(name), Mapping):
                    config[name] = _without_unknown(dict(config[name]), keys, f"{key}.{name}")
    check_keys(key, config, allowed, required)
    try:
        return network_cls(**config)
    except ConfigError as error:
        raise ConfigError(f"{key}.{error}") from error


def map_state_dict(version: str, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A released MoGe state dict (MoGe's key layout) -> our network's state dict.

    The layouts are identical except for the ImageNet normalisation buffers, which MoGe saves and
    our networks keep as constants: they are dropped after checking that they hold ImageNet's
    statistics (ValueError otherwise).
    """
    check_choice("version", version, tuple(NETWORKS))
    mapped = dict(state_dict)
    for name, expected in zip(NORMALISATION_KEYS[version], (IMAGENET_MEAN, IMAGENET_STD)):
        value = mapped.pop(name, None)
        if value is not None and not torch.allclose(value.detach().float().cpu().flatten(), torch.tensor(expected),
                                                    atol=1e-6):
            raise ValueError(f"{name} holds {value.flatten().tolist()}, expected the ImageNet statistics {expected}")
    return mapped


def load_released(path: str, map_location: Any = "cpu") -> Union[MoGeV1Network, MoGeV2Network]:
    """The network stored in a MoGe `model.pt` (v1 or v2, detected from its model_config), with its
    weights loaded strictly, on `map_location`. UserError naming the file if it is missing,
    unreadable, not a MoGe checkpoint, or its weights do not fit its model_config."""
    checkpoint = read_torch_file(path, WHAT, map_location)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model_config"), Mapping) \
            or not isinstance(checkpoint.get("model"), Mapping):
        found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise UserError(f"{WHAT} {str(path)!r}: expected a dict with a 'model_config' dict and a 'model' state dict "
                        f"(MoGe's model.pt), found {found}")
    model_config = dict(checkpoint["model_config"])
    version = detect_version(model_config)
    # ConfigErrors (UserErrors) of a bad model_config name the file through the key
    network = network_from_config(version, model_config, key=f"{WHAT} {str(path)!r} model_config",
                                  ignore_unknown=True)
    try:
        state = map_state_dict(version, checkpoint["model"])
    except ValueError as error:
        raise UserError(f"{WHAT} {str(path)!r}: {error}") from error
    load_checked_state_dict(network, state, path, f"{WHAT} (MoGe {version})")
    if isinstance(map_location, (str, torch.device)):
        network.to(map_location)
    return network
