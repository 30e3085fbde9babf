"""Pre-norm residual attention blocks of Symphonies: `TransformerLayer` (multi-head attention) and
`DeformableTransformerLayer` (a deformable attention module), each with an optional GELU FFN.

Note the original's quirks, reproduced: the keys/values of `TransformerLayer` are not normalised, and a
deformable block adds the normalised query twice (once as mmcv's identity inside the attention module,
once as the residual), i.e. out = q + (attn(norm(q)) + norm(q)).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn


def feed_forward(embed_dims: int, mlp_ratio: int) -> nn.Sequential:
    """Linear(C, r*C) - GELU - Linear(r*C, C)."""
    return nn.Sequential(nn.Linear(embed_dims, embed_dims * mlp_ratio), nn.GELU(),
                         nn.Linear(embed_dims * mlp_ratio, embed_dims))


class TransformerLayer(nn.Module):
    """query += MHA(norm1(query) [+ query_pos], key [+ key_pos], value); then query += FFN(norm2(query)).

    Args:
        embed_dims: C. num_heads: heads. mlp_ratio: FFN expansion; 0 = no FFN (and no norm2).
    """

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attention = nn.MultiheadAttention(embed_dims, num_heads, bias=True, batch_first=True)
        self.norm2 = nn.LayerNorm(embed_dims) if mlp_ratio else None
        self.ffn = feed_forward(embed_dims, mlp_ratio) if mlp_ratio else None

    def forward(self, query: torch.Tensor, key: Optional[torch.Tensor] = None, value: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None, key_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """query (B, Q, C); key/value (B, K, C) (both None: self-attention on the raw query, with
        key_pos = query_pos); positions (B, Q|K, C) or None. Returns (B, Q, C)."""
        if key is None and value is None:
            key = value = query
            key_pos = query_pos
        if key_pos is not None:
            key = key + key_pos
        normed = self.norm1(query)
        if query_pos is not None:
            normed = normed + query_pos
        query = query + self.attention(normed, key, value, need_weights=False)[0]
        if self.ffn is not None:
            query = query + self.ffn(self.norm2(query))
        return query


class DeformableTransformerLayer(nn.Module):
    """query += attention(norm1(query), **inputs); then query += FFN(norm2(query)).

    Args:
        embed_dims: C.
        attention: a module called as attention(normed_query, value, query_pos=..., **inputs), returning
            (B, Q, C) that already contains the normalised query (mmcv's identity).
        mlp_ratio: FFN expansion; 0 = no FFN.
    """

    def __init__(self, embed_dims: int, attention: nn.Module, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attention = attention
        self.norm2 = nn.LayerNorm(embed_dims) if mlp_ratio else None
        self.ffn = feed_forward(embed_dims, mlp_ratio) if mlp_ratio else None

    def forward(self, query: torch.Tensor, value: torch.Tensor, query_pos: Optional[torch.Tensor] = None,
                **inputs: Any) -> torch.Tensor:
        """query (B, Q, C), value (B, S, C); `inputs` are the attention's reference points and shapes."""
        query = query + self.attention(self.norm1(query), value, query_pos=query_pos, **inputs)
        if self.ffn is not None:
            query = query + self.ffn(self.norm2(query))
        return query
