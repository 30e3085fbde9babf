"""MoGe networks and DINOv2 backbone: sizes, remapping, gradient checkpointing, config and weight errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from recon_trainer.config import ConfigError
from recon_trainer.errors import UserError
from recon_trainer_plugins.moge import dinov2, modules
from recon_trainer_plugins.moge.checkpoint import network_from_config
from recon_trainer_plugins.moge.dinov2 import (BACKBONE_PRESETS, DinoVisionTransformer, backbone_arguments,
                                               build_backbone, load_backbone_weights)
from recon_trainer_plugins.moge.modules import REMAP_OUTPUTS, remap_points

from .tiny_networks import TINY_BACKBONE, head_config, v1_config, v2_config

def build(version, seed=0, **changes):
    torch.manual_seed(seed)
    return network_from_config(version, v1_config(**changes) if version == "v1" else v2_config(**changes))


def image(height, width, batch=1):
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(3))


# ---------------------------------------------------------------------------------------------- networks

def test_remap_points_formulas():
    raw = torch.randn(2, 4, 5, 3)
    xy, z = raw[..., :2], raw[..., 2:]
    torch.testing.assert_close(remap_points(raw, "linear"), raw)
    torch.testing.assert_close(remap_points(raw, "sinh"), torch.sinh(raw))
    torch.testing.assert_close(remap_points(raw, "exp"), torch.cat([xy * z.exp(), z.exp()], dim=-1))
    torch.testing.assert_close(remap_points(raw, "sinh_exp"), torch.cat([torch.sinh(xy), z.exp()], dim=-1))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_remap_output_is_applied_to_the_linear_output(version):
    picture = image(42, 56)
    with torch.no_grad():
        linear = build(version, remap_output="linear").eval()(picture, 30)["points"]
        for mode in REMAP_OUTPUTS:
            remapped = build(version, remap_output=mode).eval()(picture, 30)["points"]
            torch.testing.assert_close(remapped, remap_points(linear, mode), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_unknown_remap_output(version):
    with pytest.raises(ConfigError, match="model_config.remap_output='log': expected one of"):
        build(version, remap_output="log")


@pytest.mark.parametrize("version, size, num_tokens, backbone_size", [
    ("v1", (70, 84), 42, (70, 98)),  # x1.18 -> 82x99 -> multiples of 14
    ("v1", (70, 84), 100, (126, 140)),  # x1.83 -> 127x153
    ("v1", (30, 100), 20, (28, 112)),  # x1.14 -> 34x114
    ("v2", (49, 63), 42, (84, 98)),  # grid round(sqrt(42 / ar)) x round(sqrt(42 ar)) = 6 x 7
    ("v2", (49, 63), 100, (126, 154)),  # 9 x 11
    ("v2", (30, 100), 20, (28, 112)),  # 2 x 8
])
def test_num_tokens_sets_the_backbone_input_size(monkeypatch, version, size, num_tokens, backbone_size):
    network = build(version).eval()
    seen = []
    original = network.backbone.get_intermediate_layers

    def spy(x, *args, **kwargs):
        seen.append(tuple(x.shape[-2:]))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(network.backbone, "get_intermediate_layers", spy)
    with torch.no_grad():
        output = network(image(*size, batch=2), num_tokens)
    assert seen == [backbone_size]
    assert output["points"].shape == (2, *size, 3) and output["mask"].shape == (2, *size)
    if version == "v2":
        assert output["normal"].shape == (2, *size, 3) and output["metric_scale"].shape == (2,)
        torch.testing.assert_close(output["normal"].norm(dim=-1), torch.ones(2, *size))
        assert 0 <= output["mask"].min() and output["mask"].max() <= 1


def forward_and_gradients(network, picture):
    output = network(picture, 30)
    loss = sum((value.float() ** 2).mean() for value in output.values())
    network.zero_grad()
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in network.named_parameters() if p.grad is not None}
    return {key: value.detach() for key, value in output.items()}, gradients


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_gradient_checkpointing_gives_identical_outputs_and_gradients(monkeypatch, version):
    calls = []

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(type(function).__name__)
        return torch.utils.checkpoint.checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(modules, "checkpoint", counting_checkpoint)
    monkeypatch.setattr(dinov2, "checkpoint", counting_checkpoint)
    network = build(version).train()
    picture = image(42, 56)
    plain_output, plain_gradients = forward_and_gradients(network, picture)
    assert calls == []  # off by default
    network.enable_gradient_checkpointing(True)
    output, gradients = forward_and_gradients(network, picture)
    assert "Block" in calls and "ResidualConvBlock" in calls and "Resampler" in calls
    for key in plain_output:
        torch.testing.assert_close(output[key], plain_output[key], atol=1e-6, rtol=1e-6)
    assert sorted(gradients) == sorted(plain_gradients)
    for name in gradients:
        torch.testing.assert_close(gradients[name], plain_gradients[name], atol=1e-6, rtol=1e-5, msg=name)
    calls.clear()
    with torch.no_grad():
        network(picture, 30)
    network.enable_gradient_checkpointing(False)
    network(picture, 30)
    assert calls == []  # nothing to recompute without gradients, and switched off


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_network_attributes(version):
    network = build(version)
    assert network.version == version
    assert network.num_tokens_range == (30, 60)
    assert network.mask_threshold == 0.5
    backbone_ids = {id(p) for p in network.backbone.parameters()}
    for name, parameter in network.named_parameters():
        assert (id(parameter) in backbone_ids) == name.startswith(network.backbone_path + "."), name
    assert not any("image_mean" in key or "image_std" in key for key in network.state_dict())


def test_v1_legacy_trained_area_range():
    config = v1_config(trained_area_range=[30 * 14 ** 2, 60 * 14 ** 2 + 5])
    del config["num_tokens_range"]
    assert network_from_config("v1", config).num_tokens_range == (30, 60)


def test_v2_without_optional_heads():
    config = v2_config()
    for head in ("mask_head", "normal_head", "scale_head"):
        del config[head]
    network = network_from_config("v2", config).eval()
    with torch.no_grad():
        assert set(network(image(42, 56), 30)) == {"points"}


@pytest.mark.parametrize("version, changes, message", [
    ("v1", {"dim_projection": 8}, "model_config.dim_projection: unknown key"),
    ("v1", {"encoder": "dinov2_vitl"}, "backbone 'dinov2_vitl': expected one of .*did you mean"),
    ("v1", {"res_block_norm": "group_norm"}, "res_block_norm='group_norm' on 16 channels"),
    ("v1", {"intermediate_layers": 5}, "intermediate_layers=5: expected a count in 1..3"),
    ("v1", {"num_tokens_range": [60, 30]}, "num_tokens_range=\\[60, 30\\]"),
    ("v2", {"neck": dict(v2_config()["neck"], resamplers=["conv_transpose", "cubic"])},
     "model_config.neck.resamplers='cubic'"),
    ("v2", {"neck": dict(v2_config()["neck"], dim_in=[18, 2])}, "model_config.neck.dim_in=\\[18, 2\\]: expected 3"),
    ("v2", {"mask_head": dict(head_config(1), colour=1)}, "model_config.mask_head.colour: unknown key"),
    ("v2", {"encoder": "dinov2_vitl14"}, "model_config.encoder='dinov2_vitl14': expected a dict"),
    ("v2", {"backbone_override": {"depth": 2, "width": 3}}, "backbone_override key 'width'"),
])
def test_config_errors_name_the_key(version, changes, message):
    config = v1_config(**changes) if version == "v1" else v2_config(**changes)
    with pytest.raises(ConfigError, match=message):
        network_from_config(version, config)


# ---------------------------------------------------------------------------------------------- DINOv2

def tiny_backbone(**changes):
    torch.manual_seed(0)
    return DinoVisionTransformer(**{**TINY_BACKBONE, "depth": 4, **changes}).eval()


@pytest.mark.parametrize("registers", [0, 4])
def test_get_intermediate_layers_shapes(registers):
    backbone = tiny_backbone(num_register_tokens=registers)
    x = torch.randn(2, 3, 28, 70)  # a 2 x 5 grid
    with torch.no_grad():
        last_two = backbone.get_intermediate_layers(x, 2, return_class_token=True)
        chosen = backbone.get_intermediate_layers(x, [3, 0], return_class_token=True)
        maps = backbone.get_intermediate_layers(x, [0, 3], reshape=True)
        raw = backbone.get_intermediate_layers(x, [3], norm=False)
    assert len(last_two) == 2 and all(t.shape == (2, 10, 32) and c.shape == (2, 32) for t, c in last_two)
    torch.testing.assert_close(chosen[1][0], last_two[1][0])  # block 3 in either spelling, in block order
    assert [m.shape for m in maps] == [(2, 32, 2, 5)] * 2
    torch.testing.assert_close(maps[1].flatten(2).transpose(1, 2), last_two[1][0])
    torch.testing.assert_close(backbone.norm(raw[0]), last_two[1][0])
    torch.testing.assert_close(backbone(x), last_two[1][1])


def test_backbone_rejects_bad_inputs():
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        backbone.get_intermediate_layers(torch.randn(1, 3, 28, 30), 1)
    for layers in (0, 5, [1, 1], [4]):
        with pytest.raises(ConfigError, match="intermediate_layers"):
            backbone.get_intermediate_layers(torch.randn(1, 3, 28, 28), layers)


def test_position_embedding_on_the_native_grid_is_the_parameter():
    backbone = tiny_backbone()
    assert backbone.position_embedding(4, 4, torch.float16) is backbone.pos_embed


def cubic_sample(values, coordinate, a=-0.75):
    """1-D cubic convolution (Keys, a = -0.75 as torch's bicubic) of `values` at `coordinate`,
    indices clamped to the border."""
    def weight(t):
        t = abs(t)
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1 if t <= 1 else a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a

    base = math.floor(coordinate)
    return sum(weight(coordinate - k) * values[min(max(k, 0), len(values) - 1)] for k in range(base - 1, base + 3))


@pytest.mark.parametrize("offset", [0.1, 0.0])
def test_position_embedding_resize_maps_coordinates_as_dinov2(offset):
    """Output position i samples the 8 x 8 table at (i + 0.5) * 8 / (n + offset) - 0.5 (DINOv2's
    scale factors (n + offset) / 8; offset 0: the output size n), bicubic, on a non-square grid."""
    backbone = tiny_backbone(interpolate_offset=offset, img_size=112)  # an 8 x 8 grid
    side, out_rows, out_cols = 8, 3, 5
    ramp = [float(k * k) for k in range(side)]
    rows, cols = torch.meshgrid(torch.tensor(ramp), torch.tensor(ramp), indexing="ij")
    table = torch.zeros(1, 1 + side * side, 32)
    table[0, 0] = 7.0
    table[0, 1:, 0], table[0, 1:, 1] = cols.flatten(), rows.flatten()
    with torch.no_grad():
        backbone.pos_embed.copy_(table)
    embedding = backbone.position_embedding(out_rows, out_cols, torch.float32)
    assert embedding.shape == (1, 1 + out_rows * out_cols, 32)
    assert torch.all(embedding[0, 0] == table[0, 0])
    grid = embedding[0, 1:].reshape(out_rows, out_cols, 32)
    expected_cols = torch.tensor([cubic_sample(ramp, (j + 0.5) * side / (out_cols + offset) - 0.5)
                                  for j in range(out_cols)])
    expected_rows = torch.tensor([cubic_sample(ramp, (i + 0.5) * side / (out_rows + offset) - 0.5)
                                  for i in range(out_rows)])
    torch.testing.assert_close(grid[:, :, 0], expected_cols.expand(out_rows, -1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(grid[:, :, 1], expected_rows[:, None].expand(-1, out_cols), atol=1e-4, rtol=1e-5)


def test_presets_and_swiglu():
    assert {"dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14", "dinov2_vitl14_reg"} <= set(
        BACKBONE_PRESETS)
    large = backbone_arguments("dinov2_vitl14")
    assert (large["embed_dim"], large["depth"], large["num_heads"], large["img_size"]) == (1024, 24, 16, 518)
    assert backbone_arguments("dinov2_vitg14")["ffn_layer"] == "swiglu"
    registers = backbone_arguments("dinov2_vitb14_reg")
    assert (registers["num_register_tokens"], registers["interpolate_offset"]) == (4, 0.0)
    giant_like = build_backbone("dinov2_vitg14", {"embed_dim": 32, "depth": 1, "num_heads": 2})
    state = giant_like.state_dict()
    hidden = (int(32 * 4 * 2 / 3) + 7) // 8 * 8
    assert state["blocks.0.mlp.w12.weight"].shape == (2 * hidden, 32)
    assert state["blocks.0.mlp.w3.weight"].shape == (32, hidden)
    with torch.no_grad():
        assert giant_like(torch.randn(1, 3, 28, 42)).shape == (1, 32)


def test_state_dict_names_are_dinov2s():
    names = set(tiny_backbone(depth=1, num_register_tokens=4).state_dict())
    block = {f"blocks.0.{part}.{kind}" for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
             for kind in ("weight", "bias")} | {"blocks.0.ls1.gamma", "blocks.0.ls2.gamma"}
    assert names == {"cls_token", "pos_embed", "register_tokens", "mask_token", "patch_embed.proj.weight",
                     "patch_embed.proj.bias", "norm.weight", "norm.bias"} | block


def test_load_backbone_weights_round_trip_and_errors(tmp_path):
    source, target = tiny_backbone(), tiny_backbone()
    with torch.no_grad():
        source.cls_token.fill_(0.25)
    path = tmp_path / "dinov2.pth"
    torch.save(source.state_dict(), path)
    load_backbone_weights(target, str(path))
    assert torch.all(target.cls_token == 0.25)

    missing = tmp_path / "absent.pth"
    with pytest.raises(UserError, match="no such file") as error:
        load_backbone_weights(target, str(missing))
    assert str(missing) in str(error.value)

    wrong = tiny_backbone(depth=3, embed_dim=64)
    with pytest.raises(UserError, match="unexpected blocks.3.*wrong shape") as error:
        load_backbone_weights(wrong, str(path))
    assert "\n" not in str(error.value) and str(path) in str(error.value)

    garbled = tmp_path / "garbled.pth"
    garbled.write_text("not weights")
    with pytest.raises(UserError, match="not a readable torch file"):
        load_backbone_weights(target, str(garbled))


def test_conv_transpose_resampler_starts_as_nearest_upsampling():
    """Every tap of the transposed conv starts as the top-left one: a 1x1 conv, then nearest x2."""
    upsample = modules.Resampler(4, 6, "conv_transpose")[0]
    x = torch.randn(1, 4, 3, 5)
    pointwise = upsample.weight[:, :, :1, :1].transpose(0, 1)
    with torch.no_grad():
        expected = F.interpolate(F.conv2d(x, pointwise, upsample.bias), scale_factor=2, mode="nearest")
        torch.testing.assert_close(upsample(x), expected)
