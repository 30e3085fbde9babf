"""DUSt3R network: 2-D RoPE against a per-position reference, parity with the original code, and
reading released-style checkpoint files.

The fixtures tests/fixtures/spann3r/dust3r_pair_{linear,dpt}.pt hold a tiny original model's
args.model string, its state dict (original key layout), fixed input pairs with the original's
outputs, and the key shapes of a released model (tools/parity/make_dust3r_fixtures.py).
"""
import argparse
import dataclasses
import math
import os

import pytest
import torch

from recon_trainer.config.errors import ConfigError
from recon_trainer.errors import DataFileError
from recon_trainer_plugins.spann3r.dust3r_checkpoint import (load_dust3r, parse_model_string,
                                                             read_dust3r_checkpoint)
from recon_trainer_plugins.spann3r.dust3r_network import DUSt3RArchitecture, DUSt3RNetwork
from recon_trainer_plugins.spann3r.rope import PositionGetter, RoPE2D

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "spann3r")
ATOL = RTOL = 1e-4
README_224_LINEAR = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', "
                     "output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
                     "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, "
                     "dec_num_heads=12)")
README_512_DPT = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
                  "img_size=(512, 512), head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), "
                  "conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
                  "dec_embed_dim=768, dec_depth=12, dec_num_heads=12)")


def load_fixture(head):
    return torch.load(os.path.join(FIXTURES, f"dust3r_pair_{head}.pt"), weights_only=True)


def released_file(tmp_path, model_string, state, name="dust3r.pth"):
    """Write {'model': state, 'args': Namespace(model=...)} as DUSt3R's training script saves it."""
    path = tmp_path / name
    torch.save({"model": state, "args": argparse.Namespace(model=model_string, lr=1e-4), "epoch": 3}, path)
    return str(path)


