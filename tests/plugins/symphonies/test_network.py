"""The Symphonies network: parity of the decoder with the ORIGINAL SymphoniesDecoder (stored fixture, original
key names mapped by checkpoint.py), geometry, shapes on the NYU and a KITTI-like grid, gradients, the
encoder's pretrained loading and the released-checkpoint key mapping."""
import os

import pytest
import torch
from recon_trainer_plugins.symphonies.checkpoint import (
    load_original_decoder_state_dict,
    load_symphonies_checkpoint,
    load_symphonies_state_dict,
    original_to_ours,
)
from recon_trainer_plugins.symphonies.decoder import (
    SymphoniesDecoder,
    downsample_projection,
)
from recon_trainer_plugins.symphonies.encoder import SymphoniesImageEncoder
from recon_trainer_plugins.symphonies.network import SymphoniesNetwork
from recon_trainer_plugins.symphonies.voxel_proposal import (
    lift_pixels_to_voxels,
    voxel_hit_mask,
)

from recon_trainer.errors import DataFileError

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "symphonies", "decoder_parity.pt")


@pytest.fixture(scope="module")
def parity_cases():
    return torch.load(FIXTURE, map_location="cpu", weights_only=True)


def decoder_from_case(case):
    config = case["config"]
    decoder = SymphoniesDecoder(config["embed_dims"], config["num_classes"], config["scene_shape"],
                                config["project_scale"], config["image_shape"], config["downsample_z"],
                                config["num_layers"], scene_pos_shape=config["scene_pos_shape"],
                                scene_pos_squeeze=config["scene_pos_squeeze"], dropout=0.0)
    state = dict(case["state_dict"])
    if not any(key.startswith("aspp.") for key in state):  # left out of the fixture when no layer reaches ASPP
        state.update({"aspp.blks." + key[len("aspp.branches."):]: value
                      for key, value in decoder.state_dict().items() if key.startswith("aspp.")})
    report = load_original_decoder_state_dict(decoder, state)
    assert report["not_loaded"] == []
    assert report["unused"] == {"image_grid": "recomputed buffer", "voxel_grid": "recomputed buffer"}
    return decoder


def run_case(decoder, case):
    inputs = case["inputs"]
    intrinsics = inputs["K"].clone()
    intrinsics[:, :2, 2] += 0.5  # the original's K has integer pixel centres; ours u + 0.5
    voxel_size = torch.full((1, 3), case["config"]["voxel_size"])
    return decoder(inputs["queries"], inputs["pred_pts"], inputs["feats"], inputs["depth"], intrinsics, inputs["E"],
                   inputs["voxel_origin"], voxel_size, inputs["projected_pix"], inputs["fov_mask"])


def assert_parity(ours, theirs):
    # random weights give logits of magnitude ~100: compare relative to the output's scale
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))


@pytest.mark.parametrize("name", ["nyu_like", "kitti_like"])
def test_decoder_matches_original_in_eval_mode(parity_cases, name):
    case = parity_cases[name]
    decoder = decoder_from_case(case).eval()
    with torch.no_grad():
        outputs = run_case(decoder, case)
    assert len(outputs) == 1
    assert outputs[0].shape == (1, case["config"]["num_classes"], *case["config"]["scene_shape"])
    assert_parity(outputs[0], case["eval_output"])


@pytest.mark.parametrize("name", ["nyu_like", "kitti_like"])
def test_decoder_matches_original_in_training_mode_with_gradients(parity_cases, name):
    case = parity_cases[name]
    decoder = decoder_from_case(case).train()
    outputs = run_case(decoder, case)
    assert len(outputs) == case["config"]["num_layers"] == len(case["train_outputs"])
    for ours, theirs in zip(outputs, case["train_outputs"]):
        assert_parity(ours, theirs)
    # the same scalar as the fixture's driver: sum_i (i + 1) * <output_i, ramp>
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() * (i + 1) for i, o in enumerate(outputs))
    loss.backward()
    parameters = dict(decoder.named_parameters())
    for original_key, grad in case["grads"].items():
        ours = parameters[original_to_ours("decoder." + original_key)[len("decoder."):]].grad
        torch.testing.assert_close(ours, grad, rtol=1e-4, atol=1e-4 * float(grad.abs().max()))


