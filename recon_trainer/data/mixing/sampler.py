"""MixingBatchSampler: batches that hold every component of a concatenation in fixed shares."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterator, List, Sequence, Tuple

import torch
from torch.utils.data import Sampler

from recon_trainer.data.mixing.permutation import LazyPermutation, mix64


def integer_weights(shares: Sequence[float]) -> List[int]:
    """Non-negative integers in exactly the ratio of `shares` (floats read as their decimal repr)."""
    fractions = []
    for share in shares:
        value = float(share)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"MixingBatchSampler: shares must be finite and >= 0, got {list(shares)}")
        fractions.append(Fraction(share) if isinstance(share, int) else Fraction(repr(value)))
    denominator = math.lcm(*(f.denominator for f in fractions))
    return [int(f * denominator) for f in fractions]


def quota_counts(weights: Sequence[int], batch_size: int, n_batches: int) -> Iterator[List[int]]:
    """How many items of each component go in each batch, for n_batches batches.

    Slots are handed out one at a time by the quota method (Balinski & Young): the next slot goes,
    among the components below their upper quota, to the one with the largest weight / (given + 1).
    After every slot t each component c has floor or ceil of t * w_c / sum(w) slots, so at every
    batch boundary its running total is within 1 of its share.
    """
    total = sum(weights)
    given = [0] * len(weights)
    slot = 0
    for _ in range(n_batches):
        counts = [0] * len(weights)
        for _ in range(batch_size):
            slot += 1
            best = -1
            for c, weight in enumerate(weights):
                below_upper_quota = given[c] * total < slot * weight
                if below_upper_quota and (best < 0 or weight * (given[best] + 1) > weights[best] * (given[c] + 1)):
                    best = c
            given[best] += 1
            counts[best] += 1
        yield counts


class _Cycle:
    """The indices 0..size-1 in a pseudo-random order, a new one each pass; O(1) memory (the
    order of pass p is a LazyPermutation keyed by the epoch seed, the component and p)."""

    def __init__(self, size: int, seed: int, component: int) -> None:
        self.size, self.key = size, mix64(mix64(seed) ^ component)
        self.drawn = 0
        self.order = LazyPermutation(size, self.key)

    def next(self) -> int:
        passes, position = divmod(self.drawn, self.size)
        if position == 0 and passes > 0:
            self.order = LazyPermutation(self.size, mix64(self.key ^ mix64(passes)))
        self.drawn += 1
        return self.order[position]


class MixingBatchSampler(Sampler):
    """Batches of (global_index, epoch_seed) over a concatenation of components.

    component_sizes: the length of each component (global indices run through them in order).
    shares: each component's share of every batch, normalised (e.g. the sizes: uniform over the
    concatenation; all equal: the same number from each). Per-batch counts follow `quota_counts`;
    within a component the items come from a shuffled permutation, reshuffled each pass; positions
    are shuffled within the batch. Each pass draws its seed from torch's global RNG, so a loop
    that seeds it per epoch gets reproducible (and resumable) epochs; the seed is also the
    epoch_seed given to the dataset. Memory does not grow with the component sizes (the orders
    are LazyPermutations) nor with n_batches (batches are made as they are drawn).
    """

    def __init__(self, component_sizes: Sequence[int], batch_size: int, n_batches: int,
                 shares: Sequence[float]) -> None:
        if batch_size < 1 or n_batches < 0:
            raise ValueError(f"MixingBatchSampler: batch_size must be >= 1 and n_batches >= 0, "
                             f"got {batch_size} and {n_batches}")
        if len(shares) != len(component_sizes) or not component_sizes:
            raise ValueError(f"MixingBatchSampler: one share per component expected, got {len(shares)} shares "
                             f"for {len(component_sizes)} components")
        self.weights = integer_weights(shares)
        if sum(self.weights) == 0:
            raise ValueError(f"MixingBatchSampler: the shares are all zero: {list(shares)}")
        self.sizes = [int(size) for size in component_sizes]
        for c, (size, weight) in enumerate(zip(self.sizes, self.weights)):
            if weight > 0 and size < 1:
                raise ValueError(f"MixingBatchSampler: component {c} is empty but has a share of {shares[c]}")
        self.offsets = [sum(self.sizes[:c]) for c in range(len(self.sizes))]
        self.batch_size, self.n_batches = batch_size, n_batches

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        # The seed is drawn at the first batch, not when iter() is called: a DataLoader draws its
        # own base seed in between, and accelerate's skip_first_batches (resume) starts this
        # iterator only at its first batch, so drawing late keeps the order of draws the same.
        seed = int(torch.randint(0, 2**62, ()).item())
        generator = torch.Generator().manual_seed(seed)
        cycles = [_Cycle(size, seed, c) if size > 0 else None for c, size in enumerate(self.sizes)]
        for counts in quota_counts(self.weights, self.batch_size, self.n_batches):
            items = [(self.offsets[c] + cycles[c].next(), seed) for c, count in enumerate(counts) for _ in range(count)]
            yield [items[k] for k in torch.randperm(len(items), generator=generator).tolist()]
