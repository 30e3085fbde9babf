"""Reading released Spann3R weights (spann3r.pth): {'model': state dict, ...} as the original's eval.py
and demo.py use them (the 'model' entry loaded into a Spann3R built on the DUSt3R ViT-L/B DPT; read here with
weights_only=True).

The file does not name its DUSt3R architecture (the original's constructor reads it from a separate
DUSt3R file), so it is inferred from the weights' shapes: widths, depths, MLP ratio, patch size,
head type and DPT widths, the value encoder's depth and whether values come from the point map
(pos_patch_embed present) or the decoder features (use_feat). What shapes cannot tell takes the
released models' values, each replaceable through the overrides: 64-wide attention heads (ViT-L
1024 / 16, ViT-B 768 / 12; value encoder 16 heads as the original hard-codes), img_size 224 (the
resolution Spann3R is trained and evaluated at), depth_mode / conf_mode exp. When the file has
`args.model` (a training checkpoint: "Spann3R(dus3r_name=..., use_feat=..., mem_pos_enc=...)"), it is
parsed with `ast` (never evaluated) for use_feat, mem_pos_enc and memory_dropout.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from recon_trainer.config.errors import ConfigError
from recon_trainer.errors import DataFileError

from .dust3r_checkpoint import load_state_strictly, read_torch_file
from .dust3r_network import DUSt3RArchitecture
from .spann3r_network import MemoryArchitecture, Spann3RNetwork

WHAT = "Spann3R checkpoint"
MODEL_CLASS = "Spann3R"
PREFIX = "dust3r."
HEAD_WIDTH = 64  # channels per attention head of the released encoders and decoders
RELEASED_IMG_SIZE = 224
ARGS_KEYWORDS = ("use_feat", "mem_pos_enc", "memory_dropout")  # dus3r_name (a path) is ignored


def parse_args_model(text: str, source: str) -> Dict[str, Any]:
    """The use_feat / mem_pos_enc / memory_dropout keywords of a "Spann3R(...)" string (DataFileError
    naming `source` for anything but that call with literal keyword values)."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise DataFileError(f"{source}: args.model is not a Python call ({error.msg}): {text[:120]!r}") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == MODEL_CLASS
            and not call.args and all(keyword.arg for keyword in call.keywords)):
        raise DataFileError(f"{source}: args.model must be a call {MODEL_CLASS}(keyword=value, ...), "
                            f"got {text[:120]!r}")
    settings = {}
    for keyword in call.keywords:
        try:
            value = ast.literal_eval(keyword.value)
        except ValueError:
            raise DataFileError(f"{source}: args.model keyword {keyword.arg}={ast.unparse(keyword.value)} "
                                "is not a literal value") from None
        if keyword.arg in ARGS_KEYWORDS:
            settings[keyword.arg] = value
    return settings


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many numbered sub-modules `<prefix>.<i>.` the state dict has."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return len({match.group(1) for key in state for match in [pattern.match(key)] if match})


def _shape(state: Mapping[str, torch.Tensor], key: str, source: str) -> Tuple[int, ...]:
    if key not in state:
        raise DataFileError(f"{source}: not Spann3R weights (no {key!r})")
    return tuple(state[key].shape)


