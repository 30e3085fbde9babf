"""MidasModel, its encoders (ResNet, DPT ViT), decoder and input transform on tiny CPU models."""
from typing import List, Tuple

import pytest
import timm
import torch
import torchvision

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.models.base import EvaluationMode
from recon_trainer.training.param_groups import assign_param_groups
from recon_trainer_plugins.midas.batch import DepthBatch
from recon_trainer_plugins.midas.dpt_encoder import Readout, ViTEncoder
from recon_trainer_plugins.midas.encoders import ResNetEncoder
from recon_trainer_plugins.midas.input_transform import normalize_image, resize_image, target_size
from recon_trainer_plugins.midas.losses import midas_loss
from recon_trainer_plugins.midas.model import MidasModel

NET_SIZE = 64
TINY_VIT = {"arch": "vit_tiny_patch16_224", "depth": 4, "hooks": (0, 1, 2, 3), "reassemble_channels": (8, 16, 24, 32)}


def tiny_model(encoder: str = "ResNetEncoder", **fields) -> MidasModel:
    torch.manual_seed(0)
    cfg = get_default_args(MidasModel)
    cfg.features, cfg.net_size, cfg.encoder_class_type = 16, NET_SIZE, encoder
    cfg.encoder_ResNetEncoder_args.arch = "resnet18"
    for key, value in TINY_VIT.items():
        setattr(cfg.encoder_ViTEncoder_args, key, value)
    for key, value in fields.items():
        setattr(cfg, key, value)
    return MidasModel(**cfg)


@pytest.fixture(scope="module")
def resnet_model() -> MidasModel:
    return tiny_model()


@pytest.fixture(scope="module")
def vit_model() -> MidasModel:
    return tiny_model("ViTEncoder")


def encoder_inputs(model: MidasModel, batch: DepthBatch, mode=EvaluationMode.EVALUATION) -> List[torch.Tensor]:
    """The images the encoder got during one forward pass."""
    seen = []
    handle = model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(batch, evaluation_mode=mode)
    finally:
        handle.remove()
    return seen


def network_input_sizes(model: MidasModel, batch: DepthBatch, mode=EvaluationMode.EVALUATION) -> List[Tuple[int, int]]:
    """The (h, w) the encoder saw during one forward pass."""
    return [tuple(x.shape[-2:]) for x in encoder_inputs(model, batch, mode)]


def training_batch(size=(64, 96), seed: int = 1) -> DepthBatch:
    generator = torch.Generator().manual_seed(seed)
    h, w = size
    ramp = torch.linspace(0.5, 2.0, w).expand(2, 1, h, w)
    mask = torch.rand(2, 1, h, w, generator=generator) > 0.3
    return DepthBatch(
        image_rgb=torch.rand(2, 3, h, w, generator=generator),
        disparity_map=ramp * mask,
        depth_mask=mask.float(),
        dataset=["ReDWeb", "ReDWeb"],
    )


# --- input transform ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height, width, net_size, method, expected",
    [
        (480, 640, 384, "upper_bound", (288, 384)),  # scale min(0.8, 0.6) = 0.6
        (480, 640, 384, "lower_bound", (384, 512)),  # scale max = 0.8
        (480, 640, 384, "minimal", (384, 512)),  # 0.8 is closer to 1 than 0.6
        (375, 1242, 384, "lower_bound", (384, 1280)),  # KITTI: scale 1.024, 1271.8 -> 40 * 32
        (375, 1242, 384, "upper_bound", (128, 384)),  # scale 0.309, 115.9 -> 4 * 32
        (1000, 500, 384, "minimal", (768, 384)),  # 0.768 is closer to 1 than 0.384
        (390, 100, 384, "upper_bound", (384, 96)),  # 98.5 -> 3 * 32
        (400, 400, 400, "upper_bound", (384, 384)),  # 12.5 rounds half to even: 12 * 32
        (400, 400, 400, "lower_bound", (416, 416)),  # 384 < 400 is below the bound: ceil to 13 * 32
        (410, 410, 410, "upper_bound", (384, 384)),  # 416 > 410 is above the bound: floor to 12 * 32
        (10, 1000, 384, "minimal", (32, 384)),  # 3.84 rounds to 0: at least one multiple
    ],
)
def test_target_size_hand_computed(height, width, net_size, method, expected):
    assert target_size(height, width, net_size, method) == expected


