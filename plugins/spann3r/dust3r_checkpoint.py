"""Reading released DUSt3R weights: {'model': state dict, 'args': Namespace(model="AsymmetricCroCo3DStereo(...)")}.

The constructor call in args.model is parsed with `ast`, never evaluated: only that call with
keyword arguments whose values are literals (numbers, strings, booleans, tuples/lists, `inf`,
`-inf`) is accepted. Keywords the file leaves out take the ORIGINAL's defaults (CroCoNet's: enc
768/12/12, dec 512/8/16, pos_embed 'cosine'), not DUSt3RArchitecture's. `freeze` and `mask_ratio`
(training / pretraining settings, no effect on the weights) are ignored. Besides the original's
keywords, DUSt3RArchitecture's own `dpt_feature_dim` / `dpt_layer_dims` are accepted (the original
hard-codes 256 / (96, 192, 384, 768); small DPT heads such as the parity fixture's need them).
A state dict without `dec_blocks2.*` (a CroCo pretraining file) gets a copy of `dec_blocks.*`, as
the original's load_state_dict does; otherwise the keys must match exactly.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from recon_trainer.config.errors import ConfigError
from recon_trainer.errors import DataFileError

from .dust3r_network import INF, DUSt3RArchitecture, DUSt3RNetwork

MODEL_CLASS = "AsymmetricCroCo3DStereo"
IGNORED_KEYWORDS = ("freeze", "mask_ratio")
# the original constructor's defaults (AsymmetricCroCo3DStereo and CroCoNet) for keywords a file leaves out
ORIGINAL_DEFAULTS: Dict[str, Any] = {
    "img_size": 224, "patch_size": 16, "enc_embed_dim": 768, "enc_depth": 12, "enc_num_heads": 12,
    "dec_embed_dim": 512, "dec_depth": 8, "dec_num_heads": 16, "mlp_ratio": 4, "norm_im2_in_dec": True,
    "pos_embed": "cosine", "output_mode": "pts3d", "head_type": "linear", "depth_mode": ("exp", -INF, INF),
    "conf_mode": ("exp", 1, INF), "landscape_only": True, "patch_embed_cls": "PatchEmbedDust3R",
}
SHOWN_KEYS = 3


class _NotLiteral(ValueError):
    """An argument value that is not a plain literal."""


def _literal(node: ast.AST) -> Any:
    """The value of a literal node: constants, tuples/lists of literals, inf and -x."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id == "inf":
        return INF
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(element) for element in node.elts)
    raise _NotLiteral(ast.unparse(node))


