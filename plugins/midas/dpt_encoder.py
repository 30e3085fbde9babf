"""ViTEncoder: the DPT (MiDaS v3) encoder, a timm Vision Transformer with token reassembly."""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

import torch
import torch.nn.functional as F

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.dependencies import require

from .encoders import MidasEncoderBase, load_weights_file

if TYPE_CHECKING:  # timm takes seconds to import: only building a ViTEncoder imports it
    from timm.models.vision_transformer import VisionTransformer

READOUTS = ("project", "add", "ignore")
PATCH_SIZE = 16  # the token grid is at stride 16; reassembly resamples it by 4, 2, 1 and 1/2
DPT_MEAN_STD = (0.5, 0.5, 0.5)


class Readout(torch.nn.Module):
    """Folds the class token into the patch tokens: (B, N, C), (B, 1, C) -> (B, N, C).

    "ignore" drops it, "add" adds it to every patch token, "project" concatenates it to every
    patch token and maps the 2C channels back to C (Linear + GELU), DPT's default.
    """

    def __init__(self, mode: str, dim: int) -> None:
        super().__init__()
        self.mode = mode
        if mode == "project":
            self.project = torch.nn.Sequential(torch.nn.Linear(2 * dim, dim), torch.nn.GELU())

    def forward(self, tokens: torch.Tensor, cls_token: Optional[torch.Tensor]) -> torch.Tensor:
        if self.mode == "ignore":
            return tokens
        if self.mode == "add":
            return tokens + cls_token
        return self.project(torch.cat([tokens, cls_token.expand_as(tokens)], dim=-1))


def _resample(channels: int, stage: int) -> torch.nn.Module:
    """Stride-16 map -> stride 4, 8, 16 or 32 for stage 0..3 (channels kept)."""
    if stage == 0:
        return torch.nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=4)
    if stage == 1:
        return torch.nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
    if stage == 2:
        return torch.nn.Identity()
    return torch.nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)