def test_target_size_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="upper_bound"):
        target_size(10, 10, 384, "fit")


def test_normalisation_uses_the_encoders_mean_and_std(resnet_model, vit_model):
    assert resnet_model.encoder.normalization() == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert vit_model.encoder.normalization() == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    image = torch.tensor([0.485, 1.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = normalize_image(image, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    expected = torch.tensor([0.0, (1.0 - 0.456) / 0.224, -0.406 / 0.225]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(out, expected)
    grey = DepthBatch(image_rgb=torch.full((1, 3, 64, 64), 0.75))  # already 64 x 64: no resize
    (seen,) = encoder_inputs(vit_model, grey)
    assert torch.allclose(seen, torch.full_like(seen, 0.5))  # (0.75 - 0.5) / 0.5
    (seen,) = encoder_inputs(resnet_model, grey)
    expected = torch.tensor([(0.75 - 0.485) / 0.229, (0.75 - 0.456) / 0.224, (0.75 - 0.406) / 0.225])
    assert torch.allclose(seen[0, :, 0, 0], expected)


def test_resize_keeps_constants_and_non_negativity():
    constant = torch.full((1, 1, 70, 50), 0.25)
    assert torch.allclose(resize_image(constant, (32, 64)), torch.full((1, 1, 32, 64), 0.25))
    sparse = (torch.rand(1, 1, 70, 50, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    for size in ((32, 16), (128, 96)):
        assert resize_image(sparse, size).min() >= 0
    assert resize_image(sparse, (70, 50)) is sparse


# --- the model ------------------------------------------------------------------------------


def test_a_randomly_initialised_head_starts_positive_everywhere():
    """No seed may start with the final ReLU zeroing the map (it would never train)."""
    batch = DepthBatch(image_rgb=torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)))
    for seed in range(4):
        torch.manual_seed(seed)
        model = MidasModel(encoder_ResNetEncoder_args={"arch": "resnet18"}, features=16, net_size=NET_SIZE)
        with torch.no_grad():
            disparity = model(batch)["disparity"]
        assert disparity.min() > 0 and disparity.std() > 0


@pytest.mark.parametrize("fixture", ["resnet_model", "vit_model"])
def test_disparity_has_the_input_size_and_is_non_negative(fixture, request):
    model = request.getfixturevalue(fixture).eval()
    batch = DepthBatch(image_rgb=torch.rand(2, 3, 70, 50, generator=torch.Generator().manual_seed(3)))
    assert network_input_sizes(model, batch) == [(64, 32)]  # upper_bound 64: scale 64/70, 45.7 -> 32
    with torch.no_grad():
        disparity = model(batch)["disparity"]
    assert disparity.shape == (2, 1, 70, 50)
    assert disparity.min() >= 0 and disparity.max() > 0
    assert set(model(batch)) == {"disparity"}


def test_kitti_frames_are_resized_with_lower_bound(resnet_model):
    image = torch.rand(3, 32, 96)
    kitti = DepthBatch(image_rgb=torch.stack([image, image]), dataset=["KITTI", ""])
    other = DepthBatch(image_rgb=image[None], dataset=["NYU"])
    plain = DepthBatch(image_rgb=image[None])
    assert resnet_model.resize_method_for(kitti) == "lower_bound"
    assert network_input_sizes(resnet_model, kitti) == [(64, 192)]  # cover 64 x 64: scale 2
    assert network_input_sizes(resnet_model, other) == [(32, 64)]  # fit inside: scale 2/3, 21.3 -> 32
    assert network_input_sizes(resnet_model, plain) == [(32, 64)]


def test_training_objective_weights_the_loss_terms_and_reaches_every_part():
    model = tiny_model(loss_weights={"loss_ssi": 2.0, "loss_grad": 0.25}).train()
    batch = training_batch()
    assert network_input_sizes(model, batch, EvaluationMode.TRAINING) == [(64, 96)]  # fed as it is
    preds = model(batch, evaluation_mode=EvaluationMode.TRAINING)
    reference = midas_loss(preds["disparity"], batch.disparity_map, batch.depth_mask > 0.5, alpha=1.0)
    assert torch.allclose(preds["loss_ssi"], reference["loss_ssi"])
    assert torch.allclose(preds["loss_grad"], reference["loss_grad"])
    assert torch.isfinite(preds["objective"]) and preds["loss_grad"] > 0
    assert torch.allclose(preds["objective"], 2.0 * preds["loss_ssi"] + 0.25 * preds["loss_grad"])
    all_valid = midas_loss(preds["disparity"], batch.disparity_map, torch.ones_like(batch.depth_mask) > 0)
    assert not torch.allclose(preds["loss_ssi"], all_valid["loss_ssi"])  # the depth_mask is used
    assert model.log_vars == ("objective", "loss_ssi", "loss_grad")
    preds["objective"].backward()
    for part in (model.encoder.stages[0], model.encoder.stages[3], model.decoder.scratch[0], model.decoder.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


@pytest.mark.parametrize("encoder", ["ResNetEncoder", "ViTEncoder"])
def test_every_parameter_gets_a_gradient(encoder):
    """Distributed training (DDP) stalls on a trainable parameter that the loss never reaches; the
    only frozen ones are the coarsest fusion block's unused rcu1 (kept for the released layout)."""
    model = tiny_model(encoder).train()
    model(training_batch(), evaluation_mode=EvaluationMode.TRAINING)["objective"].backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"decoder.fusion.3.rcu1.conv{i}.{kind}" for i in (1, 2) for kind in ("weight", "bias")}


def test_zero_gradient_weight_skips_the_gradient_term():
    model = tiny_model(loss_weights={"loss_ssi": 1.0, "loss_grad": 0.0}, loss_variant="lsq")
    with torch.no_grad():
        preds = model(training_batch(), evaluation_mode=EvaluationMode.TRAINING)
    assert preds["loss_grad"] == 0 and torch.allclose(preds["objective"], preds["loss_ssi"])


def test_bf16_autocast_gives_float32_outputs(vit_model):
    batch = training_batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        evaluated = vit_model.eval()(DepthBatch(image_rgb=torch.rand(1, 3, 70, 50)))
        trained = vit_model.train()(batch, evaluation_mode=EvaluationMode.TRAINING)
    assert evaluated["disparity"].dtype == torch.float32 and evaluated["disparity"].shape == (1, 1, 70, 50)
    assert trained["objective"].dtype == torch.float32 and torch.isfinite(trained["objective"])


def test_training_input_checks(resnet_model):
    odd = training_batch(size=(70, 50))
    with pytest.raises(ValueError, match="multiples of 32"):
        resnet_model(odd, evaluation_mode=EvaluationMode.TRAINING)
    with pytest.raises(ValueError, match="disparity_map"):
        resnet_model(DepthBatch(image_rgb=odd.image_rgb), evaluation_mode=EvaluationMode.TRAINING)
    resizing = tiny_model(resize_in_training=True)
    assert network_input_sizes(resizing, odd, EvaluationMode.TRAINING) == [(64, 32)]
    with torch.no_grad():
        preds = resizing(odd, evaluation_mode=EvaluationMode.TRAINING)
    assert preds["disparity"].shape == (2, 1, 70, 50) and torch.isfinite(preds["objective"])


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"loss_weights": {"loss_ssi": 1.0, "loss_gradient": 0.5}}, "did you mean 'loss_grad'"),
        ({"resize_method": "fit"}, "bad value 'fit' for 'MidasModel.resize_method'"),
        ({"resize_method_by_dataset": {"KITTI": "cover"}}, "bad value 'cover' for 'MidasModel.resize_method_by_dataset.KITTI'"),
        ({"loss_variant": "l1"}, "bad value 'l1' for 'MidasModel.loss_variant'"),
        ({"trim_fraction": 1.0}, "trim_fraction"),
    ],
)
def test_config_mistakes_are_reported(fields, message):
    with pytest.raises(ConfigError, match=message):
        tiny_model(**fields)


