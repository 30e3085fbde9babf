"""The global-encoder slot: one latent code per frame (e.g. a per-sequence autodecoder).

No implementation is registered yet; GenericModel's `global_encoder_class_type` defaults to None.
"""

from __future__ import annotations

import abc
from typing import Any, Optional

import torch

from recon_trainer.config import ReplaceableBase


class GlobalEncoderBase(ReplaceableBase, torch.nn.Module):
    """Maps a batch of frames to codes (B, get_encoding_dim()) passed to the implicit function."""

    @abc.abstractmethod
    def get_encoding_dim(self) -> int:
        """Channels of the code."""

    def calculate_squared_encoding_norm(self) -> Optional[torch.Tensor]:
        """A scalar regulariser of the codes (logged as loss_autodecoder_norm), or None."""
        return None

    @abc.abstractmethod
    def forward(self, batch: Any) -> torch.Tensor:
        """batch: a FrameData of B frames -> (B, get_encoding_dim()) codes."""
