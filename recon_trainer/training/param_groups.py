"""Assign a model's parameters to named groups, each of which gets its own learning rate.

A module may declare `param_groups: Dict[str, str]`, mapping to a group name:
- "self": every parameter of the module and of its members (the module's default group);
- the name of one of its own parameters or members (`"decoder"`, `"bias"`);
- a dotted path into its members (`"decoder.layers"`, `"decoder.layers.weight"`).
The innermost declaration wins: a member's own `param_groups` override what its parent says
about it. Parameters that no declaration reaches are in group "default". Parameters with
requires_grad=False are left out.
"""
from typing import Dict, List, Mapping, Set

import torch

DEFAULT_GROUP = "default"


def assign_param_groups(model: torch.nn.Module) -> Dict[str, List[torch.nn.Parameter]]:
    """Group name -> trainable parameters, groups in order of first appearance ("default" first).

    A parameter shared by several modules goes to the group of the first place it is reached
    from (depth first, in registration order), like `model.parameters()` lists it once.
    """
    groups: Dict[str, List[torch.nn.Parameter]] = {DEFAULT_GROUP: []}
    _visit(model, DEFAULT_GROUP, {}, groups, set())
    return {name: params for name, params in groups.items() if params}


def _visit(
    module: torch.nn.Module,
    inherited: str,
    from_parents: Mapping[str, str],
    groups: Dict[str, List[torch.nn.Parameter]],
    seen: Set[int],
) -> None:
    """`from_parents` maps names relative to `module` to groups, as its ancestors declared them;
    `seen` holds the ids of the parameters already assigned."""
    declared = {**from_parents, **getattr(module, "param_groups", {})}
    default = declared.get("self", inherited)
    for name, param in module.named_parameters(recurse=False):
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            groups.setdefault(declared.get(name, default), []).append(param)
    for child_name, child in module.named_children():
        prefix = child_name + "."
        nested = {key[len(prefix):]: group for key, group in declared.items() if key.startswith(prefix)}
        _visit(child, declared.get(child_name, default), nested, groups, seen)
