"""Spann3R's spatial memory (method notes §B.4): keys and values of past frames' tokens, read by attention.

Every step adds the P tokens of one frame: a key (B, P, C) and a value (B, P, C). The memory is
shared by the B sequences of a batch, which therefore always hold the same number of tokens.

* Reading (`memory_read`): softmax(LN_q(q) LN_k(K)^T / sqrt(C)) over all memory tokens; in training
  the attention goes through dropout; at inference entries below `attn_thresh` are zeroed and each
  row renormalised; the read is A LN_v(V) + q. The attention every token receives is accumulated.
* Training (`add`): every frame is added; nothing is forgotten.
* Inference (`add_checked`): a frame whose key is too similar to the working memory is skipped
  (mean over tokens of the cosine similarity with the same token of a working-memory frame, the
  maximum over frames AND over the batch above `sim_thresh`); the working memory is the last
  `work_mem_size` frames, older frames count as long-term memory; when that exceeds
  `long_mem_size` tokens the memory keeps the `long_mem_size` tokens with the highest attention
  received per frame since they were added, tokens younger than work_mem_size + 5 frames always
  kept (long_mem_size = 0: the oldest frame is dropped instead).

Differences from the original (spann3r/model.py SpatialMemory), both where it misbehaves:
* Pruning keeps the surviving tokens in the order they were added (`prune_keeps_time_order`); the
  original re-sorts them by weight, so that afterwards the "last work_mem_size frames" it compares
  new keys with are the least attended long-term tokens. False reproduces the original.
* A row whose attention entries are all below the threshold reads zero (plus the residual) instead
  of NaN.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

PROTECTED_EXTRA_FRAMES = 5  # tokens younger than work_mem_size + this many frames survive pruning
PROTECTED_WEIGHT = 1e8  # their pruning weight (the original's)


@dataclasses.dataclass
class MemoryArchitecture:
    """Spann3R's memory: the value encoder and the memory's sizes and thresholds (defaults: the original's).

    The widths are not fields: keys, values and the read have the DUSt3R encoder's width (the read
    replaces an encoder feature), the value encoder that of its input (encoder width, or the decoder
    width with use_feat); the original hard-codes them as 1024 and 1024 + 768 (ViT-L / ViT-B).
    """

    value_depth: int = 6  # CroCo blocks of the value encoder
    value_num_heads: int = 16
    value_mlp_ratio: float = 4.0
    use_feat: bool = False  # values from the last decoder tokens instead of the patch-embedded point map
    mem_pos_enc: bool = False  # RoPE in the value encoder (the DUSt3R network's RoPE)
    memory_dropout: float = 0.15  # dropout of the read attention, training only
    work_mem_size: int = 5  # frames of working memory (inference)
    long_mem_size: int = 4000  # tokens of long-term memory (inference)
    attn_thresh: float = 5e-4  # read attention entries below this are dropped (inference)
    sim_thresh: float = 0.95  # skip a frame this similar to the working memory (inference); 1: never
    prune_keeps_time_order: bool = True  # False: the original's order after pruning (module doc)

    def __post_init__(self) -> None:
        positive = {"value_num_heads": self.value_num_heads, "work_mem_size": self.work_mem_size,
                    "value_mlp_ratio": self.value_mlp_ratio}
        non_negative = {"value_depth": self.value_depth, "long_mem_size": self.long_mem_size,
                        "attn_thresh": self.attn_thresh}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name}={value!r}: expected > 0")
        for name, value in non_negative.items():
            if not value >= 0:
                raise ValueError(f"{name}={value!r}: expected >= 0")
        if not 0.0 <= self.memory_dropout < 1.0:
            raise ValueError(f"memory_dropout={self.memory_dropout!r}: expected in [0, 1)")
        if not -1.0 <= self.sim_thresh <= 1.0:
            raise ValueError(f"sim_thresh={self.sim_thresh!r}: expected a cosine similarity in [-1, 1] (1: never skip)")


def memory_read(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, norm_q: nn.Module, norm_k: nn.Module,
                norm_v: nn.Module, dropout: float = 0.0, attn_thresh: float = 0.0,
                residual: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attention of the queries (B, Q, C) over the memory keys / values (B, N, C).

    Returns the read (B, Q, C) (plus `query` if residual) and the attention (B, Q, N) actually used
    (after dropout, or after thresholding at `attn_thresh` > 0 and renormalising).
    """
    affinity = norm_q(query) @ norm_k(keys).transpose(1, 2) / math.sqrt(query.shape[-1])
    attention = torch.softmax(affinity, dim=-1)
    if dropout > 0:
        attention = F.dropout(attention, dropout, training=True)
    if attn_thresh > 0:
        attention = attention.masked_fill(attention < attn_thresh, 0.0)
        attention = attention / attention.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(attention.dtype).tiny)
    out = attention @ norm_v(values)
    return (out + query if residual else out), attention


