"""MoGe-1 / MoGe-2 networks: parity with the original code, and checkpoint loading.

The fixtures tests/fixtures/moge/v{1,2}_network.pt hold a small original model's config (with a tiny
DINOv2 `backbone_override`), its state dict in MoGe's key layout, a random image and the original's
outputs (tools/parity/make_moge_network_fixtures.py).
"""
import os

import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.errors import UserError
from recon_trainer_plugins.moge.checkpoint import load_released, map_state_dict, network_from_config
from recon_trainer_plugins.moge.dinov2 import load_backbone_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "moge")
ATOL = RTOL = 1e-4
FORWARD_KEYS = {"v1": {"points", "mask"}, "v2": {"points", "mask", "normal", "metric_scale"}}
BACKBONE_PREFIX = {"v1": "backbone.", "v2": "encoder.backbone."}


def load_fixture(version):
    return torch.load(os.path.join(FIXTURES, f"{version}_network.pt"), weights_only=True)


def released_file(tmp_path, fixture, **changes):
    """Write the fixture's network as a MoGe model.pt (the tiny backbone in its model_config)."""
    checkpoint = {"model_config": dict(fixture["model_config"], backbone_override=fixture["backbone_override"]),
                  "model": dict(fixture["model"])}
    checkpoint.update(changes)
    path = tmp_path / "model.pt"
    torch.save(checkpoint, path)
    return str(path)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_forward_matches_the_original(tmp_path, version):
    fixture = load_fixture(version)
    network = load_released(released_file(tmp_path, fixture)).eval()
    assert network.version == version
    with torch.no_grad():
        output = network(fixture["image"], fixture["num_tokens"])
    assert set(output) == FORWARD_KEYS[version]
    for key, value in output.items():
        assert value.shape == fixture[key].shape, key
        torch.testing.assert_close(value, fixture[key], atol=ATOL, rtol=RTOL, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_backbone_loads_dinov2_names_and_matches_on_a_non_square_grid(tmp_path, version):
    fixture = load_fixture(version)
    prefix = BACKBONE_PREFIX[version]
    backbone_state = {key[len(prefix):]: value for key, value in fixture["model"].items() if key.startswith(prefix)}
    path = tmp_path / "dinov2.pth"
    torch.save(backbone_state, path)
    config = dict(fixture["model_config"], backbone_override=fixture["backbone_override"])
    backbone = network_from_config(version, config).backbone.eval()
    load_backbone_weights(backbone, str(path))
    with torch.no_grad():
        layers = backbone.get_intermediate_layers(fixture["backbone_input"], fixture["backbone_layers"].tolist(),
                                                  return_class_token=True)
    for (tokens, class_token), expected_tokens, expected_class in zip(
            layers, fixture["backbone_tokens"], fixture["backbone_class_tokens"]):
        torch.testing.assert_close(tokens, expected_tokens, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(class_token, expected_class, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_state_dict_mapping_only_drops_the_normalisation_constants(version):
    fixture = load_fixture(version)
    mapped = map_state_dict(version, fixture["model"])
    dropped = set(fixture["model"]) - set(mapped)
    stem = "" if version == "v1" else "encoder."
    assert dropped == {f"{stem}image_mean", f"{stem}image_std"}
    assert all(mapped[key] is fixture["model"][key] for key in mapped)
    network = network_from_config(version, dict(fixture["model_config"],
                                                backbone_override=fixture["backbone_override"]))
    assert sorted(network.state_dict()) == sorted(mapped)


def test_state_dict_mapping_rejects_other_normalisation_statistics():
    state = dict(load_fixture("v1")["model"])
    state["image_std"] = torch.ones(1, 3, 1, 1)
    with pytest.raises(ValueError, match="image_std"):
        map_state_dict("v1", state)


def assert_one_line_naming(error, path):
    message = str(error.value)
    assert "\n" not in message and str(path) in message


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nothing.pt"
    with pytest.raises(UserError, match="no such file") as error:
        load_released(str(path))
    assert_one_line_naming(error, path)


def test_garbled_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(UserError, match="not a readable torch file") as error:
        load_released(str(path))
    assert_one_line_naming(error, path)


def test_checkpoint_without_config(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(dict(load_fixture("v1")["model"]), path)
    with pytest.raises(UserError, match="model_config") as error:
        load_released(str(path))
    assert_one_line_naming(error, path)


def test_checkpoint_with_missing_unexpected_and_misshapen_weights(tmp_path):
    fixture = load_fixture("v2")
    state = dict(fixture["model"])
    del state["neck.input_blocks.0.weight"]
    state["neck.extra.weight"] = torch.zeros(1)
    state["scale_head.0.weight"] = torch.zeros(3, 3)
    path = released_file(tmp_path, fixture, model=state)
    with pytest.raises(UserError) as error:
        load_released(path)
    assert_one_line_naming(error, path)
    for part in ("missing neck.input_blocks.0.weight", "unexpected neck.extra.weight", "scale_head.0.weight (3, 3)"):
        assert part in str(error.value)


def test_checkpoint_with_a_bad_config_names_file_and_key(tmp_path):
    fixture = load_fixture("v1")
    config = dict(fixture["model_config"], backbone_override=fixture["backbone_override"], remap_output="log")
    path = released_file(tmp_path, fixture, model_config=config)
    with pytest.raises(ConfigError, match="remap_output='log'") as error:
        load_released(path)
    assert_one_line_naming(error, path)


def test_released_config_ignores_unknown_keys_with_a_warning(tmp_path):
    fixture = load_fixture("v2")
    config = dict(fixture["model_config"], backbone_override=fixture["backbone_override"], legacy_flag=True)
    config["encoder"] = dict(config["encoder"], old_option=1)
    path = released_file(tmp_path, fixture, model_config=config)
    with pytest.warns(UserWarning) as record:
        network = load_released(path)
    messages = " ".join(str(warning.message) for warning in record)
    assert "legacy_flag" in messages and "model_config.encoder: ignoring unknown keys ['old_option']" in messages
    assert network.version == "v2"