@pytest.mark.parametrize("fixture", ["resnet_model", "vit_model"])
def test_encoder_param_group_holds_exactly_the_encoder(fixture, request):
    model = request.getfixturevalue(fixture)
    groups = assign_param_groups(model)
    assert set(groups) == {"default", "encoder"}
    assert {id(p) for p in groups["encoder"]} == {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in groups["default"]} == {id(p) for p in model.decoder.parameters() if p.requires_grad}
    assert len(groups["encoder"]) == len(list(model.encoder.parameters()))


# --- encoders -------------------------------------------------------------------------------


def test_resnet_weights_round_trip_and_errors(tmp_path):
    torch.manual_seed(5)
    network = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(network.state_dict(), path)
    encoder = ResNetEncoder(arch="resnet18", weights_path=str(path))
    saved = [value for key, value in network.state_dict().items() if not key.startswith("fc.")]
    loaded = list(encoder.state_dict().values())
    assert len(loaded) == len(saved) and all(torch.equal(a, b) for a, b in zip(loaded, saved))
    assert not torch.equal(ResNetEncoder(arch="resnet18").stages[0][0][0].weight, saved[0])  # random otherwise
    with pytest.raises(FileNotFoundError, match="weights_path='.*missing.pth'"):
        ResNetEncoder(arch="resnet18", weights_path=str(tmp_path / "missing.pth"))
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ValueError, match="not a torchvision resnet18 state dict"):
        ResNetEncoder(arch="resnet18", weights_path=str(tmp_path / "resnet34.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        ResNetEncoder(arch="resnet18", weights_path=str(tmp_path / "junk.pth"))
    with pytest.raises(ConfigError, match="resnext101_32x8d"):
        ResNetEncoder(arch="resnet19")


def test_resnet_encoder_strides_and_channels():
    encoder = ResNetEncoder(arch="resnet18")
    shapes = [tuple(f.shape) for f in encoder(torch.zeros(1, 3, 64, 96))]
    assert shapes == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]
    assert encoder.stage_channels() == (64, 128, 256, 512)


def test_vit_weights_round_trip_and_errors(tmp_path):
    torch.manual_seed(6)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=4)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    fields = dict(TINY_VIT)
    encoder = ViTEncoder(**fields, weights_path=str(path))
    saved = vit.state_dict()
    loaded = dict(encoder.vit.named_parameters())
    assert "blocks.3.mlp.fc2.weight" in loaded and "head.weight" not in loaded  # classifier dropped
    assert all(torch.equal(value, saved[name]) for name, value in loaded.items())
    with pytest.raises(ValueError, match="not a timm vit_tiny_patch16_224 \\(depth=5\\) state dict"):
        ViTEncoder(**{**fields, "depth": 5}, weights_path=str(path))
    with pytest.raises(FileNotFoundError, match="ViTEncoder.weights_path"):
        ViTEncoder(**fields, weights_path=str(tmp_path / "missing.pth"))


