"""Convolutional building blocks of MoGe's heads: residual conv blocks, resamplers, the MoGe-1
head, MoGe-2's multi-level ConvStack, the scale MLP, and the point-map output remapping; plus the
small helpers both networks share (config checks, ImageNet normalisation buffers, the gradient
checkpointing switch).

Submodule layouts (nn.Sequential indices included) follow MoGe's, so released state dicts load
with identical keys. Convolutions pad with 'replicate'. Feature maps are (B, C, h, w).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from recon_trainer.config import ConfigError

from .geometry import normalized_view_plane_uv

ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": partial(nn.LeakyReLU, negative_slope=0.2),
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
NORMS = ("group_norm", "layer_norm", "instance_norm", "none")
RESAMPLERS = ("pixel_shuffle", "nearest", "bilinear", "conv_transpose", "pixel_unshuffle", "avg_pool", "max_pool")
REMAP_OUTPUTS = ("linear", "sinh", "exp", "sinh_exp")
GROUP_NORM_CHANNELS = 32  # 'group_norm' uses channels // 32 groups


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """ConfigError "name=value: expected one of choices" unless value is one of them."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {tuple(choices)}")


def check_group_norm(name: str, norm: str, channels: int) -> None:
    """'group_norm' needs at least 32 channels (it uses channels // 32 groups)."""
    if norm == "group_norm" and channels < GROUP_NORM_CHANNELS:
        raise ConfigError(f"{name}='group_norm' on {channels} channels: group_norm needs at least "
                          f"{GROUP_NORM_CHANNELS} (one group per 32 channels); use 'layer_norm' for narrow blocks")


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation of a (B, C, h, w) map: 'group_norm' (C // 32 groups), 'layer_norm' (one group
    over C, h, w), 'instance_norm' (no affine parameters) or 'none'."""
    if kind == "group_norm":
        return nn.GroupNorm(channels // GROUP_NORM_CHANNELS, channels)
    if kind == "layer_norm":
        return nn.GroupNorm(1, channels)
    if kind == "instance_norm":
        return nn.InstanceNorm2d(channels)
    return nn.Identity()


def run_checkpointed(module: nn.Module, x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """module(x), recomputed in the backward pass (non-reentrant checkpoint) when `enabled` and
    gradients are being recorded."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(module, x, use_reentrant=False)
    return module(x)


def uv_channels(batch: int, height: int, width: int, aspect_ratio: float, like: torch.Tensor) -> torch.Tensor:
    """(batch, 2, height, width) view-plane UV of an image of `aspect_ratio`, dtype/device of `like`."""
    uv = normalized_view_plane_uv(width=width, height=height, aspect_ratio=aspect_ratio, dtype=like.dtype,
                                  device=like.device)
    return uv.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)


def remap_points(points: torch.Tensor, mode: str) -> torch.Tensor:
    """Network output (..., 3) -> point map (..., 3). 'linear': as is; 'sinh': sinh of all three;
    'exp': z = exp(z_raw), xy = xy_raw * z (log depth and z-normalised xy); 'sinh_exp':
    (sinh(xy_raw), exp(z_raw))."""
    if mode == "linear":
        return points
    if mode == "sinh":
        return torch.sinh(points)
    xy, z = points.split([2, 1], dim=-1)
    z = torch.exp(z)
    if mode == "exp":
        return torch.cat([xy * z, z], dim=-1)
    if mode == "sinh_exp":
        return torch.cat([torch.sinh(xy), z], dim=-1)
    raise ConfigError(f"remap_output={mode!r}: expected one of {REMAP_OUTPUTS}")


class ResidualConvBlock(nn.Module):
    """x + layers(x) (the skip is a 1x1 conv when the channel count changes), layers =
    [in norm, activation, kxk conv -> hidden, hidden norm, activation, kxk conv -> out]."""

    def __init__(self, in_channels: int, out_channels: Optional[int] = None, hidden_channels: Optional[int] = None,
                 kernel_size: int = 3, activation: str = "relu", in_norm: str = "layer_norm",
                 hidden_norm: str = "group_norm") -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        hidden_channels = in_channels if hidden_channels is None else hidden_channels
        padding = kernel_size // 2
        self.layers = nn.Sequential(
            make_norm(in_norm, in_channels),
            ACTIVATIONS[activation](),
            nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=padding, padding_mode="replicate"),
            make_norm(hidden_norm, hidden_channels),
            ACTIVATIONS[activation](),
            nn.Conv2d(hidden_channels, out_channels, kernel_size, padding=padding, padding_mode="replicate"),
        )
        if in_channels == out_channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip_connection(x) + self.layers(x)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, padding_mode="replicate")


