"""Implicitron's NeuralRadianceFieldImplicitFunction weights in our layout (for the importer of
recon_trainer/models/implicitron_import.py).

Implicitron (relative to one pass's function)        ours
  xyz_encoder.mlp.<i>.0.{weight,bias}                  xyz_encoder.layers.<i>.{weight,bias}
  density_layer.{weight,bias}                          head.density_layer.{weight,bias}
  intermediate_linear.{weight,bias}                    head.intermediate_layer.{weight,bias}
  color_layer.0.weight (D_dir_hidden, F + E_dir)       head.color_feature_layer.weight = [:, :F]
                                                       head.color_direction_layer.weight = [:, F:]
  color_layer.0.bias                                   head.color_feature_layer.bias
  color_layer.2.{weight,bias}                          head.color_output_layer.{weight,bias}

F = n_hidden_neurons_xyz (the rows of intermediate_linear), E_dir the direction embedding's
size. Implicitron's first colour layer (LinearWithRepeat) reads [features, direction embedding];
ours splits it so that the direction term is computed once per ray. The harmonic embeddings hold
no saved tensors in either.
"""
from __future__ import annotations

import re
from typing import Any, Dict

from recon_trainer.models.implicitron_import import (
    ANY,
    ImplicitronImplementation,
    LeftOut,
    register_implicitron_implementation,
)

_MLP_LAYER = re.compile(r"^xyz_encoder\.mlp\.(\d+)\.0\.(weight|bias)$")
_RENAMED = {
    "density_layer.weight": "head.density_layer.weight",
    "density_layer.bias": "head.density_layer.bias",
    "intermediate_linear.weight": "head.intermediate_layer.weight",
    "intermediate_linear.bias": "head.intermediate_layer.bias",
    "color_layer.0.bias": "head.color_feature_layer.bias",
    "color_layer.2.weight": "head.color_output_layer.weight",
    "color_layer.2.bias": "head.color_output_layer.bias",
}


def map_nerf_state_dict(state: Dict[str, Any]) -> Dict[str, Any]:
    """One Implicitron NeuralRadianceFieldImplicitFunction's tensors (keys relative to it) ->
    ours; unknown keys pass through unchanged (the importer's final check names them)."""
    mapped: Dict[str, Any] = {}
    for key, value in state.items():
        layer = _MLP_LAYER.match(key)
        if layer:
            mapped[f"xyz_encoder.layers.{layer.group(1)}.{layer.group(2)}"] = value
        elif key in _RENAMED:
            mapped[_RENAMED[key]] = value
        elif key == "color_layer.0.weight" and "intermediate_linear.weight" in state:
            n_features = state["intermediate_linear.weight"].shape[0]
            mapped["head.color_feature_layer.weight"] = value[:, :n_features].clone()
            mapped["head.color_direction_layer.weight"] = value[:, n_features:].clone()
        else:
            mapped[key] = value
    return mapped


register_implicitron_implementation(
    ImplicitronImplementation(
        member="implicit_function",
        class_type="NeuralRadianceFieldImplicitFunction",
        map_state_dict=map_nerf_state_dict,
        left_out={
            "use_integrated_positional_encoding": LeftOut(False, "mip-NeRF's integrated encoding is not implemented"),
            "transformer_dim_down_factor": LeftOut(ANY, "used by NeRFormer only"),
        },
    )
)
