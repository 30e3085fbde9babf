"""DINOv2 vision transformer (patch 14), the backbone of MoGe-1 and MoGe-2.

Our own implementation of the architecture of facebookresearch/dinov2 as MoGe builds it
(`hub_loader(pretrained=False)`, unchunked blocks): a 14-pixel patch embedding, a class token,
optional register tokens, a learned position embedding for a `img_size` square that is resized
bicubically to the input's token grid, pre-norm transformer blocks with LayerScale and an MLP (or
SwiGLU for ViT-g) feed-forward, and a final LayerNorm. Parameter names equal DINOv2's, so an
official state dict (e.g. `dinov2_vitl14_pretrain.pth`) loads one to one with
`load_backbone_weights`. Stochastic depth and dropout (both 0 in the released backbones) are left
out.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from recon_trainer.config import ConfigError
from recon_trainer.config.errors import did_you_mean

from .state_dicts import load_state_dict_file

PATCH_SIZE = 14
FFN_LAYERS = ("mlp", "swiglu")

# Constructor arguments of the official hub models (torch.hub 'facebookresearch/dinov2').
_COMMON = {"patch_size": PATCH_SIZE, "img_size": 518, "init_values": 1.0, "mlp_ratio": 4.0}
_REGISTERS = {"num_register_tokens": 4, "interpolate_antialias": True, "interpolate_offset": 0.0}
_SIZES = {
    "vits14": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vitb14": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vitl14": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "vitg14": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "ffn_layer": "swiglu"},
}
BACKBONE_PRESETS: Dict[str, Dict[str, Any]] = {
    **{f"dinov2_{size}": {**_COMMON, **dims} for size, dims in _SIZES.items()},
    **{f"dinov2_{size}_reg": {**_COMMON, **dims, **_REGISTERS} for size, dims in _SIZES.items()},
}


class PatchEmbed(nn.Module):
    """(B, C, H, W) image, H and W multiples of the patch size -> (B, H/p * W/p, D) tokens, row-major."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"DINOv2 input {height}x{width} is not a multiple of the patch size {self.patch_size}")
        return self.proj(image).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, D) tokens with a fused qkv projection (SDPA kernel)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"embed_dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, count, dim = tokens.shape
        # (B, N, 3D) -> three (B, heads, N, D/heads)
        query, key, value = self.qkv(tokens).view(batch, count, 3, self.num_heads, dim // self.num_heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        mixed = F.scaled_dot_product_attention(query, key, value)
        return self.proj(mixed.transpose(1, 2).reshape(batch, count, dim))


class LayerScale(nn.Module):
    """Per-channel learned scale `gamma` (D,) of a residual branch."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Linear -> GELU -> Linear feed-forward."""

    def __init__(self, dim: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward as DINOv2's ViT-g ("swiglufused"): the hidden width `hidden` is reduced
    to 2/3 and rounded up to a multiple of 8; w12 yields the gate and the value halves."""

    def __init__(self, dim: int, hidden: int, bias: bool) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden, bias=bias)
        self.w3 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, ffn_layer: str, init_values: Optional[float],
                 qkv_bias: bool, proj_bias: bool, ffn_bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, proj_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        feed_forward = Mlp if ffn_layer == "mlp" else SwiGLU
        self.mlp = feed_forward(dim, int(dim * mlp_ratio), ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT. Input (B, 3, H, W) ImageNet-normalised, H and W multiples of `patch_size`.

    Token sequence: [cls, registers..., patches (row-major)]. `init_values` is the LayerScale
    initial value (None or 0: no LayerScale). The position embedding is learned for a square
    `img_size` (518: a 37 x 37 grid) and resized bicubically for other grids: with
    `interpolate_offset` > 0 the resize is given as scale factors (grid + offset) / 37 (DINOv2's
    historical offset, 0.1), otherwise as the output size; `interpolate_antialias` as DINOv2.
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        patch_size: int = PATCH_SIZE,
        img_size: int = 518,
        in_chans: int = 3,
        ffn_layer: str = "mlp",
        init_values: Optional[float] = 1.0,
        num_register_tokens: int = 0,
        interpolate_antialias: bool = False,
        interpolate_offset: float = 0.1,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
    ) -> None:
        super().__init__()
        if ffn_layer not in FFN_LAYERS:
            raise ConfigError(f"ffn_layer={ffn_layer!r}: expected one of {FFN_LAYERS}")
        if min(embed_dim, depth, num_heads, patch_size, img_size) <= 0 or num_register_tokens < 0:
            raise ConfigError(f"DINOv2 embed_dim={embed_dim}, depth={depth}, num_heads={num_heads}, patch_size="
                              f"{patch_size}, img_size={img_size}, num_register_tokens={num_register_tokens}: "
                              f"expected positive sizes and registers >= 0")
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        self.gradient_checkpointing = False
        self.grid_size = img_size // patch_size  # side of the square grid the position embedding is learned for

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size ** 2, embed_dim))
        if num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        else:
            self.register_tokens = None
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, ffn_layer, init_values, qkv_bias, proj_bias, ffn_bias)
            for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # DINOv2's masked-patch token (unused here)
        self._init_weights()

    def _init_weights(self) -> None:
        """DINOv2's initialisation: truncated normals (std 0.02) for the position embedding and the
        Linear weights, zero Linear biases, N(0, 1e-6) class and register tokens."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def position_embedding(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, 1 + rows * cols, D) position embedding (class token first) for a rows x cols grid."""
        side = self.grid_size
        if rows == side and cols == side:
            # as DINOv2: the parameter itself (its dtype), so under autocast the sum is float32
            return self.pos_embed
        table = self.pos_embed.float()
        grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if self.interpolate_offset > 0:
            scale = ((rows + self.interpolate_offset) / side, (cols + self.interpolate_offset) / side)
            resized = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=self.interpolate_antialias)
        else:
            resized = F.interpolate(grid, size=(rows, cols), mode="bicubic", antialias=self.interpolate_antialias)
        if resized.shape[-2:] != (rows, cols):
            raise RuntimeError(f"position embedding resized to {tuple(resized.shape[-2:])}, expected {(rows, cols)}")
        patches = resized.permute(0, 2, 3, 1).flatten(1, 2)
        return torch.cat([table[:, :1], patches], dim=1).to(dtype)

    def prepare_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + registers + H/p * W/p, D) tokens with position embeddings."""
        rows, cols = image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size
        patches = self.patch_embed(image)
        tokens = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
        tokens = tokens + self.position_embedding(rows, cols, tokens.dtype)
        if self.register_tokens is None:
            return tokens
        registers = self.register_tokens.expand(tokens.shape[0], -1, -1)
        return torch.cat([tokens[:, :1], registers, tokens[:, 1:]], dim=1)

    def _run_block(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, tokens, use_reentrant=False)
        return block(tokens)

    def block_indices(self, n: Union[int, Sequence[int]]) -> List[int]:
        """The 0-based indices of the blocks `n` selects (an int: the last n; a sequence: those),
        in block order; ConfigError if out of range or repeated."""
        depth = len(self.blocks)
        indices = list(range(depth - n, depth)) if isinstance(n, int) else sorted(int(i) for i in n)
        if not indices or min(indices) < 0 or max(indices) >= depth or len(set(indices)) < len(indices):
            raise ConfigError(f"intermediate_layers={n!r}: expected a count in 1..{depth} or distinct block indices "
                              f"in 0..{depth - 1} of this {depth}-block DINOv2")
        return indices

    def unused_parameters(self, n: Union[int, Sequence[int]]) -> List[nn.Parameter]:
        """The parameters get_intermediate_layers(x, n) never uses: the masked-patch token (DINOv2's
        own pretraining) and the blocks after the last selected one. Frozen by MoGeModel, so that
        several processes (DDP) do not wait for their gradients."""
        last = max(self.block_indices(n))
        unused = [self.mask_token]
        for block in self.blocks[last + 1:]:
            unused.extend(block.parameters())
        return unused

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: Union[int, Sequence[int]] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
    ) -> Tuple[Any, ...]:
        """Outputs of chosen blocks, as DINOv2's method of the same name.

        `n`: an int takes the last n blocks, a sequence the blocks with those 0-based indices (in
        block order, each once). Per block: patch tokens (B, h*w, D) (with `reshape`: (B, D, h, w)),
        after the final LayerNorm when `norm`; with `return_class_token` a tuple of
        (patch tokens, class token (B, D)) pairs, otherwise a tuple of patch tokens.
        """
        wanted = set(self.block_indices(n))
        tokens = self.prepare_tokens(x)
        outputs = []
        for index, block in enumerate(self.blocks):
            tokens = self._run_block(block, tokens)
            if index in wanted:
                outputs.append(self.norm(tokens) if norm else tokens)
            if index >= max(wanted):
                break
        class_tokens = [out[:, 0] for out in outputs]
        patches = [out[:, 1 + self.num_register_tokens:] for out in outputs]
        if reshape:
            rows, cols = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
            patches = [p.reshape(p.shape[0], rows, cols, -1).permute(0, 3, 1, 2).contiguous() for p in patches]
        if return_class_token:
            return tuple(zip(patches, class_tokens))
        return tuple(patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> normalised class token (B, D), as DINOv2's forward with an Identity head."""
        tokens = self.prepare_tokens(x)
        for block in self.blocks:
            tokens = self._run_block(block, tokens)
        return self.norm(tokens)[:, 0]


