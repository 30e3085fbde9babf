"""MoGe's loss configuration: per dataset `label_type`, the named terms with their function, weight
and parameters, exactly the `loss` block of MoGe's training JSON:

    {"synthetic": {"global": {"function": "affine_invariant_global_loss", "weight": 1.0,
                              "params": {"align_resolution": 32}}, ...},
     "sfm": {...}, "lidar": {...}, "invalid": {}}

`check_loss_config` validates it once (function names, weights, parameter names against the
function's signature) so a typo fails at start-up with the key named; `default_losses(version)`
is the released v1 or v2 configuration.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Dict, Mapping

from recon_trainer.config import ConfigError
from recon_trainer.config.errors import did_you_mean

LossConfig = Dict[str, Dict[str, Dict[str, Any]]]
TERM_KEYS = ("function", "weight", "params")
INVALID_LABEL = "invalid"  # samples that failed to load: no loss (MoGe's "invalid": {})
# Arguments the model passes itself (the predictions and targets); the rest come from "params".
PASSED_BY_MODEL = {
    "pred_points", "gt_points", "focal", "global_scale", "points", "pred_mask", "gt_mask_pos", "gt_mask_neg",
    "pred_mask_prob", "scale_pred", "scale_gt", "pred_normal", "gt_normal",
}


def _term(function: str, weight: float = 1.0, **params: Any) -> Dict[str, Any]:
    return {"function": function, "weight": weight, "params": dict(params)}


def _patches(levels: Mapping[int, int], align: Mapping[int, int]) -> Dict[str, Dict[str, Any]]:
    patches = {4: 16, 16: 256, 64: 4096}
    return {
        f"patch_{level}": _term("affine_invariant_local_loss", level=level, align_resolution=align[level],
                                num_patches=patches[level])
        for level in levels
    }


def default_losses(version: str) -> LossConfig:
    """The released configs' `loss` block: v1 (configs/train/v1.json) or v2 (configs/train/v2.json)."""
    if version == "v1":
        align = {4: 16, 16: 8, 64: 4}
        glob = {"global": _term("affine_invariant_global_loss", align_resolution=32)}
        mask = {"mask": _term("mask_l2_loss")}
        return {
            INVALID_LABEL: {},
            "synthetic": {**glob, **_patches((4, 16, 64), align), "normal": _term("normal_loss"), **mask},
            "sfm": {**glob, **_patches((4, 16), align), **mask},
            "lidar": {**glob, **_patches((4,), align), **mask},
        }
    align = {4: 24, 16: 12, 64: 6}
    glob = {"global": _term("affine_invariant_global_loss", align_resolution=48)}
    scale = {"metric_scale": _term("metric_scale_loss", 0.1)}
    normal = {"normal": _term("edge_loss"), "normal_map": _term("normal_map_loss", 0.1)}
    mask = {"mask": _term("mask_bce_loss", 0.1)}
    return {
        INVALID_LABEL: {},
        "A": {**glob, **_patches((4, 16, 64), align), **normal, **scale, **mask},
        "B": {**glob, **_patches((4, 16), align), **scale, **normal, **mask},
        "C": {**glob, **_patches((4,), align), **scale, **mask},
    }


def check_loss_config(losses: Mapping[str, Any], functions: Mapping[str, Callable], key: str) -> LossConfig:
    """`losses` checked against the loss `functions` (name -> callable) and returned as plain
    dicts with every term's "weight" and "params" filled in; ConfigError naming `key.<label>.<term>...`."""
    checked: LossConfig = {}
    for label, terms in losses.items():
        if not isinstance(terms, Mapping):
            raise ConfigError(f"{key}.{label}: expected a mapping of loss terms, got {terms!r}")
        checked[label] = {}
        for name, term in terms.items():
            where = f"{key}.{label}.{name}"
            if not isinstance(term, Mapping):
                raise ConfigError(f"{where}: expected {{function, weight, params}}, got {term!r}")
            unknown = [k for k in term if k not in TERM_KEYS]
            if unknown:
                raise ConfigError(f"{where}.{unknown[0]}: unknown key{did_you_mean(unknown[0], TERM_KEYS) or ';'} "
                                  f"a term has {', '.join(TERM_KEYS)}")
            function = term.get("function")
            if function not in functions:
                raise ConfigError(f"{where}.function={function!r}: unknown loss function"
                                  f"{did_you_mean(str(function), list(functions)) or ';'} "
                                  f"known: {', '.join(functions)}")
            weight = term.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ConfigError(f"{where}.weight={weight!r}: expected a number >= 0")
            params = dict(term.get("params") or {})
            accepted = [p for p in inspect.signature(functions[function]).parameters if p not in PASSED_BY_MODEL]
            for param in params:
                if param not in accepted:
                    hint = did_you_mean(param, accepted) or ";"
                    raise ConfigError(f"{where}.params.{param}: {function} has no such parameter{hint} "
                                      f"it takes {', '.join(accepted) or 'none'}")
            checked[label][name] = {"function": function, "weight": float(weight), "params": copy.deepcopy(params)}
    return checked