def infer_dust3r_fields(state: Mapping[str, torch.Tensor], source: str) -> Dict[str, Any]:
    """DUSt3RArchitecture fields of the DUSt3R part from the `dust3r.*` weights (module doc for what is assumed)."""
    enc, _, patch, _ = _shape(state, PREFIX + "patch_embed.proj.weight", source)
    dec = _shape(state, PREFIX + "decoder_embed.weight", source)[0]
    hidden = _shape(state, PREFIX + "enc_blocks.0.mlp.fc1.weight", source)[0]
    fields: Dict[str, Any] = {
        "img_size": RELEASED_IMG_SIZE, "patch_size": patch, "mlp_ratio": hidden / enc,
        "enc_embed_dim": enc, "enc_depth": _count(state, PREFIX + "enc_blocks"),
        "enc_num_heads": max(1, enc // HEAD_WIDTH),
        "dec_embed_dim": dec, "dec_depth": _count(state, PREFIX + "dec_blocks"),
        "dec_num_heads": max(1, dec // HEAD_WIDTH),
        "norm_im2_in_dec": PREFIX + "dec_blocks.0.norm_y.weight" in state,
    }
    dpt = PREFIX + "downstream_head1.dpt.scratch.layer{}_rn.weight"
    if dpt.format(1) in state:
        fields.update(head_type="dpt", dpt_feature_dim=state[dpt.format(1)].shape[0],
                      dpt_layer_dims=tuple(_shape(state, dpt.format(i), source)[1] for i in range(1, 5)))
    else:
        _shape(state, PREFIX + "downstream_head1.proj.weight", source)
        fields["head_type"] = "linear"
    return fields


def infer_memory_fields(state: Mapping[str, torch.Tensor], settings: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """MemoryArchitecture fields from the value-encoder weights and the args.model `settings`."""
    use_feat = "pos_patch_embed.proj.weight" not in state
    if settings.get("use_feat", use_feat) != use_feat:
        raise DataFileError(f"{source}: args.model says use_feat={settings['use_feat']} but the weights "
                            f"{'lack' if use_feat else 'have'} pos_patch_embed")
    width = _shape(state, "value_norm.weight", source)[0]
    hidden = _shape(state, "value_encoder.0.mlp.fc1.weight", source)[0]
    return dict(settings, use_feat=use_feat, value_depth=_count(state, "value_encoder"), value_mlp_ratio=hidden / width)


def _architecture(cls: type, inferred: Dict[str, Any], overrides: Optional[Mapping[str, Any]], key: str,
                  source: str) -> Any:
    """cls(**inferred updated by overrides): ConfigError naming `key` for unknown override fields or
    when the result is invalid with overrides, DataFileError naming the file when it is without."""
    overrides = dict(overrides or {})
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"{key}: unknown field(s) {unknown}; {cls.__name__} has {sorted(known)}")
    values = {**inferred, **{name: tuple(v) if isinstance(v, list) else v for name, v in overrides.items()}}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        if overrides:
            raise ConfigError(f"{key}={overrides} on the architecture of {source}: {error}") from None
        raise DataFileError(f"{source}: its weights give an unusable {cls.__name__}: {error} "
                            f"(set the field in {key})") from None


def read_spann3r_checkpoint(path: str, memory_overrides: Optional[Mapping[str, Any]] = None,
                            dust3r_overrides: Optional[Mapping[str, Any]] = None, key: str = "Spann3RModel",
                            ) -> Tuple[DUSt3RArchitecture, MemoryArchitecture, Dict[str, torch.Tensor]]:
    """The architectures (inferred, then the overrides' fields) and the state dict (original key
    layout) of a Spann3R file. DataFileError with one line naming the file if it is missing or not
    that layout; ConfigError naming `key`.network / `key`.memory for bad overrides."""
    source = f"{WHAT} {str(path)!r}"
    content = read_torch_file(path, WHAT)
    if not (isinstance(content, Mapping) and isinstance(content.get("model"), Mapping)):
        found = sorted(map(str, content))[:8] if isinstance(content, Mapping) else type(content).__name__
        raise DataFileError(f"{source}: expected a dict with a 'model' state dict (the original's spann3r.pth), "
                            f"found {found}")
    state = dict(content["model"])
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise DataFileError(f"{source}: 'model' is not a state dict (a dict of tensors)")
    args = content.get("args")
    text = args.get("model") if isinstance(args, Mapping) else getattr(args, "model", None)
    settings = parse_args_model(text, source) if isinstance(text, str) else {}
    dust3r = _architecture(DUSt3RArchitecture, infer_dust3r_fields(state, source), dust3r_overrides,
                           f"{key}.network", source)
    memory = _architecture(MemoryArchitecture, infer_memory_fields(state, settings, source), memory_overrides,
                           f"{key}.memory", source)
    return dust3r, memory, state


def load_spann3r_checkpoint(path: str, memory_overrides: Optional[Mapping[str, Any]] = None,
                            dust3r_overrides: Optional[Mapping[str, Any]] = None,
                            key: str = "Spann3RModel") -> Spann3RNetwork:
    """A Spann3RNetwork (on the CPU) with the weights of a Spann3R file, loaded strictly.

    memory_overrides / dust3r_overrides: MemoryArchitecture / DUSt3RArchitecture fields replacing the
    inferred ones (e.g. long_mem_size, or enc_num_heads for a non-released width); ConfigError naming
    `key`.memory / `key`.network for unknown or bad fields; DataFileError naming the file when the
    weights do not fit."""
    dust3r, memory, state = read_spann3r_checkpoint(path, memory_overrides, dust3r_overrides, key)
    network = Spann3RNetwork(dust3r, memory)
    load_state_strictly(network, state, f"{WHAT} {str(path)!r}")
    return network
