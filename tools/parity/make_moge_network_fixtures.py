"""Make the parity fixtures of the MoGe networks: tests/fixtures/moge/v1_network.pt and v2_network.pt.

Builds small MoGe-1 and MoGe-2 models with the ORIGINAL code (imported from --moge_repo) and random
weights, runs them on a fixed random image and stores the config, the original state dict and the
outputs. The weights are random, except that the point output follows the view-plane UV (close
to a pinhole camera) and the mask passes about half of the pixels, so that `infer` is well posed
(make_pinhole_like, centre_mask). The original builds its DINOv2 backbone with the torch-hub
builder named in the config; the script replaces the builders of "dinov2_vits14" and
"dinov2_vits14_reg" by tiny transformers (BACKBONE_OVERRIDE: embed 32, depth 4, 2 heads, MLP ratio
2, an 8 x 8 position grid) with the hub ones' other settings (the _reg one: 4 registers,
antialiased, offset 0). Not run by the test suite; run it as

    PYTHONPATH=/work/ref/MoGe:/work/ref/utils3d:/work/ref/deps python \\
        tools/parity/make_moge_network_fixtures.py --moge_repo /work/ref/MoGe --out tests/fixtures/moge

Stored keys per file (tensors float32 unless said):
  model_config            the original constructor's kwargs (V1_CONFIG / V2_CONFIG)
  backbone_override       the tiny DINOv2 arguments replacing the preset's (BACKBONE_OVERRIDE)
  model                   the original model's state dict (MoGe's key layout)
  image (1, 3, H, W)      in [0, 1] (IMAGE_SIZES: v1 70x84, v2 49x63);  num_tokens (int)
  points, mask, [normal, metric_scale]   the original forward(image, num_tokens) outputs
  infer_points, infer_depth, infer_mask (bool), infer_intrinsics, [infer_normal]
                          the original infer(image, num_tokens=num_tokens, use_fp16=False)
                          (fov_x None, force_projection and apply_mask True)
  backbone_input (1, 3, 28, 56), backbone_layers (int64), backbone_tokens (L, 1, 8, 32),
  backbone_class_tokens (L, 1, 32)
                          the original backbone's get_intermediate_layers(backbone_input,
                          backbone_layers, return_class_token=True) on a non-square 2 x 4 grid
"""
import os
from functools import partial

import torch
from reference import reference_args

NUM_TOKENS = 42
# v1: the 70x84 image is resized to 82x99 (a 5x7 grid); v2: a 6x7 grid, decoded up to 96x112
IMAGE_SIZES = {"v1": (70, 84), "v2": (49, 63)}
BACKBONE_OVERRIDE = {"embed_dim": 32, "depth": 4, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 112}
REGISTER_SETTINGS = {"num_register_tokens": 4, "interpolate_antialias": True, "interpolate_offset": 0.0}

V1_CONFIG = {
    "encoder": "dinov2_vits14", "intermediate_layers": 3, "dim_proj": 32, "dim_upsample": [16, 8, 8],
    "dim_times_res_block_hidden": 1, "num_res_blocks": 1, "remap_output": "exp", "res_block_norm": "layer_norm",
    "num_tokens_range": [30, 60], "last_res_blocks": 1, "last_conv_channels": 8, "last_conv_size": 3,
    "mask_threshold": 0.5,
}


def _head(dim_out: int, **extra) -> dict:
    return {"dim_in": [32, 16, 8, 8, 8], "dim_out": [None, None, None, None, dim_out],
            "dim_res_blocks": [16, 8, 8, 8, 8], "num_res_blocks": [0, 1, 1, 1, 0],
            "res_block_in_norm": "none", "res_block_hidden_norm": "none",
            "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"], **extra}


V2_CONFIG = {
    "encoder": {"backbone": "dinov2_vits14_reg", "intermediate_layers": [0, 1, 3], "dim_out": 32},
    "neck": {"dim_in": [34, 2, 2, 2, 2], "dim_out": None, "dim_res_blocks": [32, 16, 8, 8, 8],
             "num_res_blocks": [0, 1, 0, 0, 0], "dim_times_res_block_hidden": 2, "res_block_in_norm": "layer_norm",
             "res_block_hidden_norm": "group_norm",
             "resamplers": ["conv_transpose", "pixel_shuffle", "nearest", "bilinear"]},
    "points_head": _head(3),
    "mask_head": _head(1, num_res_blocks=1, activation="leaky_relu"),
    "normal_head": _head(3, activation="silu", res_block_in_norm="instance_norm", res_block_hidden_norm="layer_norm"),
    "scale_head": {"dims": [32, 16, 1]},
    "remap_output": "exp",
    "num_tokens_range": [30, 60],
}


def patch_hub_builders() -> None:
    """Make the original's hub builders of dinov2_vits14[_reg] return tiny random transformers."""
    from moge.model.dinov2.hub import backbones
    from moge.model.dinov2.layers import MemEffAttention, NestedTensorBlock
    from moge.model.dinov2.models.vision_transformer import DinoVisionTransformer

    def tiny(registers: bool, pretrained: bool = False, **_):
        assert not pretrained
        return DinoVisionTransformer(
            patch_size=14, init_values=1.0, ffn_layer="mlp", block_chunks=0,
            block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention), **BACKBONE_OVERRIDE,
            **(REGISTER_SETTINGS if registers else {}))

    backbones.dinov2_vits14 = partial(tiny, False)
    backbones.dinov2_vits14_reg = partial(tiny, True)


