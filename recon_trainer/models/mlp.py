"""MLPWithInputSkips: a ReLU MLP that re-reads its input at chosen layers (NeRF's skip connections).

Also the switch between fused fast paths (e.g. NeRF's fused field, plugins/nerf/fused_field.py)
and the plain modules they must agree with: `fast_paths_enabled`, `reference_paths`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import torch

_fast_paths = threading.local()


def fast_paths_enabled(device: torch.device) -> bool:
    """Whether fused fast paths may run on `device`: CPU only (the GPU keeps the plain modules),
    and not inside `reference_paths()`."""
    return device.type == "cpu" and getattr(_fast_paths, "enabled", True)


@contextlib.contextmanager
def reference_paths() -> Iterator[None]:
    """Within this context (in this thread) every fused fast path takes its plain reference path;
    used by the parity tests and by tools/bench_nvs.py to count the FLOPs of the plain layers."""
    previous = getattr(_fast_paths, "enabled", True)
    _fast_paths.enabled = False
    try:
        yield
    finally:
        _fast_paths.enabled = previous


class MLPWithInputSkips(torch.nn.Module):
    """n_layers linear layers, each followed by a ReLU; layer i in `input_skips` also reads `skip`.

    input_dim: channels of x, the first layer's input.
    skip_dim: channels of the skip input concatenated to the input of each layer in `input_skips`.
    hidden_dim: channels between layers; output_dim: channels of the last layer.
    Weights are Xavier-uniform initialised, biases zero.
    """

    def __init__(
        self,
        n_layers: int,
        input_dim: int,
        output_dim: int,
        skip_dim: int,
        hidden_dim: int,
        input_skips: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"MLPWithInputSkips: n_layers must be >= 1, got {n_layers}")
        self.input_skips = frozenset(int(i) for i in input_skips)
        outside = sorted(i for i in self.input_skips if not 0 <= i < n_layers)
        if outside:
            raise ValueError(f"MLPWithInputSkips: input_skips {outside} are not layer indices 0..{n_layers - 1}")
        layers = []
        for i in range(n_layers):
            dim_in = (input_dim if i == 0 else hidden_dim) + (skip_dim if i in self.input_skips else 0)
            dim_out = output_dim if i == n_layers - 1 else hidden_dim
            layer = torch.nn.Linear(dim_in, dim_out)
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
            layers.append(layer)
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (..., input_dim), skip (..., skip_dim) -> (..., output_dim)."""
        y = x
        for i, layer in enumerate(self.layers):
            if i in self.input_skips:
                y = torch.cat([y, skip], dim=-1)
            y = layer(y).relu_()  # in place: the linear layer's backward does not read its output
        return y
