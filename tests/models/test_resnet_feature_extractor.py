"""ResNetFeatureExtractor: the maps it returns, their channels, and loading a local weights file."""

import pytest
import torch
import torchvision

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.models.resnet_feature_extractor import ResNetFeatureExtractor


def extractor(**fields) -> ResNetFeatureExtractor:
    torch.manual_seed(0)
    return ResNetFeatureExtractor(**{"name": "resnet18", "image_rescale": 1.0, **fields})


def test_defaults_follow_implicitron():
    cfg = get_default_args(ResNetFeatureExtractor)
    assert cfg.name == "resnet34" and cfg.weights_path is None and list(cfg.stages) == [1, 2, 3, 4]
    assert (cfg.normalize_image, cfg.image_rescale, cfg.first_max_pool, cfg.proj_dim) == (True, 0.16, True, 32)
    assert (cfg.l2_norm, cfg.add_masks, cfg.add_images, cfg.global_average_pool) == (True, True, True, False)
    assert cfg.feature_rescale == 1.0


def test_stage_maps_images_and_masks_with_their_channels():
    model = extractor()
    imgs, masks = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)
    feats = model(imgs, masks)
    shapes = {name: tuple(f.shape) for name, f in feats.items()}
    assert shapes == {
        "res_layer_1": (2, 32, 8, 8),
        "res_layer_2": (2, 32, 4, 4),
        "res_layer_3": (2, 32, 2, 2),
        "res_layer_4": (2, 32, 1, 1),
        "mask": (2, 1, 32, 32),
        "image": (2, 3, 32, 32),
    }
    assert model.get_feat_dims() == sum(s[1] for s in shapes.values()) == 4 * 32 + 4
    # l2_norm, scaled by 1/sqrt(4 stages) as Implicitron's: the 4 stages together have unit length
    assert torch.allclose(feats["res_layer_2"].norm(dim=1), torch.full((2, 4, 4), 0.5), atol=1e-5)
    assert torch.equal(feats["mask"], masks) and torch.equal(feats["image"], imgs)
    assert torch.all(model(imgs)["mask"] == 1.0)  # no mask given


def test_options_change_the_maps():
    model = extractor(stages=(2,), proj_dim=0, first_max_pool=False, add_masks=False, add_images=False,
                      global_average_pool=True, l2_norm=False, feature_rescale=2.0)
    feats = model(torch.rand(2, 3, 32, 32))
    assert list(feats) == ["res_layer_2"] and feats["res_layer_2"].shape == (2, 128, 8, 8)
    assert model.get_feat_dims() == 128
    assert torch.allclose(feats["res_layer_2"], feats["res_layer_2"][..., :1, :1].expand(-1, -1, 8, 8))
    image, mask = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    rescaled = extractor(image_rescale=0.5, stages=(1,), feature_rescale=3.0)(image, mask)
    assert rescaled["res_layer_1"].shape[-2:] == (4, 4) and rescaled["image"].shape[-2:] == (16, 16)
    torch.testing.assert_close(rescaled["mask"], 3.0 * mask)  # feature_rescale scales every map
    assert extractor(stages=(1, 2), proj_dim=64).get_feat_dims() == 64 + 64 + 4  # stage 1 has 64: kept


def test_gradients_reach_the_network():
    model = extractor()
    feats = model(torch.rand(2, 3, 32, 32))
    sum(f.sum() for f in feats.values()).backward()
    assert model.stem[0].weight.grad.abs().sum() > 0


def test_weights_are_loaded_from_a_local_torchvision_state_dict(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = extractor(weights_path=str(path))
    assert torch.equal(model.stem[0].weight, reference.conv1.weight)
    assert torch.equal(model.layers[3][0].conv1.weight, reference.layer4[0].conv1.weight)
    assert not torch.equal(extractor().stem[0].weight, reference.conv1.weight)  # random otherwise


def test_missing_or_wrong_weights_files_are_errors_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        extractor(weights_path=str(tmp_path / "nowhere.pth"))
    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match=r"resnet34.pth.*not a torchvision resnet18 state dict"):
        extractor(weights_path=str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        extractor(weights_path=str(garbage))


def test_bad_fields_are_config_errors():
    with pytest.raises(ConfigError, match="resnet19"):
        extractor(name="resnet19")
    with pytest.raises(ConfigError, match="stages"):
        extractor(stages=(0, 5))
