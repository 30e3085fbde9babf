"""What the DUSt3R and Spann3R networks return for a pair or a sequence, in one shape.

A DUSt3R pair is a sequence of T = 2 frames. Spann3R runs T - 1 steps over the pairs (k, k + 1);
step k's reference decoder predicts frame k and its target decoder frame k + 1, both in the
coordinates of camera 0 (for DUSt3R: camera 1 of the pair).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

import torch


@dataclasses.dataclass
class SequencePredictions:
    """Point maps and confidences of every step (B batch, T frames, H x W pixels).

    ref_points: (B, T - 1, H, W, 3) step k's reference-decoder point map of frame k, camera-0 frame.
    ref_conf:   (B, T - 1, H, W) its confidence (>= 1 with conf_mode exp).
    tgt_points: (B, T - 1, H, W, 3) step k's target-decoder point map of frame k + 1.
    tgt_conf:   (B, T - 1, H, W) its confidence.
    """

    ref_points: torch.Tensor
    ref_conf: torch.Tensor
    tgt_points: torch.Tensor
    tgt_conf: torch.Tensor

    @property
    def num_frames(self) -> int:
        """T."""
        return self.ref_points.shape[1] + 1

    def per_frame(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """One prediction per frame as Spann3R's `preds`: frame k < T - 1 from step k's reference
        decoder, the last frame from the last step's target decoder. (B, T, H, W, 3), (B, T, H, W)."""
        points = torch.cat([self.ref_points, self.tgt_points[:, -1:]], dim=1)
        conf = torch.cat([self.ref_conf, self.tgt_conf[:, -1:]], dim=1)
        return points, conf

    def select(self, indices: Sequence[int]) -> "SequencePredictions":
        """The predictions of the sequences at `indices` of the batch."""
        kept = [int(i) for i in indices]
        return SequencePredictions(*(getattr(self, f.name)[kept] for f in dataclasses.fields(self)))