def test_lifting_matches_the_original_integer_centre_formula():
    generator = torch.Generator().manual_seed(0)
    height, width = 6, 8
    k_original = torch.tensor([[30.0, 0, 4], [0, 28.0, 3], [0, 0, 1]])
    world_to_camera = torch.eye(4)
    world_to_camera[:3, 3] = torch.tensor([0.3, -0.2, 0.5])
    depth = 0.5 + 2 * torch.rand(1, height, width, generator=generator)
    origin, size = torch.tensor([[-1.0, -0.8, 0.4]]), torch.tensor([[0.1, 0.12, 0.15]])
    ours_k = k_original.clone()
    ours_k[:2, 2] += 0.5
    hits = lift_pixels_to_voxels(depth, ours_k[None], world_to_camera[None], origin, size, downsample_z=2)
    # original pix2vox: integer pixel (u, v), integer-centre K, minus 0.5 voxel, z / downsample_z, .long()
    v, u = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    camera = torch.linalg.inv(k_original) @ (torch.stack([u, v, torch.ones_like(u)]).view(3, -1) * depth.view(1, -1))
    world = camera - world_to_camera[:3, 3:]
    voxel = (world.t() - origin) / size - 0.5
    voxel[:, 2] /= 2
    torch.testing.assert_close(hits[0], voxel.long())
    mask = voxel_hit_mask(hits, (30, 30, 10))
    assert mask.shape == (9000,) and mask.sum() > 0


def test_downsample_projection_averages_pairs_of_z():
    pixels = torch.tensor([[0, 0], [3, 1], [10, 20], [11, 21]]).view(1, 4, 2)  # grid (1, 1, 4)
    fov = torch.tensor([[False, True, False, False]])
    coarse_pixels, coarse_fov = downsample_projection(pixels, fov, (1, 1, 4), (1, 1, 2))
    assert coarse_pixels.dtype == torch.long
    assert coarse_pixels.tolist() == [[[1, 0], [10, 20]]]  # (0 + 3) / 2 = 1.5 -> 1; (10 + 11) / 2 -> 10
    assert coarse_fov.tolist() == [[True, False]]


