"""Reading torch weight files and strict state-dict loading with one-line errors naming the file."""
from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional

import torch
from torch import nn

from recon_trainer.errors import UserError

SHOWN_KEYS = 3  # how many offending keys an error message names


def read_torch_file(path: str, what: str, map_location: Any = "cpu") -> Any:
    """torch.load(path, weights_only=True); UserError "<what> <path>: ..." if missing or unreadable."""
    expanded = os.path.expanduser(str(path))
    if not os.path.isfile(expanded):
        raise UserError(f"{what} {str(path)!r}: no such file")
    try:
        return torch.load(expanded, map_location=map_location, weights_only=True)
    except Exception as error:  # any failure to unpickle means "not a readable weights file"
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(f"{what} {str(path)!r}: not a readable torch file ({type(error).__name__}: {detail[:200]})") \
            from error


def _listed(keys: List[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else "")


def state_dict_mismatch(module: nn.Module, state: Mapping[str, Any]) -> Optional[str]:
    """None if `state` has exactly `module`'s state-dict keys with the same shapes, else a short
    description of the first missing, unexpected and wrongly shaped keys."""
    expected = module.state_dict()
    problems = []
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = []
    for key, value in expected.items():
        found = state.get(key)
        if found is not None and not isinstance(found, torch.Tensor):
            wrong_shape.append(f"{key} (a {type(found).__name__}, expected a tensor)")
        elif found is not None and found.shape != value.shape:
            wrong_shape.append(f"{key} {tuple(found.shape)} (expected {tuple(value.shape)})")
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shape {_listed(wrong_shape)}")
    return "; ".join(problems) or None


def load_checked_state_dict(module: nn.Module, state: Any, path: str, what: str) -> None:
    """Strictly load `state` into `module`; UserError naming `path` if it is not a fitting state dict."""
    if not isinstance(state, Mapping):
        raise UserError(f"{what} {str(path)!r}: expected a state dict (a dict of tensors), "
                        f"found {type(state).__name__}")
    problem = state_dict_mismatch(module, state)
    if problem:
        raise UserError(f"{what} {str(path)!r} does not fit the {type(module).__name__}: {problem}")
    module.load_state_dict(state)


def load_state_dict_file(module: nn.Module, path: str, what: str) -> None:
    """Read the state dict saved at `path` and load it into `module` strictly (errors name the file)."""
    load_checked_state_dict(module, read_torch_file(path, what), path, what)
