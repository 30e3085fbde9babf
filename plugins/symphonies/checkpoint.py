"""Loading Symphonies' released weights into our network.

A released checkpoint is a PyTorch Lightning file whose `state_dict` holds the original module names
with the `model.` prefix: `model.decoder.*` (SymphoniesDecoder) and `model.encoder.*` (MMDetWrapper:
`model.encoder.model.*` = MaskDINO, `query_embed`, `pts_embed`, `out_projs`). `original_to_ours` maps
each name to ours; names without a counterpart (MaskDINO's deformable pixel decoder and heads, the
original's constant grid buffers) are reported, never silently dropped.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from recon_trainer.errors import DataFileError

# ordered (pattern, replacement) rules for SymphoniesDecoder names (without "model.decoder.")
_DECODER_RULES: List[Tuple[str, str]] = [
    (r"^voxel_proposal\.attn\.attn\.", "voxel_proposal.block.attention."),
    (r"^voxel_proposal\.attn\.", "voxel_proposal.block."),
    (r"^layers\.(\d+)\.query_image_cross_defrom_attn\.attn\.", r"layers.\1.image_cross_attn.attention."),
    (r"^layers\.(\d+)\.query_image_cross_defrom_attn\.", r"layers.\1.image_cross_attn."),
    (r"^layers\.(\d+)\.scene_query_cross_attn\.attn\.", r"layers.\1.scene_query_attn.attention."),
    (r"^layers\.(\d+)\.scene_query_cross_attn\.", r"layers.\1.scene_query_attn."),
    (r"^layers\.(\d+)\.scene_self_deform_attn\.attn\.attns\.0\.", r"layers.\1.scene_self_attn.attention.attention."),
    (r"^layers\.(\d+)\.scene_self_deform_attn\.", r"layers.\1.scene_self_attn."),
    (r"^layers\.(\d+)\.query_scene_cross_deform_attn\.attn\.attns\.0\.",
     r"layers.\1.query_scene_attn.attention.attention."),
    (r"^layers\.(\d+)\.query_scene_cross_deform_attn\.", r"layers.\1.query_scene_attn."),
    (r"^layers\.(\d+)\.query_self_attn\.attn\.", r"layers.\1.query_self_attn.attention."),
    (r"^layers\.(\d+)\.query_self_attn\.", r"layers.\1.query_self_attn."),
    (r"^scene_embed\.", "scene_embed."),
    (r"^scene_pos\.embeds\.", "scene_pos.axis_tables."),
    (r"^scene_pos\.proj\.", "scene_pos.projection."),
    (r"^aspp\.blks\.", "aspp.branches."),
    (r"^cls_head\.0\.", "head.restore_z."),
    (r"^cls_head\.1\.up_bn\.", "head.upsample."),
    (r"^cls_head\.2\.", "head.classifier."),
]
# the original's persistent buffers that ours recompute (pixel and normalised voxel grids)
RECOMPUTED_BUFFERS = ("image_grid", "voxel_grid")

_ENCODER_RULES: List[Tuple[str, str]] = [
    (r"^query_embed\.", "query_embed."),
    (r"^pts_embed\.", "point_embed."),
    (r"^out_projs\.", "out_projs."),
]


def read_weights_file(path: str, what: str) -> Any:
    """torch.load(path, map_location="cpu", weights_only=True); DataFileError naming the file otherwise."""
    expanded = os.path.expanduser(str(path))
    if not os.path.isfile(expanded):
        raise DataFileError(f"{what} {str(path)!r}: no such file")
    try:
        return torch.load(expanded, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure: not a plain weights file
        detail = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataFileError(
            f"{what} {str(path)!r}: not readable with weights_only=True ({type(error).__name__}: {detail}); "
            f"re-save only its tensors, e.g. torch.save({{'state_dict': ckpt['state_dict']}}, path)") from error


def _apply(rules: List[Tuple[str, str]], key: str) -> Optional[str]:
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    return None


def map_decoder_key(key: str) -> Optional[str]:
    """Our SymphoniesDecoder key for an original SymphoniesDecoder key, or None (no counterpart)."""
    return _apply(_DECODER_RULES, key)


def map_encoder_key(key: str) -> Optional[str]:
    """Our SymphoniesImageEncoder key for an original MMDetWrapper key, or None (no counterpart)."""
    if key.startswith("model."):
        from .encoder import encoder_key_for  # MaskDINO names: backbone.* and the pixel decoder's input_proj

        return encoder_key_for(key[len("model."):])
    return _apply(_ENCODER_RULES, key)


def original_to_ours(key: str) -> Optional[str]:
    """Our SymphoniesNetwork key for a released checkpoint key (`model.decoder.*` / `model.encoder.*`, the
    `model.` prefix optional), or None when the original tensor has no counterpart."""
    if key.startswith("model.") and key.split(".")[1] in ("decoder", "encoder"):
        key = key[len("model."):]
    if key.startswith("decoder."):
        mapped = map_decoder_key(key[len("decoder."):])
        return None if mapped is None else "decoder." + mapped
    if key.startswith("encoder."):
        mapped = map_encoder_key(key[len("encoder."):])
        return None if mapped is None else "encoder." + mapped
    return None


def convert_state_dict(state: Mapping[str, Any], mapper: Callable[[str], Optional[str]] = original_to_ours
                       ) -> Tuple[Dict[str, torch.Tensor], Dict[str, str], Dict[str, str]]:
    """(our state dict, {original key: why it is not used}, {our key: original key}) of an original state dict."""
    converted: Dict[str, torch.Tensor] = {}
    unused: Dict[str, str] = {}
    origin: Dict[str, str] = {}
    for key, value in state.items():
        target = mapper(key)
        if target is None:
            name = key.rsplit(".", 1)[-1]
            unused[key] = "recomputed buffer" if name in RECOMPUTED_BUFFERS else "no counterpart"
        elif not isinstance(value, torch.Tensor):
            unused[key] = f"not a tensor ({type(value).__name__})"
        else:
            converted[target] = value
            origin[target] = key
    return converted, unused, origin


def load_converted(module: nn.Module, converted: Mapping[str, torch.Tensor], unused: Dict[str, str],
                   origin: Mapping[str, str], strict_keys: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Load the fitting tensors of `converted` into `module`; report the rest.

    Keys of `module` starting with one of `strict_keys` must all be loaded (present, same shape), else
    ValueError naming the first ones. Returns {"loaded", "unused", "not_loaded"}.
    """
    ours = module.state_dict()
    fitting: Dict[str, torch.Tensor] = {}
    for key, value in converted.items():
        if key not in ours:
            unused[origin[key]] = f"no such key in our network ({key})"
        elif ours[key].shape != value.shape:
            unused[origin[key]] = f"shape {tuple(value.shape)} != ours {tuple(ours[key].shape)}"
        else:
            fitting[key] = value
    not_loaded = sorted(k for k in ours if k not in fitting)
    required = [k for k in not_loaded if k.startswith(strict_keys)] if strict_keys else []
    if required:
        shown = ", ".join(required[:3]) + (f" ... ({len(required)} in all)" if len(required) > 3 else "")
        raise ValueError(f"missing or mis-shaped tensors: {shown}")
    module.load_state_dict(fitting, strict=False)
    return {"loaded": sorted(fitting), "unused": unused, "not_loaded": not_loaded}


