"""Training mode that leaves frozen parts alone.

`model.train()` switches every submodule to training mode, frozen ones included: a frozen
backbone's BatchNorm layers would update their running statistics and its dropout would drop.
`set_train_mode` puts each submodule whose parameters are all frozen (requires_grad=False; a
module without parameters does not count) back into eval mode, and its children with it.
"""
from typing import List

import torch


def frozen_modules(model: torch.nn.Module) -> List[torch.nn.Module]:
    """The outermost submodules (`model` itself included) that have parameters, none of which
    requires a gradient."""
    found: List[torch.nn.Module] = []

    def visit(module: torch.nn.Module) -> None:
        params = list(module.parameters())
        if params and not any(param.requires_grad for param in params):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


def set_train_mode(model: torch.nn.Module) -> None:
    """`model.train()`, then eval mode for its frozen submodules (see the module doc)."""
    model.train()
    for module in frozen_modules(model):
        module.eval()