class Resampler(nn.Sequential):
    """Changes the resolution by `scale_factor` (x s for the up-samplers, / s for pixel_unshuffle,
    avg_pool, max_pool) and the channels from in_channels to out_channels.

    conv_transpose: transposed conv (k = stride = s) initialised to copy each input pixel to its
    s x s outputs, then a 3x3 conv; pixel_shuffle: a 3x3 conv to s^2 identical-initialised copies,
    PixelShuffle, a 3x3 conv; nearest / bilinear: interpolation then a 3x3 conv; pixel_unshuffle:
    PixelUnshuffle then a 3x3 conv; avg_pool / max_pool: a 3x3 conv then pooling.
    """

    def __init__(self, in_channels: int, out_channels: int, type_: str, scale_factor: int = 2) -> None:
        check_choice("resampler", type_, RESAMPLERS)
        s = scale_factor
        if type_ == "conv_transpose":
            super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=s, stride=s),
                             _conv3x3(out_channels, out_channels))
            with torch.no_grad():
                self[0].weight.copy_(self[0].weight[:, :, :1, :1].expand_as(self[0].weight))
        elif type_ == "pixel_shuffle":
            super().__init__(_conv3x3(in_channels, out_channels * s * s), nn.PixelShuffle(s),
                             _conv3x3(out_channels, out_channels))
            with torch.no_grad():
                for copy in range(1, s * s):
                    self[0].weight[copy::s * s] = self[0].weight[0::s * s]
                    self[0].bias[copy::s * s] = self[0].bias[0::s * s]
        elif type_ in ("nearest", "bilinear"):
            upsample = nn.Upsample(scale_factor=s, mode=type_, align_corners=False if type_ == "bilinear" else None)
            super().__init__(upsample, _conv3x3(in_channels, out_channels))
        elif type_ == "pixel_unshuffle":
            super().__init__(nn.PixelUnshuffle(s), _conv3x3(in_channels * s * s, out_channels))
        else:
            pool = nn.AvgPool2d(s, stride=s) if type_ == "avg_pool" else nn.MaxPool2d(s, stride=s)
            super().__init__(_conv3x3(in_channels, out_channels), pool)


class MLP(nn.Sequential):
    """Linear layers dims[0] -> dims[1] -> ... -> dims[-1] with ReLU between them."""

    def __init__(self, dims: Sequence[int]) -> None:
        if len(dims) < 2:
            raise ConfigError(f"dims={list(dims)!r}: expected at least an input and an output size")
        layers: List[nn.Module] = []
        for dim_in, dim_out in zip(dims[:-2], dims[1:-1]):
            layers += [nn.Linear(dim_in, dim_out), nn.ReLU()]
        super().__init__(*layers, nn.Linear(dims[-2], dims[-1]))


