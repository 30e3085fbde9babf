"""MiDaS's released checkpoints (isl-org/MiDaS) in MidasModel: key mapping and loading.

Two layouts, each a plain state dict (or a dict with "model" and "optimizer", whose "model" is one):

- MidasNet, v2.1 large (midas_v21-f6b98070.pt, midas_v21_384.pt): a ResNeXt-101 32x8d under
  "pretrained.layer1..4" (layer1 = conv1, bn1, relu, maxpool, layer1 of the torchvision network)
  -> MidasModel with ResNetEncoder(arch=resnext101_32x8d), decoder variant midas_v21, features 256.
- DPT (dpt_large-midas-2f21e586.pt, dpt_large_384.pt): timm's ViT-L/16 384 under
  "pretrained.model", the readout and reassembly under "pretrained.act_postprocess1..4"
  -> MidasModel with ViTEncoder(vit_large_patch16_384, hooks 5, 11, 17, 23, readout project,
  reassemble_channels 256, 512, 1024, 1024), decoder variant dpt, features 256.

Both share the decoder keys "scratch.layer<k>_rn", "scratch.refinenet<k>.resConfUnit<1|2>",
"scratch.refinenet<k>.out_conv" (DPT) and "scratch.output_conv.<0|2|4>". Every key of the model
must come from the file, with its shape. The only keys of a file left unused are the ViT's parts
that DPT never runs and ViTEncoder drops: the final norm, the classifier (and blocks after the
last hook, none in DPT-Large); that is also the whole difference in parameter counts.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

from recon_trainer.config import ConfigError

MIDASNET = "MidasNet (ResNeXt encoder, v2.1)"
DPT = "DPT (ViT encoder)"
LISTED = 3  # keys named per kind of mismatch in an error

# (pattern on a released key, our key from the match); tried in order, first match wins
_Rule = Tuple["re.Pattern[str]", Callable[["re.Match[str]"], str]]


def _level(match: "re.Match[str]", group: int = 1) -> int:
    return int(match.group(group)) - 1


_DECODER_RULES: List[_Rule] = [
    (re.compile(r"scratch\.layer([1-4])_rn\.(.+)"), lambda m: f"decoder.scratch.{_level(m)}.{m.group(2)}"),
    (re.compile(r"scratch\.refinenet([1-4])\.resConfUnit([12])\.(.+)"),
     lambda m: f"decoder.fusion.{_level(m)}.rcu{m.group(2)}.{m.group(3)}"),
    (re.compile(r"scratch\.refinenet([1-4])\.out_conv\.(.+)"),
     lambda m: f"decoder.fusion.{_level(m)}.out_conv.{m.group(2)}"),
    (re.compile(r"scratch\.output_conv\.0\.(.+)"), lambda m: f"decoder.head_conv.{m.group(1)}"),
    (re.compile(r"scratch\.output_conv\.2\.(.+)"), lambda m: f"decoder.head.0.{m.group(1)}"),
    (re.compile(r"scratch\.output_conv\.4\.(.+)"), lambda m: f"decoder.head.2.{m.group(1)}"),
]
_MIDASNET_RULES: List[_Rule] = [
    # the original's layer1 is Sequential(conv1, bn1, relu, maxpool, layer1); ours stages[0] = (stem, layer1)
    (re.compile(r"pretrained\.layer1\.([01])\.(.+)"), lambda m: f"encoder.stages.0.0.{m.group(1)}.{m.group(2)}"),
    (re.compile(r"pretrained\.layer1\.4\.(.+)"), lambda m: f"encoder.stages.0.1.{m.group(1)}"),
    (re.compile(r"pretrained\.layer([2-4])\.(.+)"), lambda m: f"encoder.stages.{_level(m)}.{m.group(2)}"),
]
_DPT_RULES: List[_Rule] = [
    (re.compile(r"pretrained\.model\.(.+)"), lambda m: f"encoder.vit.{m.group(1)}"),
    # act_postprocess<k> = (readout, transpose, unflatten, 1x1 conv, resampling)
    (re.compile(r"pretrained\.act_postprocess([1-4])\.0\.(.+)"),
     lambda m: f"encoder.readouts.{_level(m)}.{m.group(2)}"),
    (re.compile(r"pretrained\.act_postprocess([1-4])\.([34])\.(.+)"),
     lambda m: f"encoder.reassemble.{_level(m)}.{int(m.group(2)) - 3}.{m.group(3)}"),
]
# ViT parts DPT never runs (its hooks read the blocks' outputs) and ViTEncoder prunes
_UNUSED_VIT = re.compile(r"encoder\.vit\.(norm|fc_norm|head|head_drop)\.")
_VIT_BLOCK = re.compile(r"encoder\.vit\.blocks\.(\d+)\.")


def released_layout(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """MIDASNET or DPT by the keys of a released state dict, or None when it is neither."""
    if "pretrained.model.pos_embed" in state or "pretrained.model.patch_embed.proj.weight" in state:
        return DPT
    if "pretrained.layer1.0.weight" in state and "pretrained.layer4.0.conv1.weight" in state:
        return MIDASNET
    return None


def released_key(key: str, layout: str) -> Optional[str]:
    """Our MidasModel key for one key of a released state dict of `layout`, or None if no rule fits."""
    for pattern, target in _DECODER_RULES + (_DPT_RULES if layout == DPT else _MIDASNET_RULES):
        match = pattern.fullmatch(key)
        if match:
            return target(match)
    return None


def _unused_in_model(ours: str, model: torch.nn.Module) -> bool:
    """Whether a mapped key names a ViT part that the model's ViTEncoder pruned (module doc)."""
    if _UNUSED_VIT.match(ours):
        return True
    block = _VIT_BLOCK.match(ours)
    built_depth = getattr(model.encoder, "built_depth", None)
    return bool(block) and built_depth is not None and int(block.group(1)) < built_depth


