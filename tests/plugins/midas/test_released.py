"""MiDaS's released checkpoints in MidasModel: parity with the original on small random networks
(tests/fixtures/midas/*_parity.pt, made by tools/parity/make_midas_fixtures.py), the full-size key
layouts and parameter counts (released_layouts.json), the input transform, and the errors."""
import json
import os
from typing import Any, Dict

import pytest
import torch

from recon_trainer.config import ConfigError, expand_args_fields
from recon_trainer.config.discovery import discover_plugins
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.experiment import Experiment
from recon_trainer_plugins.midas.batch import DepthBatch
from recon_trainer_plugins.midas.encoders import ResNetEncoder, scaled_resnet
from recon_trainer_plugins.midas.input_transform import normalize_image, target_size
from recon_trainer_plugins.midas.model import MidasModel
from recon_trainer_plugins.midas.released import DPT, MIDASNET, released_layout, released_to_ours

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "midas")
TOLERANCE = 1e-4
# DPT-Large's ViT parts that the original never runs and ViTEncoder drops: final norm, classifier
UNUSED_DPT_PREFIXES = ("pretrained.model.norm.", "pretrained.model.head.")


def load_fixture(name: str) -> Dict[str, Any]:
    return torch.load(os.path.join(FIXTURES, f"{name}_parity.pt"), weights_only=True)


def model_fields(name: str, config: Dict[str, Any]) -> Dict[str, Any]:
    """MidasModel kwargs building the fixture's small network."""
    if name == "midasnet":
        encoder = {k: config[k] for k in ("arch", "stem_width", "stage_blocks")}
        return {"features": config["features"], "encoder_ResNetEncoder_args": encoder}
    encoder = {k: config[k] for k in ("arch", "depth", "embed_dim", "num_heads", "hooks", "reassemble_channels",
                                      "readout")}
    return {"features": config["features"], "encoder_class_type": "ViTEncoder", "encoder_ViTEncoder_args": encoder}


def loaded_model(name: str, **fields) -> MidasModel:
    fixture = load_fixture(name)
    model = MidasModel(**model_fields(name, fixture["config"]), **fields)
    model.load_state_dict(released_to_ours(fixture["state_dict"], model))
    return model.eval()


@pytest.fixture(scope="module", params=["midasnet", "dpt"])
def case(request):
    return request.param, load_fixture(request.param), loaded_model(request.param)


def test_released_layout_is_detected(case):
    name, fixture, model = case
    assert released_layout(fixture["state_dict"]) == (MIDASNET if name == "midasnet" else DPT)
    assert model.decoder.variant == ("midas_v21" if name == "midasnet" else "dpt")  # decoder_variant=auto


def test_outputs_match_the_original(case):
    name, fixture, model = case
    with torch.no_grad():
        layers = model.encoder(fixture["input"])
        output = model.decoder(layers)[:, 0]
    for level, (ours, theirs) in enumerate(zip(layers, fixture["layers"])):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= TOLERANCE, f"{name} encoder map {level}"
    assert output.shape == fixture["output"].shape
    error = (output - fixture["output"]).abs().max().item()
    assert error <= TOLERANCE, f"{name}: max |ours - original| = {error}"
    assert fixture["output"].std() > 0.3 and (fixture["output"] > 0).float().mean() > 0.5  # a telling fixture


def test_the_fixtures_tell_the_variants_apart():
    """Negative controls: the details the parity depends on change the output far beyond the tolerance."""
    fixture, model = load_fixture("midasnet"), loaded_model("midasnet")
    for module in model.decoder.modules():  # MidasNet's units add the rectified input; DPT's the input
        if hasattr(module, "rectified_skip"):
            module.rectified_skip = False
    with torch.no_grad():
        changed = model.decoder(model.encoder(fixture["input"]))[:, 0]
    assert (changed - fixture["output"]).abs().max() > 100 * TOLERANCE

    from timm.layers import resample_abs_pos_embed

    fixture, model = load_fixture("dpt"), loaded_model("dpt")
    vit = model.encoder.vit  # timm's own resize (bicubic, antialiased) instead of DPT's bilinear one
    model.encoder.position_embedding = lambda grid: resample_abs_pos_embed(vit.pos_embed, list(grid),
                                                                           list(vit.patch_embed.grid_size))
    with torch.no_grad():
        changed = model.decoder(model.encoder(fixture["input"]))[:, 0]
    assert (changed - fixture["output"]).abs().max() > 100 * TOLERANCE


