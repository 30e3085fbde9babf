"""MoGeV2Network: the MoGe-2 network (DINOv2 encoder, ConvStack neck, ConvStack heads, scale MLP)
as MoGe's `moge/model/v2.py`."""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from recon_trainer.config import ConfigError

from .dinov2 import PATCH_SIZE, DinoVisionTransformer, build_backbone
from .modules import (MLP, REMAP_OUTPUTS, ConvStack, check_choice, check_keys, check_num_tokens_range,
                      register_imagenet_normalisation, remap_points, set_gradient_checkpointing, uv_channels)

MAP_HEADS = ("points_head", "mask_head", "normal_head")  # ConvStack heads, in MoGe's construction order


class DINOv2Encoder(nn.Module):
    """[0, 1] image -> summed projected DINOv2 features and the last used block's class token.

    forward(image (B, 3, H, W), rows, cols) resizes the image (bilinear, antialiased) to
    (rows * 14, cols * 14), normalises it with the ImageNet statistics, takes the blocks
    `intermediate_layers` selects (an int: the last n; a list: those indices), projects each
    block's normalised patch tokens with its own 1x1 conv to dim_out and sums them:
    returns ((B, dim_out, rows, cols), class token (B, D)).
    """

    image_mean: torch.Tensor
    image_std: torch.Tensor

    def __init__(self, backbone: str, intermediate_layers: Union[int, Sequence[int]], dim_out: int,
                 backbone_override: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.intermediate_layers = intermediate_layers
        self.backbone: DinoVisionTransformer = build_backbone(backbone, backbone_override)
        num_features = len(self.backbone.block_indices(intermediate_layers))
        self.output_projections = nn.ModuleList(
            nn.Conv2d(self.backbone.embed_dim, dim_out, kernel_size=1) for _ in range(num_features))
        register_imagenet_normalisation(self)

    def forward(self, image: torch.Tensor, rows: int, cols: int) -> Tuple[torch.Tensor, torch.Tensor]:
        resized = F.interpolate(image, (rows * PATCH_SIZE, cols * PATCH_SIZE), mode="bilinear", align_corners=False,
                                antialias=True)
        resized = (resized - self.image_mean) / self.image_std
        layers = self.backbone.get_intermediate_layers(resized, n=self.intermediate_layers, return_class_token=True)
        projected = [project(tokens.transpose(1, 2).unflatten(2, (rows, cols)).contiguous())
                     for project, (tokens, _) in zip(self.output_projections, layers)]
        return torch.stack(projected, dim=1).sum(dim=1), layers[-1][1]


def _argument_names(cls: type, required_only: bool = False) -> List[str]:
    """The constructor arguments of `cls` a config may give (those without a default: only those)."""
    return [name for name, parameter in inspect.signature(cls).parameters.items() if name != "backbone_override"
            and not (required_only and parameter.default is not inspect.Parameter.empty)]


class MoGeV2Network(nn.Module):
    """MoGe-2: image -> affine-invariant point map (metric up to `metric_scale`), mask, normals, scale.

    Constructor arguments are the keys of a released MoGe-2 `model_config`: `encoder`
    (DINOv2Encoder arguments: backbone, intermediate_layers, dim_out), `neck` and the optional
    `points_head`, `mask_head`, `normal_head` (ConvStack arguments), the optional `scale_head`
    (MLP arguments: dims), `remap_output`, `num_tokens_range`; plus `backbone_override`
    (DinoVisionTransformer arguments replacing those of the encoder's preset).

    forward(image (B, 3, H, W) in [0, 1], num_tokens): with ar = W / H the token grid is
    round(sqrt(num_tokens / ar)) x round(sqrt(num_tokens * ar)); the encoder's map plus the 2 UV
    channels feeds the neck's level 0 and UV alone its finer levels (each twice the previous
    resolution); each map head decodes the neck's outputs and its finest level is resized to H x W
    (bilinear). Returns, for the heads present: {"points": (B, H, W, 3) remapped with
    `remap_output`, "mask": (B, H, W) sigmoid probability, "normal": (B, H, W, 3) unit vectors,
    "metric_scale": (B,) exp of the scale MLP on the class token}. Post-processing runs in float32.
    """

    version = "v2"
    backbone_path = "encoder.backbone"  # prefix of the backbone's parameter names
    mask_threshold = 0.5  # MoGe-2's infer thresholds the mask probability at 0.5
    # the keys each nested dict of the config may hold
    NESTED_CLASSES: Dict[str, type] = {"encoder": DINOv2Encoder, "neck": ConvStack,
                                       **{name: ConvStack for name in MAP_HEADS}, "scale_head": MLP}
    NESTED_KEYS: Dict[str, List[str]] = {name: _argument_names(cls) for name, cls in NESTED_CLASSES.items()}

    def __init__(
        self,
        encoder: Dict[str, Any],
        neck: Dict[str, Any],
        points_head: Optional[Dict[str, Any]] = None,
        mask_head: Optional[Dict[str, Any]] = None,
        normal_head: Optional[Dict[str, Any]] = None,
        scale_head: Optional[Dict[str, Any]] = None,
        remap_output: str = "linear",
        num_tokens_range: Sequence[int] = (1200, 3600),
        backbone_override: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        check_choice("remap_output", remap_output, REMAP_OUTPUTS)
        self.remap_output = remap_output
        self.num_tokens_range = check_num_tokens_range(num_tokens_range)
        given = {"encoder": encoder, "neck": neck, "points_head": points_head, "mask_head": mask_head,
                 "normal_head": normal_head, "scale_head": scale_head}
        for name, config in given.items():
            if config is not None or name in ("encoder", "neck"):
                required = _argument_names(self.NESTED_CLASSES[name], required_only=True)
                check_keys(name, config, self.NESTED_KEYS[name], required)
        self.encoder = _scoped("encoder", lambda: DINOv2Encoder(**encoder, backbone_override=backbone_override))
        self.neck = _scoped("neck", lambda: ConvStack(**neck))
        self.head_names: Tuple[str, ...] = tuple(name for name in MAP_HEADS if given[name] is not None)
        for name in self.head_names:
            setattr(self, name, _scoped(name, lambda config=given[name]: ConvStack(**config)))
        if scale_head is not None:
            self.scale_head = _scoped("scale_head", lambda: MLP(**scale_head))
        else:
            self.scale_head = None

    @property
    def backbone(self) -> DinoVisionTransformer:
        return self.encoder.backbone

    @property
    def tapped_layers(self) -> Union[int, Sequence[int]]:
        """The backbone blocks the head reads (DINOv2's get_intermediate_layers `n`)."""
        return self.encoder.intermediate_layers

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute the backbone blocks', neck's and heads' activations in the backward pass."""
        set_gradient_checkpointing(self, enabled)

    def forward(self, image: torch.Tensor, num_tokens: int) -> Dict[str, torch.Tensor]:
        batch, _, height, width = image.shape
        aspect_ratio = width / height
        rows, cols = round((num_tokens / aspect_ratio) ** 0.5), round((num_tokens * aspect_ratio) ** 0.5)
        if min(rows, cols) < 1:
            raise ValueError(f"num_tokens={num_tokens} gives an empty token grid for a {height}x{width} image")
        features, class_token = self.encoder(image, rows, cols)
        levels: List[torch.Tensor] = []
        for level in range(self.neck.num_levels):
            uv = uv_channels(batch, rows * 2 ** level, cols * 2 ** level, aspect_ratio, image)
            levels.append(torch.cat([features, uv], dim=1) if level == 0 else uv)
        levels = self.neck(levels)
        maps = {name: F.interpolate(getattr(self, name)(levels)[-1].float(), (height, width), mode="bilinear",
                                    align_corners=False)
                for name in self.head_names}
        output = {}
        if "points_head" in maps:
            output["points"] = remap_points(maps["points_head"].permute(0, 2, 3, 1), self.remap_output)
        if "normal_head" in maps:
            output["normal"] = F.normalize(maps["normal_head"].permute(0, 2, 3, 1), dim=-1)
        if "mask_head" in maps:
            output["mask"] = maps["mask_head"].squeeze(1).sigmoid()
        if self.scale_head is not None:
            output["metric_scale"] = self.scale_head(class_token).float().squeeze(1).exp()
        return output


def _scoped(name: str, build: Any) -> nn.Module:
    """build(), with a ConfigError's message prefixed by the config key `name`."""
    try:
        return build()
    except ConfigError as error:
        raise ConfigError(f"{name}.{error}") from error