@torch.no_grad()
def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Make the tokens, norms, LayerScales and biases non-trivial (their inits are 0, 1 or ~1e-6)."""
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        if name.endswith(("cls_token", "register_tokens", "mask_token", "pos_embed")):
            parameter.copy_(0.5 * noise)
        elif parameter.dim() == 1:
            parameter.add_(0.1 * noise)


def _last_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)][-1]


def _pass_channels(conv: torch.nn.Conv2d, sources: list, bias: float = 0.0) -> None:
    """Make output channel i of `conv` copy input channel sources[i] (centre tap) plus `bias`."""
    centre = conv.kernel_size[0] // 2
    for channel, source in enumerate(sources):
        conv.weight[channel].zero_()
        conv.weight[channel, source, centre, centre] = 1.0
        conv.bias[channel] = bias


@torch.no_grad()
def make_pinhole_like(model: torch.nn.Module, version: str) -> None:
    """Route the view-plane UV channels to the raw x, y outputs and damp the raw z, so that the
    point map is close to a pinhole camera's (focal ~1, depth ~1) and infer's focal/shift recovery
    is well posed. v1: through the points output block (+1 before its ReLU, -1 after); v2: through
    the finest level of the neck and of the points head (the level's resampled input is zeroed on
    those channels)."""
    if version == "v1":
        block = model.head.output_block[0]
        first, residual, last = block[0], block[1], block[-1]
        uv = first.in_channels - 2
        _pass_channels(first, [uv, uv + 1], bias=1.0)
        residual.layers[-1].weight[:2].zero_()
        residual.layers[-1].bias[:2].zero_()
        _pass_channels(last, [0, 1], bias=-1.0)
    else:
        finest = len(model.neck.res_blocks) - 1
        for stack in (model.neck, model.points_head):
            _pass_channels(stack.input_blocks[finest], [0, 1])
            resampled = _last_conv(stack.resamplers[finest - 1])
            resampled.weight[:2].zero_()
            resampled.bias[:2].zero_()
        last = model.points_head.output_blocks[finest]
        _pass_channels(last, [0, 1])
    last.weight[2].mul_(0.05)
    last.bias[2] = 0.0


@torch.no_grad()
def centre_mask(model: torch.nn.Module, version: str, image: torch.Tensor) -> None:
    """Shift the mask output's bias so that about half of the pixels pass infer's threshold."""
    mask = model(image, NUM_TOKENS)["mask"]
    head = model.head.output_block[1] if version == "v1" else model.mask_head.output_blocks[-1]
    conv = _last_conv(head)
    if version == "v1":
        conv.bias += model.mask_threshold - mask.median()
    else:
        conv.bias -= torch.logit(mask.median())


def backbone_case(backbone: torch.nn.Module, generator: torch.Generator, layers: list) -> dict:
    x = torch.randn(1, 3, 28, 56, generator=generator)
    outputs = backbone.get_intermediate_layers(x, layers, return_class_token=True)
    return {"backbone_input": x, "backbone_layers": torch.tensor(layers),
            "backbone_tokens": torch.stack([tokens for tokens, _ in outputs]),
            "backbone_class_tokens": torch.stack([cls for _, cls in outputs])}


def make_fixture(version: str) -> dict:
    from moge.model.v1 import MoGeModel as V1Model
    from moge.model.v2 import MoGeModel as V2Model

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1 if version == "v1" else 2)
    config = V1_CONFIG if version == "v1" else V2_CONFIG
    model = (V1Model if version == "v1" else V2Model)(**config)
    randomise(model, generator)
    make_pinhole_like(model, version)
    model.eval()
    image = torch.rand(1, 3, *IMAGE_SIZES[version], generator=generator)
    centre_mask(model, version, image)
    with torch.no_grad():
        outputs = model(image, NUM_TOKENS)
    inferred = model.infer(image, num_tokens=NUM_TOKENS, use_fp16=False)
    backbone = model.backbone if version == "v1" else model.encoder.backbone
    with torch.no_grad():
        backbone_outputs = backbone_case(backbone, generator, [1, 3] if version == "v1" else [0, 2, 3])
    return {
        "model_config": config,
        "backbone_override": BACKBONE_OVERRIDE,
        "model": {key: value.clone() for key, value in model.state_dict().items()},
        "image": image,
        "num_tokens": NUM_TOKENS,
        **{key: value.clone() for key, value in outputs.items()},
        **{f"infer_{key}": value.clone() for key, value in inferred.items()},
        **backbone_outputs,
    }


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "v1_network.pt and v2_network.pt")
    patch_hub_builders()
    for version in ("v1", "v2"):
        fixture = make_fixture(version)
        path = os.path.join(args.out, f"{version}_network.pt")
        torch.save(fixture, path)
        outputs = sorted(key for key, value in fixture.items() if isinstance(value, torch.Tensor))
        print(f"{path}: {os.path.getsize(path)} bytes; tensors {outputs}")


if __name__ == "__main__":
    main()