@pytest.mark.parametrize("name", ["midasnet", "dpt"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_pretrained_path_loads_a_released_file(name, wrapped, tmp_path):
    """Through MidasModel.pretrained_path: a plain state dict, or {"model", "optimizer"} as the
    original's training saved; forward on the image in [0, 1] gives the original's output."""
    fixture = load_fixture(name)
    path = tmp_path / "released.pt"
    state = fixture["state_dict"]
    torch.save({"model": state, "optimizer": {}} if wrapped else state, path)
    height, width = fixture["input"].shape[-2:]
    model = MidasModel(**model_fields(name, fixture["config"]), pretrained_path=str(path),
                       net_size=max(height, width), resize_method="upper_bound").eval()
    mean, std = model.encoder.normalization()
    image = fixture["input"] * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert torch.allclose(normalize_image(image, mean, std), fixture["input"], atol=1e-6)
    with torch.no_grad():
        disparity = model(DepthBatch(image_rgb=image))["disparity"]
    assert (disparity[:, 0] - fixture["output"]).abs().max() <= TOLERANCE


# --- full size: key layouts and parameter counts --------------------------------------------------


@pytest.fixture(scope="module")
def layouts() -> Dict[str, Any]:
    with open(os.path.join(FIXTURES, "released_layouts.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name, overrides", [("midas_v21_384", []), ("dpt_large_384", ["+preset=dpt_large"])])
def test_full_size_layout_maps_every_key_and_counts_match(name, overrides, layouts):
    """The model of `midas_redweb` (v2.1 large) and of `midas_redweb +preset=dpt_large` takes every
    tensor of the released file's layout (built on the meta device: shapes only)."""
    expand_args_fields(Experiment)
    store_root_config(Experiment)
    config = compose_config("midas_redweb", overrides)
    model_args = config.model_factory_ReconModelFactory_args.model_MidasModel_args
    encoder = model_args.encoder_class_type
    discover_plugins()  # imports every plugin before the meta device is on (some make tensors on import)
    layout = layouts[name]
    with torch.device("meta"):
        model = MidasModel(**model_args)
        state = {key: torch.empty(shape) for key, shape in layout["state_dict"].items()}
    mapped = released_to_ours(state, model)  # raises on any missing, unused or reshaped key
    assert set(mapped) == set(model.state_dict())
    ours = sum(p.numel() for p in model.parameters())
    if encoder == "ResNetEncoder":
        assert ours == layout["parameters"] == 105_362_945
        assert len(mapped) == len(state) == 666
    else:
        taken = {id(value) for value in mapped.values()}  # the mapped values are the state's own tensors
        left_out = {key: value for key, value in state.items() if id(value) not in taken}
        assert all(key.startswith(UNUSED_DPT_PREFIXES) for key in left_out) and len(left_out) == 4
        assert layout["parameters"] == 344_055_465
        assert ours == layout["parameters"] - sum(v.numel() for v in left_out.values()) == 343_028_417


def test_scaled_resnet_at_full_width_is_torchvisions():
    import torchvision

    with torch.device("meta"):
        full = torchvision.models.resnext101_32x8d()
        scaled = scaled_resnet(torchvision.models.resnet.Bottleneck, (3, 4, 23, 3), 64, 32, 8)
    theirs = {k: tuple(v.shape) for k, v in full.state_dict().items() if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in scaled.state_dict().items()} == theirs
    encoder = ResNetEncoder(arch="resnext101_32x8d", stem_width=8, stage_blocks=(1, 2, 1, 1))
    assert encoder.stage_channels() == (32, 64, 128, 256)
    shapes = [tuple(f.shape[1:]) for f in encoder(torch.zeros(1, 3, 64, 64))]
    assert shapes == [(32, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2)]
    with pytest.raises(ConfigError, match="needs at least 8"):
        ResNetEncoder(arch="resnext101_32x8d", stem_width=4)


# --- the input transform ----------------------------------------------------------------------------


def test_target_sizes_and_normalisation_match_the_originals_transforms():
    with open(os.path.join(FIXTURES, "transforms.json")) as f:
        reference = json.load(f)
    checked = 0
    for height, width, method, out_h, out_w in reference["sizes"]:
        if min(out_h, out_w) == 0:  # the original rounds a thin side to 0 (then fails in cv2); ours keeps 32
            assert target_size(height, width, 384, method) in ((32, out_w), (out_h, 32))
            continue
        assert target_size(height, width, 384, method) == (out_h, out_w), (height, width, method)
        checked += 1
    assert checked >= 30
    pixel = torch.tensor(reference["pixel"]).view(1, 3, 1, 1)
    imagenet = ResNetEncoder(arch="resnet18", stem_width=8, stage_blocks=(1, 1, 1, 1)).normalization()
    for name, mean_std in (("imagenet", imagenet), ("dpt", ((0.5,) * 3, (0.5,) * 3))):
        ours = normalize_image(pixel, *mean_std).flatten()
        assert torch.allclose(ours, torch.tensor(reference["normalised"][name]), atol=1e-6)


# --- errors -------------------------------------------------------------------------------------------


def tiny_fields(name: str) -> Dict[str, Any]:
    return model_fields(name, load_fixture(name)["config"])


def expect_config_error(match: str, **fields) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        MidasModel(**fields)
    message = str(info.value)
    assert "\n" not in message and "MidasModel.pretrained_path=" in message
    return message


def test_pretrained_path_errors(tmp_path):
    midasnet, dpt = load_fixture("midasnet")["state_dict"], load_fixture("dpt")["state_dict"]
    expect_config_error("no such file", **tiny_fields("midasnet"), pretrained_path=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    expect_config_error("not readable by torch.load", **tiny_fields("midasnet"),
                        pretrained_path=str(tmp_path / "junk.pt"))
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "other.pt")
    expect_config_error("not a state dict", **tiny_fields("midasnet"), pretrained_path=str(tmp_path / "other.pt"))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    expect_config_error("neither a MidasNet nor a DPT", **tiny_fields("midasnet"),
                        pretrained_path=str(tmp_path / "foreign.pt"))
    torch.save(dpt, tmp_path / "dpt.pt")
    expect_config_error("set encoder_class_type=ViTEncoder", **tiny_fields("midasnet"),
                        pretrained_path=str(tmp_path / "dpt.pt"))
    expect_config_error("decoder_variant=midas_v21; set dpt", **tiny_fields("dpt"), decoder_variant="midas_v21",
                        pretrained_path=str(tmp_path / "dpt.pt"))
    torch.save(midasnet, tmp_path / "midasnet.pt")
    wider = {**tiny_fields("midasnet"), "features": 16}
    expect_config_error("of another shape: scratch.layer1_rn.weight", **wider,
                        pretrained_path=str(tmp_path / "midasnet.pt"))
    torch.save({k: v for k, v in midasnet.items() if "refinenet4.resConfUnit1" not in k}, tmp_path / "short.pt")
    expect_config_error("4 missing: decoder.fusion.3.rcu1", **tiny_fields("midasnet"),
                        pretrained_path=str(tmp_path / "short.pt"))
    torch.save({**midasnet, "scratch.extra.weight": torch.zeros(1)}, tmp_path / "long.pt")
    expect_config_error("1 unused: scratch.extra.weight", **tiny_fields("midasnet"),
                        pretrained_path=str(tmp_path / "long.pt"))
    deeper = {k.replace("blocks.4.", "blocks.5."): v for k, v in dpt.items()
              if k.startswith("pretrained.model.blocks.4.")}
    torch.save({**dpt, **deeper}, tmp_path / "deeper.pt")  # a block beyond the arch's depth is not ignored
    expect_config_error("unused: pretrained.model.blocks.5", **tiny_fields("dpt"),
                        pretrained_path=str(tmp_path / "deeper.pt"))
    fields = tiny_fields("midasnet")
    fields["encoder_ResNetEncoder_args"] = {**fields["encoder_ResNetEncoder_args"], "weights_path": "x.pth"}
    with pytest.raises(ConfigError, match="both set"):
        MidasModel(**fields, pretrained_path=str(tmp_path / "midasnet.pt"))
