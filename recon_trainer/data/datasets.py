"""Map-style datasets whose items are single-frame FrameData."""
from __future__ import annotations

from typing import List, Sequence

import torch

from recon_trainer.data.frame_data import FrameData


class SingleSceneDataset(torch.utils.data.Dataset):
    """Frames of one scene held in memory; `dataset[i]` is the i-th frame (a single FrameData)."""

    def __init__(self, frames: Sequence[FrameData]) -> None:
        self.frames: List[FrameData] = list(frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> FrameData:
        return self.frames[index]
