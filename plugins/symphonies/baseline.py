"""Baselines a scene completion model must beat, whatever the image shows (voxels never labelled in
training predict empty):

- voxel prior: every voxel gets the class most frequent at its position over the training targets
  (each column of the samples x voxels label table);
- column majority: every vertical column (x, y) gets, all the way up, the class most frequent in
  that column over the training targets (often empty, which scores nothing)."""
from __future__ import annotations

from typing import Iterable

import torch

from recon_trainer.data.records import IGNORE_LABEL


def _class_counts(targets: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """(C, X, Y, Z) int64: how often each label (not 255) occurs at each voxel over `targets`."""
    counts = None
    for target in targets:
        target = target.reshape(-1, *target.shape[-3:]).long()
        one_hot = torch.zeros(num_classes + 1, *target.shape[-3:], dtype=torch.int64)
        for volume in target:
            one_hot.scatter_add_(0, torch.where(volume == IGNORE_LABEL, num_classes, volume)[None],
                                 torch.ones_like(volume)[None])
        counts = one_hot if counts is None else counts + one_hot
    if counts is None:
        raise ValueError("no targets to count")
    return counts[:num_classes]


def voxel_majority_prior(targets: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """(X, Y, Z) int64: per voxel position, the most frequent label (not 255) over `targets`
    ((X, Y, Z) or (B, X, Y, Z) tensors of one grid); ties go to the lower class."""
    return _class_counts(targets, num_classes).argmax(dim=0)


def column_majority_prior(targets: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """(X, Y, Z) int64: per vertical column (x, y) (z is up), the most frequent label over the column
    and `targets`, repeated along z; ties go to the lower class."""
    counts = _class_counts(targets, num_classes)
    return counts.sum(dim=3).argmax(dim=0)[..., None].expand(counts.shape[1:]).clone()