def rope_reference(tokens, positions, freq=100.0):
    """Rotate every (i, i + D/2) channel pair of each half by position * freq ** (-2i / D), one token at a time."""
    out = torch.empty_like(tokens, dtype=torch.float64)
    half = tokens.shape[-1] // 2
    for b in range(tokens.shape[0]):
        for n in range(tokens.shape[2]):
            for axis in range(2):
                pos = float(positions[b, n, axis])
                for i in range(half // 2):
                    angle = pos * freq ** (-2.0 * i / half)
                    u = tokens[b, :, n, axis * half + i].double()
                    v = tokens[b, :, n, axis * half + half // 2 + i].double()
                    out[b, :, n, axis * half + i] = u * math.cos(angle) - v * math.sin(angle)
                    out[b, :, n, axis * half + half // 2 + i] = v * math.cos(angle) + u * math.sin(angle)
    return out


def test_rope_matches_a_per_position_rotation():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 3, 7, 16, generator=generator)
    positions = torch.randint(0, 40, (2, 7, 2), generator=generator)
    rotated = RoPE2D(freq=100.0)(tokens, positions)
    assert rotated.dtype == tokens.dtype
    torch.testing.assert_close(rotated.double(), rope_reference(tokens, positions), atol=1e-5, rtol=1e-5)


def test_rope_attention_depends_only_on_the_offset():
    generator = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 1, 1, 1, 8, generator=generator).double()
    rope = RoPE2D()

    def score(p, r):
        return (rope(q, torch.tensor([[p]])) * rope(k, torch.tensor([[r]]))).sum()

    torch.testing.assert_close(score((3, 5), (1, 9)), score((10, 7), (8, 11)), atol=1e-5, rtol=1e-5)  # float32 angles


def test_position_getter_is_row_major():
    positions = PositionGetter()(2, 2, 3, torch.device("cpu"))
    assert positions.shape == (2, 6, 2) and positions.dtype == torch.int64
    assert positions[1].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


@pytest.mark.parametrize("head", ["linear", "dpt"])
def test_forward_matches_the_original(tmp_path, head):
    fixture = load_fixture(head)
    network = load_dust3r(released_file(tmp_path, fixture["model_string"], fixture["model"])).eval()
    assert network.arch.head_type == head
    for name, case in fixture["cases"].items():
        with torch.no_grad():
            predictions = network(case["img1"], case["img2"], case["true_shape1"], case["true_shape2"])
        outputs = {"pts3d_1": predictions.ref_points[:, 0], "conf_1": predictions.ref_conf[:, 0],
                   "pts3d_2": predictions.tgt_points[:, 0], "conf_2": predictions.tgt_conf[:, 0]}
        for key, value in outputs.items():
            expected = case[key]
            assert value.shape == expected.shape, (name, key)
            diff = (value - expected).abs().max().item()
            print(f"{head} {name} {key}: max abs diff {diff:.2e}")
            torch.testing.assert_close(value, expected, atol=ATOL, rtol=RTOL, msg=lambda m: f"{name} {key}: {m}")


def test_api_shapes_of_a_tiny_dpt_network():
    fixture = load_fixture("dpt")
    arch = parse_model_string(fixture["model_string"], "fixture")
    network = DUSt3RNetwork(arch).eval()
    case = fixture["cases"]["landscape"]
    with torch.no_grad():
        feat, pos = network.encode_image(case["img1"], case["true_shape1"])
        assert feat.shape == (1, 6, arch.enc_embed_dim) and pos.shape == (1, 6, 2)
        dec1, dec2 = network.decode(feat, pos, feat, pos)
        assert len(dec1) == len(dec2) == arch.dec_depth + 1
        assert dec1[0].shape[-1] == arch.enc_embed_dim and dec1[-1].shape[-1] == arch.dec_embed_dim
        result = network.head(2, dec2, case["true_shape1"])
    assert result["pts3d"].shape == (1, 32, 48, 3) and result["conf"].shape == (1, 32, 48)
    assert result["conf"].min() >= 1
    assert not any(p.requires_grad for p in (network.mask_token,
                                             *network.downstream_head1.dpt.scratch.refinenet4.resConfUnit1.parameters()))


@pytest.mark.parametrize("head", ["linear", "dpt"])
def test_every_trainable_parameter_gets_a_gradient_and_heads_stay_float32(head):
    fixture = load_fixture(head)
    network = DUSt3RNetwork(parse_model_string(fixture["model_string"], "fixture"))
    case = next(iter(fixture["cases"].values()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        predictions = network(case["img1"], case["img2"], case["true_shape1"], case["true_shape2"])
    assert predictions.ref_points.dtype == predictions.tgt_conf.dtype == torch.float32
    (predictions.ref_points.sum() + predictions.tgt_points.sum() + predictions.ref_conf.sum()
     + predictions.tgt_conf.sum()).backward()
    without = [name for name, p in network.named_parameters() if p.requires_grad and p.grad is None]
    assert without == []


@pytest.mark.parametrize("head", ["linear", "dpt"])
def test_released_models_have_the_original_keys_and_shapes(head):
    fixture = load_fixture(head)
    arch = parse_model_string(fixture["released_model_string"], "fixture")
    with torch.device("meta"):
        network = DUSt3RNetwork(arch)
    ours = {key: list(value.shape) for key, value in network.state_dict().items()}
    assert ours == fixture["released_shapes"]


@pytest.mark.parametrize("model_string, expected", [
    (README_224_LINEAR, DUSt3RArchitecture(img_size=(224, 224))),
    (README_512_DPT, DUSt3RArchitecture(img_size=(512, 512), head_type="dpt", patch_embed_cls="ManyAR_PatchEmbed")),
])
def test_the_readme_model_strings_parse(model_string, expected):
    assert parse_model_string(model_string, "README") == expected


def test_a_croco_state_dict_without_the_second_decoder_is_completed(tmp_path):
    fixture = load_fixture("linear")
    state = {key: value for key, value in fixture["model"].items() if not key.startswith("dec_blocks2.")}
    network = load_dust3r(released_file(tmp_path, fixture["model_string"], state))
    first, second = network.dec_blocks.state_dict(), network.dec_blocks2.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_overrides_replace_the_files_settings(tmp_path):
    fixture = load_fixture("linear")
    network = load_dust3r(released_file(tmp_path, fixture["model_string"], fixture["model"]),
                          landscape_only=False, patch_embed_cls="PatchEmbedDust3R")
    assert network.arch.landscape_only is False and type(network.patch_embed).__name__ == "PatchEmbed"


def assert_one_line(error, *parts):
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_a_missing_file_is_named(tmp_path):
    path = str(tmp_path / "nowhere.pth")
    with pytest.raises(DataFileError) as error:
        load_dust3r(path)
    assert_one_line(error, path, "no such file")


@pytest.mark.parametrize("content, expected", [
    (torch.zeros(3), "expected a dict with 'model'"),
    ({"model": {}}, "expected a dict with 'model'"),
    ({"model": {"a": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, "no model string"),
    ({"model": {"a": 1}, "args": argparse.Namespace(model="AsymmetricCroCo3DStereo()")}, "not a state dict"),
])
def test_a_file_with_the_wrong_layout_is_named(tmp_path, content, expected):
    path = tmp_path / "wrong.pth"
    torch.save(content, path)
    with pytest.raises(DataFileError) as error:
        read_dust3r_checkpoint(str(path))
    assert_one_line(error, str(path), expected)


def test_a_file_that_is_not_torch_is_named(tmp_path):
    path = tmp_path / "text.pth"
    path.write_text("hello")
    with pytest.raises(DataFileError) as error:
        read_dust3r_checkpoint(str(path))
    assert_one_line(error, str(path), "not a readable torch file")


@pytest.mark.parametrize("model_string, expected", [
    ("__import__('os').system('echo hi')", "must be a call of AsymmetricCroCo3DStereo"),
    ("AsymmetricCroCo3DStereo(enc_depth=len('ab'))", "enc_depth=len('ab') is not a literal"),
    ("AsymmetricCroCo3DStereo(head_type='dpt', norm_layer=1)", "'norm_layer' is not"),
    ("AsymmetricCroCo3DStereo(head_type='linear')", "pos_embed='cosine'"),
    ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', enc_num_heads=5)", "enc_num_heads=5"),
    ("AsymmetricCroCo3DStereo(pos_embed='RoPE100'", "not a Python call"),
])
def test_bad_model_strings_are_reported_without_evaluating_them(tmp_path, model_string, expected):
    fixture = load_fixture("linear")
    path = released_file(tmp_path, model_string, fixture["model"])
    with pytest.raises(DataFileError) as error:
        read_dust3r_checkpoint(path)
    assert_one_line(error, path, expected)


def test_weights_of_another_architecture_are_reported(tmp_path):
    fixture = load_fixture("linear")
    other = fixture["model_string"].replace("dec_depth=2", "dec_depth=3")
    path = released_file(tmp_path, other, fixture["model"])
    with pytest.raises(DataFileError) as error:
        load_dust3r(path)
    assert_one_line(error, path, "missing dec_blocks.2.")


def test_architecture_mistakes_name_the_field():
    with pytest.raises(ConfigError, match=r"^DUSt3RArchitecture.patch_size=8: expected 16 with head_type 'dpt'"):
        DUSt3RArchitecture(head_type="dpt", patch_size=8)
    with pytest.raises(ConfigError, match=r"depth_mode"):
        DUSt3RArchitecture(depth_mode=("exp", 0, math.inf))
    assert dataclasses.replace(DUSt3RArchitecture(), img_size=[224, 320]).img_hw == (224, 320)
