"""Autodecoder: one learned code per instance name (e.g. per sequence), optimised with the model."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch

from recon_trainer.config import ConfigError, Configurable


class Autodecoder(Configurable, torch.nn.Module):
    """A table of n_instances codes of encoding_dim channels, looked up by name.

    In training mode (`module.training`) a name seen for the first time takes the next free row;
    more than n_instances names is an error. In evaluation mode an unknown name gets the zero
    code (the mean the norm penalty pulls codes towards). The name -> row map is saved in the
    state dict (extra state: a list of names in row order).
    """

    encoding_dim: int = 0  # channels of a code (0: no codes, the encoder is disabled)
    n_instances: int = 1  # rows of the code table (distinct names the training data may hold)
    init_scale: float = 1.0  # codes are initialised from N(0, init_scale^2)
    ignore_input: bool = False  # one shared code (row 0) for every name

    def __post_init__(self) -> None:
        if self.encoding_dim < 0 or self.n_instances < 1:
            raise ConfigError(
                f"Autodecoder: encoding_dim={self.encoding_dim} must be >= 0 and n_instances={self.n_instances} >= 1"
            )
        self._key_map: Dict[str, int] = {}
        if self.encoding_dim > 0:
            self._codes = torch.nn.Embedding(self.n_instances, self.encoding_dim)
            with torch.no_grad():
                self._codes.weight.normal_(0.0, self.init_scale)

    def get_encoding_dim(self) -> int:
        return self.encoding_dim

    def calculate_squared_encoding_norm(self) -> Optional[torch.Tensor]:
        """Mean squared entry of the whole code table (scalar), None without codes."""
        if self.encoding_dim == 0:
            return None
        return (self._codes.weight**2).mean()

    def forward(self, names: Sequence[str]) -> Optional[torch.Tensor]:
        """(B, encoding_dim) codes of B names, None without codes."""
        if self.encoding_dim == 0:
            return None
        weight = self._codes.weight
        if self.ignore_input:
            return weight[:1].expand(len(names), -1)
        rows = [self._row(name) for name in names]
        known = torch.tensor([r is not None for r in rows], device=weight.device)
        index = torch.tensor([0 if r is None else r for r in rows], device=weight.device)
        return torch.where(known[:, None], self._codes(index), torch.zeros_like(weight[:1]))

    def _row(self, name: str) -> Optional[int]:
        """The row of `name`, assigned now if it is new and the module is training; None if unknown."""
        if name in self._key_map or not self.training:
            return self._key_map.get(name)
        if len(self._key_map) >= self.n_instances:
            raise ValueError(
                f"Autodecoder: name {name!r} would be instance {len(self._key_map) + 1}, but n_instances="
                f"{self.n_instances}; raise n_instances to the number of sequences in the training data"
            )
        self._key_map[name] = len(self._key_map)
        return self._key_map[name]

    def get_extra_state(self) -> Dict[str, List[str]]:
        """The name -> row map as the names in row order (plain types: loads with weights_only=True)."""
        return {"names": sorted(self._key_map, key=self._key_map.__getitem__)}

    def set_extra_state(self, state: Any) -> None:
        names = list(state["names"])
        if len(names) > self.n_instances:
            raise ValueError(f"Autodecoder: the saved state has {len(names)} names, n_instances is {self.n_instances}")
        self._key_map = {str(name): row for row, name in enumerate(names)}