def _per_level(name: str, value: Any, count: int) -> List[Any]:
    """A per-level setting: a list of `count` values, or one value for every level."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ConfigError(f"{name}={list(value)!r}: expected {count} entries (one per level)")
        return list(value)
    return [value] * count


class ConvStack(nn.Module):
    """MoGe-2's multi-resolution conv stack over L = len(dim_res_blocks) levels, each level at twice
    the resolution of the previous one.

    forward(features: L maps or None) -> L maps. At level i: x = input_blocks[i](features[i]) (a
    1x1 conv to dim_res_blocks[i], or the map itself where dim_in[i] is None) added to the
    resampled x of level i-1 (level 0 starts from it), num_res_blocks[i] residual blocks, then the
    level's output = output_blocks[i](x) (a 1x1 conv to dim_out[i], or x where None), and x is
    resampled (resamplers[i]) to level i+1. Per-level arguments take a list or one value for all.
    """

    def __init__(
        self,
        dim_in: Union[Optional[int], Sequence[Optional[int]]],
        dim_res_blocks: Sequence[int],
        dim_out: Union[Optional[int], Sequence[Optional[int]]],
        resamplers: Union[str, Sequence[str]],
        dim_times_res_block_hidden: int = 1,
        num_res_blocks: Union[int, Sequence[int]] = 1,
        res_block_in_norm: str = "layer_norm",
        res_block_hidden_norm: str = "group_norm",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        levels = len(dim_res_blocks)
        dims_in = _per_level("dim_in", dim_in, levels)
        dims_out = _per_level("dim_out", dim_out, levels)
        kinds = _per_level("resamplers", resamplers, levels - 1)
        block_counts = _per_level("num_res_blocks", num_res_blocks, levels)
        for kind in kinds:
            check_choice("resamplers", kind, RESAMPLERS)
        check_choice("res_block_in_norm", res_block_in_norm, NORMS)
        check_choice("res_block_hidden_norm", res_block_hidden_norm, NORMS)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        for dim, count in zip(dim_res_blocks, block_counts):
            if count:
                check_group_norm("res_block_in_norm", res_block_in_norm, dim)
                check_group_norm("res_block_hidden_norm", res_block_hidden_norm, dim_times_res_block_hidden * dim)
        self.gradient_checkpointing = False

        def conv1x1_or_identity(dim_a: Optional[int], dim_b: int) -> nn.Module:
            return nn.Identity() if dim_a is None else nn.Conv2d(dim_a, dim_b, kernel_size=1)

        self.input_blocks = nn.ModuleList(conv1x1_or_identity(d, dim) for d, dim in zip(dims_in, dim_res_blocks))
        self.resamplers = nn.ModuleList(
            Resampler(dim_prev, dim_next, kind) for dim_prev, dim_next, kind
            in zip(dim_res_blocks[:-1], dim_res_blocks[1:], kinds))
        self.res_blocks = nn.ModuleList(
            nn.Sequential(*(ResidualConvBlock(dim, dim, dim_times_res_block_hidden * dim, activation=activation,
                                              in_norm=res_block_in_norm, hidden_norm=res_block_hidden_norm)
                            for _ in range(count)))
            for dim, count in zip(dim_res_blocks, block_counts))
        self.output_blocks = nn.ModuleList(
            nn.Identity() if d is None else nn.Conv2d(dim, d, kernel_size=1)
            for d, dim in zip(dims_out, dim_res_blocks))

    @property
    def num_levels(self) -> int:
        return len(self.res_blocks)

    def forward(self, features: Sequence[Optional[torch.Tensor]]) -> List[torch.Tensor]:
        outputs = []
        x: Optional[torch.Tensor] = None
        for level in range(self.num_levels):
            feature = features[level]
            if feature is not None:
                feature = self.input_blocks[level](feature)
                x = feature if x is None else x + feature
            if x is None:
                raise ValueError("ConvStack: the first level has no input feature map")
            for block in self.res_blocks[level]:
                x = run_checkpointed(block, x, self.gradient_checkpointing)
            outputs.append(self.output_blocks[level](x))
            if level < self.num_levels - 1:
                x = run_checkpointed(self.resamplers[level], x, self.gradient_checkpointing)
        return outputs


class V1Head(nn.Module):
    """MoGe-1's head: DINOv2 tokens -> one full-resolution map per entry of dim_out.

    forward(hidden_states: per used block a (tokens (B, h*w, C), class token) pair, height, width:
    the (resized) image size with h = height // 14, w = width // 14) -> [(B, d, height, width)
    for d in dim_out]. Each block's tokens go through their own 1x1 conv (`projects`) to dim_proj
    and the results are summed; then per entry of dim_upsample: concatenate the 2 UV channels,
    a conv_transpose x2 resampler and num_res_blocks residual blocks; then a bilinear resize to
    height x width, the UV channels again, and per output a 3x3 conv to last_conv_channels,
    last_res_blocks residual blocks, ReLU and a last_conv_size conv to the output channels.
    """

    def __init__(self, num_features: int, dim_in: int, dim_out: Sequence[int], dim_proj: int,
                 dim_upsample: Sequence[int], dim_times_res_block_hidden: int, num_res_blocks: int,
                 res_block_norm: str, last_res_blocks: int, last_conv_channels: int, last_conv_size: int) -> None:
        super().__init__()
        check_choice("res_block_norm", res_block_norm, ("group_norm", "layer_norm"))
        if num_res_blocks:
            for dim in dim_upsample:
                check_group_norm("res_block_norm", res_block_norm, dim_times_res_block_hidden * dim)
        if last_res_blocks:
            check_group_norm("res_block_norm", res_block_norm, dim_times_res_block_hidden * last_conv_channels)
        self.gradient_checkpointing = False

        def res_blocks(dim: int, count: int) -> List[nn.Module]:
            return [ResidualConvBlock(dim, dim, dim_times_res_block_hidden * dim, activation="relu",
                                      in_norm="layer_norm", hidden_norm=res_block_norm) for _ in range(count)]

        self.projects = nn.ModuleList(nn.Conv2d(dim_in, dim_proj, kernel_size=1) for _ in range(num_features))
        self.upsample_blocks = nn.ModuleList(
            nn.Sequential(Resampler(dim_prev + 2, dim_next, "conv_transpose"), *res_blocks(dim_next, num_res_blocks))
            for dim_prev, dim_next in zip([dim_proj, *dim_upsample[:-1]], dim_upsample))
        self.output_block = nn.ModuleList(
            nn.Sequential(
                _conv3x3(dim_upsample[-1] + 2, last_conv_channels),
                *res_blocks(last_conv_channels, last_res_blocks),
                nn.ReLU(),
                nn.Conv2d(last_conv_channels, channels, kernel_size=last_conv_size, padding=last_conv_size // 2,
                          padding_mode="replicate"),
            ) for channels in dim_out)

    def forward(self, hidden_states: Sequence[Tuple[torch.Tensor, torch.Tensor]], height: int,
                width: int) -> List[torch.Tensor]:
        rows, cols = height // 14, width // 14
        aspect_ratio = width / height
        x = torch.stack([project(tokens.transpose(1, 2).unflatten(2, (rows, cols)).contiguous())
                         for project, (tokens, _) in zip(self.projects, hidden_states)], dim=1).sum(dim=1)
        for stage in self.upsample_blocks:
            x = torch.cat([x, uv_channels(x.shape[0], x.shape[-2], x.shape[-1], aspect_ratio, x)], dim=1)
            for layer in stage:
                x = run_checkpointed(layer, x, self.gradient_checkpointing)
        x = F.interpolate(x, (height, width), mode="bilinear", align_corners=False)
        x = torch.cat([x, uv_channels(x.shape[0], height, width, aspect_ratio, x)], dim=1)
        return [run_checkpointed(block, x, self.gradient_checkpointing) for block in self.output_block]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_imagenet_normalisation(module: nn.Module) -> None:
    """Non-persistent (1, 3, 1, 1) buffers `image_mean` and `image_std` (DINOv2's input statistics)."""
    module.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)


def set_gradient_checkpointing(root: nn.Module, enabled: bool) -> None:
    """Switch activation recomputation on or off in every submodule that supports it."""
    for module in root.modules():
        if hasattr(module, "gradient_checkpointing"):
            module.gradient_checkpointing = bool(enabled)


def check_num_tokens_range(value: Any) -> Tuple[int, int]:
    """(low, high) token counts with 0 < low <= high."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not 0 < value[0] <= value[1]:
        raise ConfigError(f"num_tokens_range={value!r}: expected [low, high] token counts with 0 < low <= high")
    return int(value[0]), int(value[1])


def check_keys(name: str, given: Any, allowed: Sequence[str], required: Sequence[str] = ()) -> None:
    """ConfigError unless `given` is a dict whose keys are among `allowed` and include `required`."""
    if not isinstance(given, dict):
        raise ConfigError(f"{name}={given!r}: expected a dict with keys from {list(allowed)}")
    unknown = [key for key in given if key not in allowed]
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key; expected keys from {list(allowed)}")
    missing = [key for key in required if key not in given]
    if missing:
        raise ConfigError(f"{name}.{missing[0]}: missing (required: {list(required)})")