def load_symphonies_state_dict(network: nn.Module, state: Mapping[str, Any],
                               require_decoder: bool = True) -> Dict[str, Any]:
    """Load an original Symphonies state dict (released Lightning `state_dict`) into a SymphoniesNetwork.

    With `require_decoder`, every decoder tensor must be present with our shape (the network must be built
    with the checkpoint's sizes), else ValueError. Encoder tensors load where names and shapes fit.
    Returns {"loaded": our keys, "unused": {original key: reason}, "not_loaded": our keys left as they were}.
    """
    converted, unused, origin = convert_state_dict(state)
    return load_converted(network, converted, unused, origin, ("decoder.",) if require_decoder else ())


def load_symphonies_checkpoint(network: nn.Module, path: str, require_decoder: bool = True) -> Dict[str, Any]:
    """`load_symphonies_state_dict` from a file (a Lightning checkpoint with `state_dict`, or a bare dict).

    DataFileError naming the file if it is missing, unreadable with weights_only=True, or does not fit.
    """
    content = read_weights_file(path, "Symphonies checkpoint")
    state = content.get("state_dict", content) if isinstance(content, Mapping) else None
    if not isinstance(state, Mapping):
        raise DataFileError(f"Symphonies checkpoint {path!r}: expected a dict with 'state_dict', found {type(content)}")
    try:
        return load_symphonies_state_dict(network, state, require_decoder)
    except ValueError as error:
        raise DataFileError(f"Symphonies checkpoint {path!r} does not fit the network: {error}") from error


def load_original_decoder_state_dict(decoder: nn.Module, state: Mapping[str, Any]) -> Dict[str, Any]:
    """Load an original SymphoniesDecoder state dict (names without a prefix) into our SymphoniesDecoder,
    strictly for the decoder's tensors (ValueError if one is missing or mis-shaped)."""
    converted, unused, origin = convert_state_dict(state, map_decoder_key)
    return load_converted(decoder, converted, unused, origin, ("",))