def _listed(keys: List[str]) -> str:
    more = f", ... ({len(keys) - LISTED} more)" if len(keys) > LISTED else ""
    return ", ".join(keys[:LISTED]) + more


def released_to_ours(state: Mapping[str, torch.Tensor], model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A released state dict (module doc) -> MidasModel's state dict, every key of `model` filled.

    Raises ValueError naming the layout, the missing keys (ours), the keys that fit nothing (theirs)
    and the tensors of another shape, a few of each, when the file does not fit `model`.
    """
    layout = released_layout(state)
    if layout is None:
        raise ValueError(f"neither a MidasNet nor a DPT state dict (keys such as {_listed(sorted(state))})")
    expected = model.state_dict()
    mapped: Dict[str, torch.Tensor] = {}
    matched, unexpected, reshaped = set(), [], []
    for key, value in state.items():
        ours = released_key(key, layout)
        if ours is None or ours not in expected:
            if ours is None or not _unused_in_model(ours, model):
                unexpected.append(key)
            continue
        matched.add(ours)
        if tuple(value.shape) != tuple(expected[ours].shape):
            reshaped.append(f"{key}: {tuple(value.shape)} saved, {tuple(expected[ours].shape)} configured")
        else:
            mapped[ours] = value
    missing = [key for key in expected if key not in matched]
    parts = [
        f"{len(keys)} {what}: {_listed(keys)}"
        for what, keys in (("missing", missing), ("unused", unexpected), ("of another shape", reshaped))
        if keys
    ]
    if parts:
        raise ValueError(f"a {layout} state dict that does not fit the configured model ({'; '.join(parts)})")
    return mapped


def read_released_state(path: str) -> Dict[str, torch.Tensor]:
    """The state dict in a released checkpoint file (module doc), read with weights_only=True.

    Raises FileNotFoundError for a missing file and ValueError for one that torch.load cannot read
    or that holds no state dict.
    """
    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        raise FileNotFoundError("no such file")
    try:
        loaded = torch.load(expanded, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip or weights_only errors: one line for the user
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"not readable by torch.load(weights_only=True) ({type(error).__name__}: {detail[:200]})")
    if isinstance(loaded, Mapping) and "optimizer" in loaded and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]  # a training checkpoint, as the original's BaseModel.load reads it
    if not isinstance(loaded, Mapping) or not loaded or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise ValueError(f"holds a {type(loaded).__name__}, not a state dict (names -> tensors)")
    return dict(loaded)


def load_released_checkpoint(model: torch.nn.Module, path: str, field: str = "MidasModel.pretrained_path") -> str:
    """Load the released checkpoint at `path` into the MidasModel `model`; returns its layout.

    Any problem (missing or unreadable file, another layout, a model configured otherwise) raises
    ConfigError in one line that names `field`, the file and what was expected.
    """
    try:
        state = read_released_state(path)
        layout = released_layout(state)
        encoder_layout = {"ResNetEncoder": MIDASNET, "ViTEncoder": DPT}.get(type(model.encoder).__name__)
        if layout is not None and encoder_layout is not None and layout != encoder_layout:
            hint = "encoder_class_type=ViTEncoder" if layout == DPT else "encoder_class_type=ResNetEncoder"
            raise ValueError(f"a {layout} state dict, but the model has a {type(model.encoder).__name__}; set {hint}")
        variant = getattr(model.decoder, "variant", None)
        wanted = "dpt" if layout == DPT else "midas_v21"
        if layout is not None and variant is not None and variant != wanted:
            raise ValueError(f"a {layout} state dict, but decoder_variant={variant}; set {wanted} (or auto)")
        model.load_state_dict(released_to_ours(state, model))
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"{field}={path!r}: {error}; expected a released MiDaS v2.1 or DPT checkpoint "
                          f"(e.g. midas_v21_384.pt, dpt_large_384.pt)") from None
    return layout
