"""The CroCo v2 transformer pieces DUSt3R is built from: patch embeddings, encoder and decoder blocks.

Module and parameter names follow the original (croco/models/blocks.py, dust3r/patch_embed.py) so
that state dicts load unchanged. Attention runs through torch's scaled_dot_product_attention (the
same softmax(q k^T / sqrt(Dh)) v as the original's explicit product). Dropout and drop-path, always
0 in DUSt3R, are left out; LayerNorms use eps 1e-6 as CroCo's norm_layer.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .rope import PositionGetter, RoPE2D

NORM_EPS = 1e-6


def _check_divisible(height: int, width: int, patch_size: int) -> None:
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} (HxW) is not a multiple of the patch size {patch_size}")


class PatchEmbed(nn.Module):
    """DUSt3R's PatchEmbedDust3R: a patch_size-strided convolution; tokens follow the tensor's own
    layout (true_shape is accepted for a common signature and not used)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.position_getter = PositionGetter()

    def forward(self, x: torch.Tensor, true_shape: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) with H, W multiples of patch_size -> tokens (B, P, D) row-major over the
        (H/p, W/p) grid, positions (B, P, 2) int64 (row, column)."""
        batch, _, height, width = x.shape
        _check_divisible(height, width, self.patch_size)
        tokens = self.proj(x)
        positions = self.position_getter(batch, tokens.shape[2], tokens.shape[3], x.device)
        return tokens.flatten(2).transpose(1, 2), positions


class ManyARPatchEmbed(PatchEmbed):
    """DUSt3R's ManyAR_PatchEmbed: the batch tensor is landscape (W >= H); a sample whose true_shape
    (height, width) is portrait is stored transposed and is embedded transposed back, so its tokens
    and positions follow its portrait (W/p, H/p) grid."""

    def forward(self, x: torch.Tensor, true_shape: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) with W >= H; true_shape (B, 2) (height, width) -> tokens (B, P, D), positions (B, P, 2)."""
        batch, _, height, width = x.shape
        if width < height:
            raise ValueError(f"ManyARPatchEmbed needs landscape images (W >= H), got {height}x{width} (HxW)")
        if true_shape is None or tuple(true_shape.shape) != (batch, 2):
            raise ValueError(f"ManyARPatchEmbed needs true_shape (B, 2) = ({batch}, 2), got "
                             f"{None if true_shape is None else tuple(true_shape.shape)}")
        _check_divisible(height, width, self.patch_size)
        rows, cols = height // self.patch_size, width // self.patch_size
        landscape = (true_shape[:, 1] >= true_shape[:, 0]).to(x.device)
        tokens = x.new_zeros(batch, rows * cols, self.embed_dim)
        positions = torch.zeros(batch, rows * cols, 2, dtype=torch.int64, device=x.device)
        for selected, grid, images in ((landscape, (rows, cols), x[landscape]),
                                       (~landscape, (cols, rows), x[~landscape].transpose(-1, -2))):
            if bool(selected.any()):
                tokens[selected] = self.proj(images).flatten(2).transpose(1, 2).to(tokens.dtype)
                positions[selected] = self.position_getter(1, grid[0], grid[1], x.device)
        return tokens, positions


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.fc2(self.act(self.fc1(x)))


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    batch, tokens, channels = x.shape
    return x.reshape(batch, tokens, num_heads, channels // num_heads).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor,
            rope: Optional[RoPE2D]) -> torch.Tensor:
    """Multi-head attention of (B, heads, N, Dh) queries over keys/values, RoPE first; returns (B, Nq, C)."""
    if rope is not None:
        q, k = rope(q, qpos), rope(k, kpos)
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """Self-attention with a fused qkv projection (qkv, proj) and optional 2-D RoPE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rope: Optional[RoPE2D] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, xpos: torch.Tensor) -> torch.Tensor:
        """x (B, N, C), xpos (B, N, 2) -> (B, N, C)."""
        q, k, v = (_heads(part, self.num_heads) for part in self.qkv(x).chunk(3, dim=-1))
        return self.proj(_attend(q, k, v, xpos, xpos, self.rope))


class CrossAttention(nn.Module):
    """Attention of queries over another token set (projq, projk, projv, proj) with optional 2-D RoPE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rope: Optional[RoPE2D] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, qpos: torch.Tensor,
                kpos: torch.Tensor) -> torch.Tensor:
        """query (B, Nq, C), key/value (B, Nk, C), positions (B, Nq, 2) / (B, Nk, 2) -> (B, Nq, C)."""
        q = _heads(self.projq(query), self.num_heads)
        k = _heads(self.projk(key), self.num_heads)
        v = _heads(self.projv(value), self.num_heads)
        return self.proj(_attend(q, k, v, qpos, kpos, self.rope))


class Block(nn.Module):
    """Pre-norm ViT block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 rope: Optional[RoPE2D] = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, rope=rope)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, xpos: torch.Tensor) -> torch.Tensor:
        """x (B, N, C), xpos (B, N, 2) -> (B, N, C)."""
        x = x + self.attn(self.norm1(x), xpos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """CroCo decoder block: self-attention, cross-attention to the other view's (normalised) tokens, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_mem: bool = True, rope: Optional[RoPE2D] = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, rope=rope)
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias=qkv_bias, rope=rope)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=NORM_EPS) if norm_mem else nn.Identity()

    def forward(self, x: torch.Tensor, y: torch.Tensor, xpos: torch.Tensor,
                ypos: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, C) this view, y (B, M, C) the other view, positions (B, N, 2) / (B, M, 2) ->
        (updated x, y unchanged)."""
        x = x + self.attn(self.norm1(x), xpos)
        memory = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), memory, memory, xpos, ypos)
        return x + self.mlp(self.norm3(x)), y