class SpatialMemory:
    """The memory of one forward pass over B sequences (module doc). Tensors: keys, values (B, N, C);
    counts (B, N) frames added after each token's frame; received (B, N) attention received (both float32).

    training: reads use `dropout` and no threshold, frames are added with `add`; otherwise reads
    are thresholded and frames added with `add_checked`. The norms are the network's modules.
    """

    def __init__(self, norm_q: nn.Module, norm_k: nn.Module, norm_v: nn.Module, architecture: MemoryArchitecture,
                 training: bool) -> None:
        self.norm_q, self.norm_k, self.norm_v = norm_q, norm_k, norm_v
        self.architecture = architecture
        self.dropout = architecture.memory_dropout if training else 0.0
        self.attn_thresh = 0.0 if training else architecture.attn_thresh
        self.keys: Optional[torch.Tensor] = None
        self.values: Optional[torch.Tensor] = None
        self.counts: Optional[torch.Tensor] = None
        self.received: Optional[torch.Tensor] = None
        self.num_patches: Optional[int] = None
        self.working_frames = 0
        self.long_term_tokens = 0
        self.frames_added = 0
        self.frames_skipped = 0
        self.prunes = 0

    @property
    def num_tokens(self) -> int:
        """N, the tokens held."""
        return 0 if self.keys is None else self.keys.shape[1]

    def stats(self) -> Dict[str, int]:
        """Counters of the memory's bookkeeping (plain ints)."""
        return {"tokens": self.num_tokens, "working_frames": self.working_frames,
                "long_term_tokens": self.long_term_tokens, "frames_added": self.frames_added,
                "frames_skipped": self.frames_skipped, "prunes": self.prunes}

    def read(self, query: torch.Tensor) -> torch.Tensor:
        """The residual read (B, P, C) of the queries (B, P, C); accumulates the attention received."""
        if self.keys is None:
            raise RuntimeError("SpatialMemory.read: the memory is empty")
        out, attention = memory_read(query, self.keys, self.values, self.norm_q, self.norm_k, self.norm_v,
                                     dropout=self.dropout, attn_thresh=self.attn_thresh)
        self.received = self.received + attention.detach().sum(dim=1).float()
        return out

    def add(self, key: torch.Tensor, value: torch.Tensor) -> None:
        """Append one frame's tokens: key and value (B, P, C)."""
        if self.num_patches is None:
            self.num_patches = key.shape[1]
        elif key.shape[1] != self.num_patches:
            raise ValueError(f"SpatialMemory: a frame of {key.shape[1]} tokens after frames of {self.num_patches}")
        fresh = key.new_zeros(key.shape[:2], dtype=torch.float32)  # bookkeeping in float32 under autocast too
        if self.keys is None:
            self.keys, self.values, self.counts, self.received = key, value, fresh, fresh.clone()
        else:
            self.keys = torch.cat((self.keys, key), dim=1)
            self.values = torch.cat((self.values, value), dim=1)
            self.counts = torch.cat((self.counts + 1, fresh), dim=1)
            self.received = torch.cat((self.received, fresh), dim=1)
        self.frames_added += 1

    def is_similar(self, key: torch.Tensor) -> bool:
        """Whether a frame's key (B, P, C) is more similar than sim_thresh to a working-memory frame
        (for any sequence of the batch)."""
        if self.keys is None or self.architecture.sim_thresh == 1.0:
            return False
        batch, patches, channels = key.shape
        working = self.keys[:, -self.working_frames * patches:].reshape(batch, -1, patches, channels)
        similarity = torch.einsum("bpc,btpc->btp", F.normalize(key, dim=-1), F.normalize(working, dim=-1))
        return bool(similarity.mean(dim=-1).max() > self.architecture.sim_thresh)

    def add_checked(self, key: torch.Tensor, value: torch.Tensor) -> bool:
        """Inference: add a frame unless it is similar to the working memory, then move the oldest
        working frame to long-term memory and prune it if needed. Returns whether it was added."""
        if self.is_similar(key):
            self.frames_skipped += 1
            return False
        self.add(key, value)
        self.working_frames += 1
        patches = self.num_patches
        if self.working_frames > self.architecture.work_mem_size:
            self.working_frames -= 1
            if self.architecture.long_mem_size == 0:
                self._keep(slice(patches, None))
            else:
                self.long_term_tokens += patches
        if self.long_term_tokens > self.architecture.long_mem_size:
            self.prune()
            self.long_term_tokens = self.architecture.long_mem_size - self.working_frames * patches
        return True

    def prune(self) -> None:
        """Keep the long_mem_size tokens of highest attention received per frame since added (the
        recent ones protected)."""
        arch = self.architecture
        protected = self.counts < arch.work_mem_size + PROTECTED_EXTRA_FRAMES
        weights = torch.where(protected, torch.full_like(self.received, PROTECTED_WEIGHT),
                              self.received / self.counts.clamp_min(1.0))
        kept = torch.topk(weights, arch.long_mem_size, dim=1).indices
        if arch.prune_keeps_time_order:
            kept = kept.sort(dim=1).values
        self._keep(kept)
        self.prunes += 1

    def _keep(self, index: Union[slice, torch.Tensor]) -> None:
        """Keep the tokens at `index`: a slice, or (B, K) token indices per sequence."""
        if isinstance(index, slice):
            self.keys, self.values = self.keys[:, index], self.values[:, index]
            self.counts, self.received = self.counts[:, index], self.received[:, index]
            return
        channels = index[..., None].expand(-1, -1, self.keys.shape[-1])
        self.keys, self.values = self.keys.gather(1, channels), self.values.gather(1, channels)
        self.counts, self.received = self.counts.gather(1, index), self.received.gather(1, index)

    def detach(self) -> None:
        """Cut the gradient through everything held (truncated back-propagation)."""
        if self.keys is not None:
            self.keys, self.values = self.keys.detach(), self.values.detach()