def test_dpt_reassemble_gives_strides_4_to_32_with_the_declared_channels(vit_model):
    encoder = vit_model.encoder
    assert encoder.stage_channels() == (8, 16, 24, 32)
    with torch.no_grad():
        shapes = [tuple(f.shape) for f in encoder(torch.zeros(2, 3, 64, 96))]
    assert shapes == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 24, 4, 6), (2, 32, 2, 3)]
    deeper = ViTEncoder(**{**TINY_VIT, "depth": 6})
    assert len(deeper.vit.blocks) == 4 and isinstance(deeper.vit.norm, torch.nn.Identity)  # unused parts dropped


def test_readout_modes():
    tokens, cls_token = torch.randn(2, 6, 4), torch.randn(2, 1, 4)
    assert torch.equal(Readout("ignore", 4)(tokens, cls_token), tokens)
    assert torch.equal(Readout("add", 4)(tokens, cls_token), tokens + cls_token)
    project = Readout("project", 4)
    expected = torch.nn.functional.gelu(project.project[0](torch.cat([tokens, cls_token.expand(2, 6, 4)], -1)))
    assert torch.allclose(project(tokens, cls_token), expected)
    changed = project(tokens, cls_token + 1)
    assert not torch.allclose(changed, expected)  # the class token matters


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"hooks": (0, 1, 2, 4)}, "has 4 blocks"),
        ({"hooks": (0, 2, 1, 3)}, "four increasing"),
        ({"readout": "concat"}, "bad value 'concat' for 'ViTEncoder.readout'"),
        ({"arch": "resnet18"}, "expected a timm VisionTransformer"),
        ({"arch": "vit_small_patch8_224"}, "patch size \\(8, 8\\)"),
    ],
)
def test_vit_config_mistakes(fields, message):
    with pytest.raises(ConfigError, match=message):
        ViTEncoder(**{**TINY_VIT, **fields})
