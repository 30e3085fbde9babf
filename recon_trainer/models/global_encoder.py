"""The global-encoder slot: one latent code per frame, and its implementations.

SequenceAutodecoder: a learned code per sequence name (regularised by loss_autodecoder_norm).
HarmonicTimeEncoder: a harmonic embedding of the frame timestamp.
GlobalEncoderBase's get_encoding_dim() may be 0 (e.g. an autodecoder with encoding_dim=0): the
model then passes no global code.
"""

from __future__ import annotations

import abc
from typing import Any, List, Optional

import torch

from recon_trainer.config import ConfigError, ReplaceableBase, registry, run_auto_creation
from recon_trainer.models.autodecoder import Autodecoder
from recon_trainer.rendering.harmonic_embedding import HarmonicEmbedding


class GlobalEncoderBase(ReplaceableBase, torch.nn.Module):
    """Maps a batch of frames to codes (B, get_encoding_dim()) passed to the implicit function."""

    @abc.abstractmethod
    def get_encoding_dim(self) -> int:
        """Channels of the code."""

    def calculate_squared_encoding_norm(self) -> Optional[torch.Tensor]:
        """A scalar regulariser of the codes (logged as loss_autodecoder_norm), or None."""
        return None

    @abc.abstractmethod
    def forward(self, batch: Any) -> Optional[torch.Tensor]:
        """batch: a FrameData of B frames -> (B, get_encoding_dim()) codes (None when the dim is 0)."""


@registry.register
class SequenceAutodecoder(GlobalEncoderBase):
    """A learned code per `sequence_name` (see Autodecoder for new and unknown names)."""

    autodecoder: Autodecoder

    def __post_init__(self) -> None:
        run_auto_creation(self)

    def get_encoding_dim(self) -> int:
        return self.autodecoder.get_encoding_dim()

    def calculate_squared_encoding_norm(self) -> Optional[torch.Tensor]:
        return self.autodecoder.calculate_squared_encoding_norm()

    def forward(self, batch: Any) -> Optional[torch.Tensor]:
        """(B, encoding_dim) codes of the batch's sequence names."""
        return self.autodecoder(_sequence_names(batch))


@registry.register
class HarmonicTimeEncoder(GlobalEncoderBase):
    """The harmonic embedding of frame_timestamp / time_divisor: (B, 2 n_harmonic_functions + append_input)."""

    n_harmonic_functions: int = 10  # frequencies of the embedding
    append_input: bool = True  # append the scaled time itself
    time_divisor: float = 1.0  # the timestamp is divided by this first

    def __post_init__(self) -> None:
        if self.time_divisor == 0:
            raise ConfigError("HarmonicTimeEncoder.time_divisor=0: expected a non-zero number")
        self._embedding = HarmonicEmbedding(self.n_harmonic_functions, append_input=self.append_input)

    def get_encoding_dim(self) -> int:
        return self._embedding.get_output_dim(1)

    def forward(self, batch: Any) -> torch.Tensor:
        """(B, get_encoding_dim()) embeddings of the batch's frame_timestamp (B,)."""
        timestamp = getattr(batch, "frame_timestamp", None)
        if timestamp is None:
            raise ValueError("HarmonicTimeEncoder: the batch has no frame_timestamp")
        return self._embedding(timestamp.reshape(-1, 1).float() / self.time_divisor)


def _sequence_names(batch: Any) -> List[str]:
    names = getattr(batch, "sequence_name", None)
    if names is None:
        raise ValueError("SequenceAutodecoder: the batch has no sequence_name")
    return [names] if isinstance(names, str) else list(names)