def tiny_inputs(scene_shape, project_scale, image_shape, generator):
    height, width = image_shape
    projection = [s // project_scale for s in scene_shape]
    count = projection[0] * projection[1] * projection[2]
    intrinsics = torch.tensor([[[40.0, 0, width / 2], [0, 40.0, height / 2], [0, 0, 1]]])
    return dict(image=torch.randn(1, 3, height, width, generator=generator),
                depth=0.5 + 3 * torch.rand(1, height, width, generator=generator),
                intrinsics=intrinsics, world_to_camera=torch.eye(4)[None],
                voxel_origin=torch.tensor([[-1.0, -1.0, 0.3]]), voxel_size=torch.full((1, 3), 0.1),
                projected_pix=torch.randint(-2, max(height, width) + 2, (1, count, 2), generator=generator),
                fov_mask=torch.rand(1, count, generator=generator) > 0.4)


def test_kitti_like_grid_shapes_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    network = SymphoniesNetwork(16, 4, (16, 16, 8), project_scale=2, image_shape=(32, 48), downsample_z=2,
                                num_layers=3, num_queries=6, resnet_depth=18, fpn_channels=32,
                                scene_pos_shape=(4, 4, 2), scene_pos_squeeze=(2, 2, 1))
    assert network.decoder.grid_shape == (8, 8, 2)
    inputs = tiny_inputs((16, 16, 8), 2, (32, 48), torch.Generator().manual_seed(1))
    network.train()
    outputs = network(**inputs)
    assert [tuple(o.shape) for o in outputs] == [(1, 4, 16, 16, 8)] * 3
    sum(o.square().mean() for o in outputs).backward()
    no_grad = [name for name, p in network.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    network.eval()
    with torch.no_grad():
        assert len(network(**inputs)) == 1


def test_nyu_grid_shapes():
    torch.manual_seed(0)
    network = SymphoniesNetwork(16, 12, (60, 60, 36), project_scale=1, image_shape=(32, 48), num_layers=1,
                                num_heads=4, num_points=2, num_queries=4, resnet_depth=18, fpn_channels=32).eval()
    assert network.decoder.grid_shape == (60, 60, 36)
    with torch.no_grad():
        outputs = network(**tiny_inputs((60, 60, 36), 1, (32, 48), torch.Generator().manual_seed(2)))
    assert len(outputs) == 1 and outputs[0].shape == (1, 12, 60, 60, 36)
    assert torch.isfinite(outputs[0]).all()


def test_decoder_runs_in_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    network = SymphoniesNetwork(16, 3, (8, 8, 4), 1, (32, 48), num_layers=1, num_queries=4, resnet_depth=18,
                                fpn_channels=32).eval()
    inputs = tiny_inputs((8, 8, 4), 1, (32, 48), torch.Generator().manual_seed(3))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = network(**inputs)
    assert outputs[0].dtype == torch.float32
    network.decoder.full_precision = False  # the decoder under autocast too (not the original's behaviour)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = network(**inputs)
    assert outputs[0].dtype == torch.bfloat16 and torch.isfinite(outputs[0].float()).all()


def test_input_errors():
    network = SymphoniesNetwork(16, 3, (8, 8, 4), 1, (32, 48), num_layers=1, num_queries=4, resnet_depth=18,
                                fpn_channels=32)
    inputs = tiny_inputs((8, 8, 4), 1, (32, 48), torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match="one sample"):
        network(**{**inputs, "image": inputs["image"].repeat(2, 1, 1, 1)})
    with pytest.raises(ValueError, match="depth"):
        network(**{**inputs, "depth": inputs["depth"][:, :16]})
    with pytest.raises(ValueError, match="projected_pix"):
        network(**{**inputs, "projected_pix": inputs["projected_pix"].int()})
    with pytest.raises(ValueError, match="fov_mask"):
        network(**{**inputs, "fov_mask": inputs["fov_mask"].float()})


def test_encoder_levels_and_strides():
    encoder = SymphoniesImageEncoder(16, num_queries=5, resnet_depth=18, fpn_channels=32)
    out = encoder(torch.randn(1, 3, 64, 96))
    assert encoder.strides == (4, 8, 16)
    assert [tuple(f.shape) for f in out["feats"]] == [(1, 16, 16, 24), (1, 16, 8, 12), (1, 16, 4, 6)]
    assert out["queries"].shape == (1, 5, 16) and out["query_points"].shape == (1, 5, 2)
    assert ((out["query_points"] > 0) & (out["query_points"] < 1)).all()


def test_encoder_loads_torchvision_and_maskdino_layouts(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(reference, tmp_path / "resnet18.pth")
    encoder = SymphoniesImageEncoder(16, resnet_depth=18, fpn_channels=32, pretrained=str(tmp_path / "resnet18.pth"))
    report = encoder.pretrained_report
    assert "backbone.layer4.1.bn2.running_var" in report["loaded"]
    assert set(report["skipped"]) == {"fc.weight", "fc.bias"}
    torch.testing.assert_close(encoder.backbone.conv1.weight, reference["conv1.weight"])
    assert encoder.norm_eval and not encoder.backbone.bn1.weight.requires_grad
    encoder.train()
    assert not encoder.backbone.bn1.training and encoder.out_projs[0][1].training

    lateral = torch.randn(32, 128, 1, 1)
    maskdino = {"state_dict": {"backbone.conv1.weight": reference["conv1.weight"] * 2,
                               "panoptic_head.pixel_decoder.input_proj.0.0.weight": lateral,
                               "panoptic_head.pixel_decoder.input_proj.3.0.weight": torch.randn(32, 512, 3, 3),
                               "panoptic_head.pixel_decoder.transformer.encoder.layers.0.norm.weight": torch.ones(256),
                               "backbone.layer1.0.conv1.weight": torch.randn(64, 256, 1, 1)}}
    torch.save(maskdino, tmp_path / "maskdino.pth")
    encoder = SymphoniesImageEncoder(16, resnet_depth=18, fpn_channels=32, pretrained=str(tmp_path / "maskdino.pth"))
    report = encoder.pretrained_report
    assert report["loaded"] == ["backbone.conv1.weight", "pyramid.lateral.0.0.weight"]
    assert report["skipped"]["panoptic_head.pixel_decoder.transformer.encoder.layers.0.norm.weight"] == "no counterpart"
    assert report["skipped"]["panoptic_head.pixel_decoder.input_proj.3.0.weight"] == "no counterpart"
    assert report["skipped"]["backbone.layer1.0.conv1.weight"].startswith("shape")
    torch.testing.assert_close(encoder.pyramid.lateral[0][0].weight, lateral)

    with pytest.raises(DataFileError, match="no such file"):
        SymphoniesImageEncoder(16, resnet_depth=18, pretrained=str(tmp_path / "absent.pth"))
    torch.save({"state_dict": {"something.else": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(DataFileError, match="no tensor fits"):
        SymphoniesImageEncoder(16, resnet_depth=18, pretrained=str(tmp_path / "other.pth"))


def test_released_checkpoint_mapping(parity_cases, tmp_path):
    case = parity_cases["nyu_like"]
    config = case["config"]
    network = SymphoniesNetwork(config["embed_dims"], config["num_classes"], config["scene_shape"],
                                config["project_scale"], config["image_shape"], num_layers=config["num_layers"],
                                num_queries=config["num_queries"], resnet_depth=18, fpn_channels=32,
                                scene_pos_shape=config["scene_pos_shape"],
                                scene_pos_squeeze=config["scene_pos_squeeze"])
    state = {"model.decoder." + key: value for key, value in case["state_dict"].items()}
    ours_encoder = network.encoder.state_dict()
    state.update({
        "model.encoder.query_embed.weight": torch.randn(config["num_queries"], config["embed_dims"]),
        "model.encoder.pts_embed.weight": torch.randn(config["num_queries"], 2),
        "model.encoder.out_projs.1.1.running_var": torch.rand(config["embed_dims"]) + 0.5,
        "model.encoder.model.backbone.conv1.weight": torch.randn(ours_encoder["backbone.conv1.weight"].shape),
        "model.encoder.model.panoptic_head.pixel_decoder.mask_features.weight": torch.randn(256, 256, 1, 1),
    })
    torch.save({"state_dict": state, "epoch": 25}, tmp_path / "symphonies.ckpt")
    report = load_symphonies_checkpoint(network, str(tmp_path / "symphonies.ckpt"))
    assert "decoder.layers.2.scene_self_attn.attention.attention.sampling_offsets.weight" in report["loaded"]
    assert {"encoder.query_embed.weight", "encoder.point_embed.weight", "encoder.out_projs.1.1.running_var",
            "encoder.backbone.conv1.weight"} <= set(report["loaded"])
    assert report["unused"]["model.encoder.model.panoptic_head.pixel_decoder.mask_features.weight"] == "no counterpart"
    assert report["unused"]["model.decoder.voxel_grid"] == "recomputed buffer"
    assert not any(key.startswith("decoder.") for key in report["not_loaded"])
    torch.testing.assert_close(network.encoder.point_embed.weight, state["model.encoder.pts_embed.weight"])

    wrong = dict(state)
    wrong["model.decoder.scene_embed.weight"] = torch.zeros(3, config["embed_dims"])
    with pytest.raises(ValueError, match="decoder.scene_embed.weight"):
        load_symphonies_state_dict(network, wrong)
    torch.save({"state_dict": wrong}, tmp_path / "wrong.ckpt")
    with pytest.raises(DataFileError, match="does not fit"):
        load_symphonies_checkpoint(network, str(tmp_path / "wrong.ckpt"))
    with pytest.raises(DataFileError, match="no such file"):
        load_symphonies_checkpoint(network, str(tmp_path / "absent.ckpt"))
