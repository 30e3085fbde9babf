"""2-D rotary position embedding (CroCo's "RoPE<freq>", e.g. RoPE100) in plain torch, and the patch grid positions.

Each attention head's channels (Dh, a multiple of 4) are split into a row half and a column half. In
each half of size D = Dh / 2, channel i < D / 2 is paired with channel i + D / 2 and the pair is
rotated by the angle `position * f0 / freq ** (2 i / D)`, where position is the token's patch row
(first half) or column (second half). Rotations are computed in float32 and cast back to the tokens'
dtype, as the compiled cuRoPE kernel of the original does.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn


class PositionGetter:
    """Patch positions of a rows x cols grid in row-major order, cached per grid size."""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}

    def __call__(self, batch: int, rows: int, cols: int, device: torch.device) -> torch.Tensor:
        """(batch, rows * cols, 2) int64 (row, column) of every patch; token t is at (t // cols, t % cols)."""
        key = (rows, cols, torch.device(device))
        if key not in self._cache:
            grid = torch.cartesian_prod(torch.arange(rows, device=device), torch.arange(cols, device=device))
            self._cache[key] = grid.reshape(rows * cols, 2)
        return self._cache[key][None].expand(batch, -1, -1).clone()


class RoPE2D(nn.Module):
    """Rotary embedding of 2-D token positions (no parameters, no buffers: adds no state-dict keys)."""

    def __init__(self, freq: float = 100.0, f0: float = 1.0) -> None:
        super().__init__()
        self.freq = float(freq)
        self.f0 = float(f0)

    def _rotate(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate (B, heads, N, D) float32 tokens by the 1-D positions (B, N)."""
        half = tokens.shape[-1] // 2
        exponents = torch.arange(0, tokens.shape[-1], 2, device=tokens.device, dtype=torch.float32)
        inv_freq = self.f0 / self.freq ** (exponents / tokens.shape[-1])  # (D / 2,)
        angles = positions.to(torch.float32)[:, None, :, None] * inv_freq  # (B, 1, N, D / 2)
        cos, sin = angles.cos(), angles.sin()
        first, second = tokens[..., :half], tokens[..., half:]
        return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens (B, heads, N, Dh) with Dh % 4 == 0; positions (B, N, 2) integer (row, column).
        Returns the rotated tokens, same shape and dtype."""
        if tokens.shape[-1] % 4 != 0:
            raise ValueError(f"RoPE2D needs a head dimension divisible by 4, got {tokens.shape[-1]}")
        if positions.ndim != 3 or positions.shape[-1] != 2 or positions.shape[:2] != (tokens.shape[0], tokens.shape[2]):
            raise ValueError(f"RoPE2D positions must be (B, N, 2) = ({tokens.shape[0]}, {tokens.shape[2]}, 2), "
                             f"got {tuple(positions.shape)}")
        rows, cols = tokens.float().chunk(2, dim=-1)
        rotated = torch.cat((self._rotate(rows, positions[..., 0]), self._rotate(cols, positions[..., 1])), dim=-1)
        return rotated.to(tokens.dtype)
