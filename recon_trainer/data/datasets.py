"""Map-style datasets whose items are single-frame FrameData, with the sequence structure loaders need.

`FrameDataset` is the protocol every provider's datasets follow: besides `len` and indexing, a
loader can ask for the sequence and frame type of every index without loading images, and a test
dataset may carry `eval_batches` (lists of indices: the target first, then known source views).
"""
from __future__ import annotations

import abc
from typing import List, Optional, Sequence

import torch

from recon_trainer.data.frame_data import FrameData


class FrameDataset(torch.utils.data.Dataset, abc.ABC):
    """A dataset of single frames; `eval_batches` (or None) lists fixed test batches by index."""

    eval_batches: Optional[List[List[int]]] = None
    # OmegaConf.structured reads an inherited generic base (torch's Dataset[T_co]) as the key and
    # value types of a dict and fails on config-built datasets; this class has no generic bases.
    __orig_bases__ = ()

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of frames."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> FrameData:
        """The index-th frame."""

    @abc.abstractmethod
    def sequence_names(self) -> List[str]:
        """The sequence name of every frame, in index order (without loading images)."""

    @abc.abstractmethod
    def frame_types(self) -> List[str]:
        """The frame type ("train_known", "test_unseen", ...) of every frame, in index order."""


class SingleSceneDataset(FrameDataset):
    """Frames held in memory; `dataset[i]` is the i-th frame (a single FrameData)."""

    def __init__(self, frames: Sequence[FrameData], eval_batches: Optional[List[List[int]]] = None) -> None:
        self.frames: List[FrameData] = list(frames)
        self.eval_batches = eval_batches
        for batch in eval_batches or []:
            bad = [i for i in batch if not 0 <= i < len(self.frames)]
            if not batch or bad:
                last = len(self.frames) - 1
                raise ValueError(f"SingleSceneDataset: eval batch {batch} has indices outside 0..{last}")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> FrameData:
        return self.frames[index]

    def sequence_names(self) -> List[str]:
        return [str(frame.sequence_name) for frame in self.frames]

    def frame_types(self) -> List[str]:
        return [str(frame.frame_type) for frame in self.frames]


def with_known_source_views(
    test_frames: Sequence[FrameData], known_frames: Sequence[FrameData], n_known: int, seed: int = 0
) -> SingleSceneDataset:
    """A test dataset whose eval batches pair each test frame with n_known random known frames.

    The dataset holds the test frames followed by the known frames; batch i is
    [i, n_known distinct known-frame indices] drawn with a generator seeded by `seed`.
    """
    if n_known < 0 or n_known > len(known_frames):
        raise ValueError(f"n_known_frames_for_test={n_known}: expected between 0 and {len(known_frames)} known frames")
    generator = torch.Generator().manual_seed(seed)
    n_test = len(test_frames)
    batches = []
    for i in range(n_test):
        picks = torch.randperm(len(known_frames), generator=generator)[:n_known]
        batches.append([i] + [n_test + int(k) for k in picks])
    return SingleSceneDataset(list(test_frames) + list(known_frames), eval_batches=batches)
