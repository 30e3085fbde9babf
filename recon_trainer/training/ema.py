"""An exponential moving average (EMA) of a model's weights, as MoGe keeps one (decay 0.999).

Like `torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn(decay)`: the first update
copies the parameters, every later one sets average <- average + (1 - decay) * (parameter -
average) (`lerp`). Buffers (BatchNorm statistics) are not averaged: evaluating with the average
uses the model's current buffers. The trainer updates it after every optimizer step on every
process (their parameters are equal), saves it in each TrainingCheckpoint and, when asked,
evaluates with it (`applied_to`).

Only the averages are kept (one copy of the floating-point parameters, on their device); while
`applied_to` runs the model's own parameters wait in a second copy.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List

import torch


class WeightEMA:
    """The EMA of `model`'s floating-point parameters (by name), starting from their values now."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WeightEMA: decay={decay}: expected 0 < decay < 1")
        self.decay = float(decay)
        self.n_averaged = 0  # updates so far; the first one copies
        self.averages: Dict[str, torch.Tensor] = {
            name: param.detach().clone() for name, param in _float_parameters(model)
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Average in the parameters of `model` (after an optimizer step)."""
        params = dict(_float_parameters(model))
        names = [name for name in self.averages if name in params]
        averages = [self.averages[name] for name in names]
        current = [params[name].detach() for name in names]
        if self.n_averaged == 0:
            torch._foreach_copy_(averages, current)
        else:
            torch._foreach_lerp_(averages, current, 1.0 - self.decay)
        self.n_averaged += 1

    @contextlib.contextmanager
    def applied_to(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Within the block `model`'s parameters hold the averages; afterwards (also after an
        exception) their own values again."""
        params = dict(_float_parameters(model))
        names = [name for name in self.averages if name in params]
        own: List[torch.Tensor] = [params[name].detach().clone() for name in names]
        with torch.no_grad():
            for name in names:
                params[name].copy_(self.averages[name])
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in zip(names, own):
                    params[name].copy_(value)

    def state_dict(self) -> Dict[str, Any]:
        """Plain values and tensors (read back with `torch.load(weights_only=True)`)."""
        return {"decay": self.decay, "n_averaged": self.n_averaged, "averages": dict(self.averages)}

    def load_state_dict(self, state: Dict[str, Any]) -> List[str]:
        """Take the averages and count of `state` (the configured decay is kept); the names of the
        parameters that were not in it (they keep the model's values)."""
        saved = state["averages"]
        missing = [name for name in self.averages if name not in saved]
        for name, average in self.averages.items():
            if name in saved:
                average.copy_(saved[name].to(average.device, average.dtype))
        self.n_averaged = int(state["n_averaged"])
        return missing


@torch.no_grad()
def load_averaged_weights(model: torch.nn.Module, state: Dict[str, Any]) -> None:
    """Put the averages of a saved `WeightEMA.state_dict()` into `model`'s parameters for good
    (e.g. to film or predict with the weights evaluations used); parameters it lacks keep theirs."""
    params = dict(_float_parameters(model))
    for name, average in state["averages"].items():
        if name in params:
            params[name].copy_(average.to(params[name].device, params[name].dtype))


def _float_parameters(model: torch.nn.Module) -> Iterator[tuple]:
    """(name, parameter) of each floating-point parameter, each once."""
    for name, param in model.named_parameters():
        if param.is_floating_point():
            yield name, param