@registry.register
class ViTEncoder(MidasEncoderBase):
    """A timm ViT (created with pretrained=False, any input size that is a multiple of 16) whose
    tokens after the blocks `hooks` are reassembled into images at strides 4, 8, 16, 32.

    The position embedding is resized to the input's token grid as DPT does it: bilinear,
    align_corners=False, no antialiasing (timm's own dynamic-size path is bicubic and antialiased,
    which gives other numbers than the released DPT weights were trained with), the prefix tokens'
    entries kept.

    Per hook: the class token is folded in (`readout`), the (B, N, D) tokens become a
    (B, D, H/16, W/16) map, a 1x1 conv maps D to `reassemble_channels[i]`, and a resampling gives
    the stage's stride (transposed conv x4, x2, identity, 3x3 conv with stride 2). The blocks after
    the last hook, the final norm and the classifier are dropped (after loading `weights_path`, a
    timm state dict of `arch`). Input normalisation: mean = std = 0.5.
    """

    arch: str = "vit_large_patch16_384"  # timm VisionTransformer with 16-pixel patches (DPT-Large: ViT-L/16 384)
    depth: int = 0  # transformer blocks (0: the arch's own); fewer make a small model for tests
    embed_dim: int = 0  # token width (0: the arch's own); a small one (with num_heads) makes a tiny test model
    num_heads: int = 0  # attention heads (0: the arch's own); must divide embed_dim
    hooks: Tuple[int, ...] = (5, 11, 17, 23)  # four increasing 0-based block indices whose tokens are reassembled
    # class token handling: project (concat + Linear + GELU), add or ignore
    readout: str = choice_field("project", READOUTS)
    reassemble_channels: Tuple[int, ...] = (256, 512, 1024, 1024)  # channels of the four maps, finest first
    weights_path: Optional[str] = None  # a local timm state-dict file of `arch` to initialise from (None: random)

    def __post_init__(self) -> None:
        self._check_fields()
        self.vit = self._build_vit()
        dim = self.vit.embed_dim
        self.readouts = torch.nn.ModuleList([Readout(self.readout, dim) for _ in self.hooks])
        self.reassemble = torch.nn.ModuleList(
            [
                torch.nn.Sequential(torch.nn.Conv2d(dim, channels, kernel_size=1), _resample(channels, stage))
                for stage, channels in enumerate(self.reassemble_channels)
            ]
        )

    def _check_fields(self) -> None:
        check_choices(self)
        hooks = list(self.hooks)
        if len(hooks) != 4 or any(a >= b for a, b in zip(hooks, hooks[1:])) or hooks[0] < 0:
            raise ConfigError(f"ViTEncoder.hooks={hooks}: expected four increasing block indices >= 0")
        if len(self.reassemble_channels) != 4 or min(self.reassemble_channels) < 1:
            raise ConfigError(
                f"ViTEncoder.reassemble_channels={list(self.reassemble_channels)}: expected four positive integers"
            )
        for key in ("depth", "embed_dim", "num_heads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"ViTEncoder.{key}={getattr(self, key)}: expected >= 0 (0: the arch's own)")

    def _build_vit(self) -> VisionTransformer:
        timm = require("timm", "MiDaS's ViTEncoder (DPT)")
        overrides = {key: getattr(self, key) for key in ("depth", "embed_dim", "num_heads") if getattr(self, key) > 0}
        try:
            vit = timm.create_model(self.arch, pretrained=False, dynamic_img_size=True, **overrides)
        except RuntimeError as error:  # timm: "Unknown model (...)"
            raise ConfigError(f"ViTEncoder.arch={self.arch!r}: {error}") from error
        except TypeError as error:  # not a ViT: its constructor has no dynamic_img_size / depth
            raise ConfigError(f"ViTEncoder.arch={self.arch!r}: expected a timm VisionTransformer ({error})") from error
        except AssertionError as error:  # timm's attention: the width is not a multiple of the heads
            raise ConfigError(
                f"ViTEncoder: {self.arch} ({self._sizes()}) cannot be built ({error}); "
                f"expected num_heads dividing embed_dim"
            ) from error
        if not isinstance(vit, timm.models.vision_transformer.VisionTransformer):
            raise ConfigError(f"ViTEncoder.arch={self.arch!r}: expected a timm VisionTransformer, got {type(vit)}")
        if tuple(vit.patch_embed.patch_size) != (PATCH_SIZE, PATCH_SIZE):
            raise ConfigError(
                f"ViTEncoder.arch={self.arch!r}: patch size {tuple(vit.patch_embed.patch_size)}, expected 16 x 16"
            )
        if self.hooks[-1] >= len(vit.blocks):
            raise ConfigError(
                f"ViTEncoder.hooks={list(self.hooks)}: {self.arch} ({self._sizes()}) has {len(vit.blocks)} blocks"
            )
        if self.readout != "ignore" and getattr(vit, "cls_token", None) is None:
            raise ConfigError(f"ViTEncoder.readout={self.readout!r}: {self.arch} has no class token; use 'ignore'")
        if self.weights_path is not None:
            load_weights_file(vit, self.weights_path, "ViTEncoder", f"timm {self.arch} ({self._sizes()})")
        self.built_depth = len(vit.blocks)  # before pruning: the blocks a full state dict of the arch has
        vit.prune_intermediate_layers(list(self.hooks), prune_norm=True, prune_head=True)
        return vit

    def _sizes(self) -> str:
        """The size overrides, for messages: "depth=4, embed_dim=32" (or "its own sizes")."""
        sizes = [f"{key}={getattr(self, key)}" for key in ("depth", "embed_dim", "num_heads") if getattr(self, key)]
        return ", ".join(sizes) or "its own sizes"

    def stage_channels(self) -> Tuple[int, int, int, int]:
        return tuple(self.reassemble_channels)

    def normalization(self) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
        return DPT_MEAN_STD, DPT_MEAN_STD

    def decoder_variant(self) -> str:
        return "dpt"

    def position_embedding(self, grid: Tuple[int, int]) -> torch.Tensor:
        """The ViT's position embedding (1, P + h * w, D) for a token grid of h x w, P = the prefix
        tokens that have entries (class token unless the arch has no_embed_class), resized from the
        arch's grid bilinearly (class docstring)."""
        vit = self.vit
        prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
        old_grid = tuple(vit.patch_embed.grid_size)
        if tuple(grid) == old_grid:
            return vit.pos_embed
        pos = vit.pos_embed
        table = pos[:, prefix:].reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
        table = F.interpolate(table.float(), size=tuple(grid), mode="bilinear", align_corners=False).to(pos.dtype)
        return torch.cat([pos[:, :prefix], table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)

    def hooked_tokens(self, image: torch.Tensor) -> Tuple[List[torch.Tensor], int, Tuple[int, int]]:
        """Normalised image (B, 3, H, W) -> ([(B, P + h * w, D) tokens after each hooked block],
        P prefix tokens (class, registers) first in each, (h, w) = (H / 16, W / 16))."""
        vit = self.vit
        x = vit.patch_embed(image)  # (B, h, w, D): created with dynamic_img_size
        batch, grid_h, grid_w, dim = x.shape
        x = x.reshape(batch, grid_h * grid_w, dim)
        prefix = [token.expand(batch, -1, -1) for token in (vit.cls_token, vit.reg_token) if token is not None]
        pos = None if vit.pos_embed is None else self.position_embedding((grid_h, grid_w))
        if pos is not None and vit.no_embed_class:  # the embedding has no prefix entries: added before they join
            x = x + pos
        x = torch.cat(prefix + [x], dim=1) if prefix else x
        if pos is not None and not vit.no_embed_class:
            x = x + pos
        x = vit.norm_pre(vit.patch_drop(vit.pos_drop(x)))
        hooked = []
        for index, block in enumerate(vit.blocks):  # pruned after the last hook
            x = block(x)
            if index in self.hooks:
                hooked.append(x)
        return hooked, len(prefix), (grid_h, grid_w)

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        hooked, num_prefix, (grid_h, grid_w) = self.hooked_tokens(image)
        features = []
        for i, tokens in enumerate(hooked):
            cls_token = tokens[:, :1] if num_prefix else None
            patches = self.readouts[i](tokens[:, num_prefix:], cls_token)
            grid = patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], grid_h, grid_w)
            features.append(self.reassemble[i](grid))
        return features