def backbone_arguments(name: str, override: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Constructor arguments of the DINOv2 preset `name` (BACKBONE_PRESETS), updated by `override`
    (e.g. {"embed_dim": 32, "depth": 4, "num_heads": 2, "img_size": 112} for a tiny test model)."""
    if name not in BACKBONE_PRESETS:
        raise ConfigError(f"backbone {name!r}: expected one of {sorted(BACKBONE_PRESETS)}"
                          + did_you_mean(name, BACKBONE_PRESETS))
    arguments = dict(BACKBONE_PRESETS[name])
    if override:
        allowed = list(inspect.signature(DinoVisionTransformer).parameters)
        unknown = sorted(set(override) - set(allowed))
        if unknown:
            raise ConfigError(f"backbone_override key {unknown[0]!r}: expected DinoVisionTransformer arguments "
                              f"{allowed}" + did_you_mean(unknown[0], allowed))
        arguments.update(override)
    return arguments


def build_backbone(name: str, override: Optional[Mapping[str, Any]] = None) -> DinoVisionTransformer:
    """A randomly initialised DINOv2 of preset `name` with `override`d arguments (backbone_arguments)."""
    return DinoVisionTransformer(**backbone_arguments(name, override))


def load_backbone_weights(module: nn.Module, path: str) -> None:
    """Load an official DINOv2 state dict file (e.g. dinov2_vitl14_pretrain.pth) into `module`,
    strictly; UserError naming the file if it is missing, unreadable or does not fit."""
    load_state_dict_file(module, path, what="DINOv2 weights file")