def parse_model_string(text: str, source: str) -> DUSt3RArchitecture:
    """DUSt3RArchitecture of an "AsymmetricCroCo3DStereo(key=value, ...)" string; DataFileError
    naming `source` if it is anything else."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise DataFileError(f"{source}: args.model is not a Python call ({error.msg}): {text[:120]!r}") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == MODEL_CLASS):
        raise DataFileError(f"{source}: args.model must be a call of {MODEL_CLASS}(...), got {text[:120]!r}")
    if call.args or any(keyword.arg is None for keyword in call.keywords):
        raise DataFileError(f"{source}: args.model must pass keyword arguments only, got {text[:120]!r}")
    fields = {field.name for field in dataclasses.fields(DUSt3RArchitecture)}
    settings = dict(ORIGINAL_DEFAULTS)
    for keyword in call.keywords:
        try:
            value = _literal(keyword.value)
        except _NotLiteral as error:
            raise DataFileError(f"{source}: args.model keyword {keyword.arg}={error} is not a literal value") from None
        if keyword.arg in IGNORED_KEYWORDS:
            continue
        if keyword.arg not in fields:
            raise DataFileError(f"{source}: args.model keyword {keyword.arg!r} is not an {MODEL_CLASS} "
                                f"setting recon_trainer supports")
        settings[keyword.arg] = value
    try:
        return DUSt3RArchitecture(**settings)
    except ConfigError as error:
        raise DataFileError(f"{source}: args.model {error}") from None


def read_torch_file(path: str, what: str = "DUSt3R checkpoint") -> Any:
    """The content of a torch file (weights_only, on the CPU, argparse.Namespace allowed);
    DataFileError naming `what` and the file if it is missing or unreadable."""
    expanded = os.path.expanduser(str(path))
    if not os.path.isfile(expanded):
        raise DataFileError(f"{what} {str(path)!r}: no such file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(expanded, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle means "not a readable weights file"
        detail = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataFileError(f"{what} {str(path)!r}: not a readable torch file "
                            f"({type(error).__name__}: {detail})") from None


def read_dust3r_checkpoint(path: str) -> Tuple[DUSt3RArchitecture, Dict[str, torch.Tensor]]:
    """The architecture (from args.model) and the state dict (original key layout) of a released
    DUSt3R .pth file; DataFileError with one line naming the file if it is missing or not that layout."""
    content = read_torch_file(path)
    source = f"DUSt3R checkpoint {str(path)!r}"
    if not isinstance(content, Mapping) or "model" not in content or "args" not in content:
        found = sorted(map(str, content))[:8] if isinstance(content, Mapping) else type(content).__name__
        raise DataFileError(f"{source}: expected a dict with 'model' (state dict) and 'args' (with .model), "
                            f"found {found}")
    args = content["args"]
    text = args.get("model") if isinstance(args, Mapping) else getattr(args, "model", None)
    if not isinstance(text, str):
        raise DataFileError(f"{source}: 'args' has no model string (the {MODEL_CLASS}(...) call)")
    state = content["model"]
    if not (isinstance(state, Mapping) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise DataFileError(f"{source}: 'model' is not a state dict (a dict of tensors)")
    return parse_model_string(text, source), dict(state)


def with_second_decoder(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """`state` plus dec_blocks2.* copied from dec_blocks.* when it has no dec_blocks2 (CroCo weights)."""
    completed = dict(state)
    if not any(key.startswith("dec_blocks2.") for key in state):
        completed.update({"dec_blocks2." + key[len("dec_blocks."):]: value
                          for key, value in state.items() if key.startswith("dec_blocks.")})
    return completed


def _listed(keys: List[str]) -> str:
    return ", ".join(keys[:SHOWN_KEYS]) + (f" ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else "")


def load_state_strictly(network: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `network` with strict=True; DataFileError naming `source` and the first
    missing / unexpected / wrongly shaped keys (before loading anything) if it does not fit."""
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
             for key, value in expected.items() if key in state and state[key].shape != value.shape]
    problems = [f"{what} {_listed(keys)}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise DataFileError(f"{source}: the weights do not fit the architecture: {'; '.join(problems)}")
    network.load_state_dict(state, strict=True)


def load_dust3r_state(network: DUSt3RNetwork, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load an original-layout state dict (dec_blocks2.* completed from dec_blocks.* when
    absent); DataFileError naming `source` and the first missing / unexpected / wrongly shaped keys
    if it does not fit."""
    load_state_strictly(network, with_second_decoder(state), source)


def load_dust3r(path: str, landscape_only: Optional[bool] = None,
                patch_embed_cls: Optional[str] = None) -> DUSt3RNetwork:
    """A DUSt3RNetwork with the weights of a released DUSt3R .pth file (on the CPU).

    landscape_only / patch_embed_cls override the file's settings (None keeps them). The original's
    inference loader uses patch_embed_cls="PatchEmbedDust3R", landscape_only=False; Spann3R loads
    its DUSt3R with "PatchEmbedDust3R" and landscape_only=True."""
    arch, state = read_dust3r_checkpoint(path)
    overrides = {key: value for key, value in (("landscape_only", landscape_only),
                                               ("patch_embed_cls", patch_embed_cls)) if value is not None}
    network = DUSt3RNetwork(dataclasses.replace(arch, **overrides))
    load_dust3r_state(network, state, f"DUSt3R checkpoint {str(path)!r}")
    return network
