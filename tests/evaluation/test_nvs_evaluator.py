"""NVSEvaluator: withheld ground truth, averages, results_test.json, LPIPS from a local file."""

import dataclasses
import json
import math
import os

import pytest
import torch

from recon_trainer.config import get_default_args
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.data.frame_data import FrameData, collate
from recon_trainer.evaluation.nvs_evaluator import NVSEvaluator

SIZE = 32  # LPIPS's AlexNet needs >= 32 pixels per side
GRAY = 0.4


def frame(index: int) -> FrameData:
    """A uniformly gray frame whose right half is foreground at depth 2."""
    fg = torch.zeros(1, SIZE, SIZE)
    fg[:, :, SIZE // 2 :] = 1.0
    camera = look_at_cameras(torch.tensor([[0.0, 0.0, -3.0]]), torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]), 1.0)
    return FrameData(
        image_rgb=torch.full((3, SIZE, SIZE), GRAY),
        fg_probability=fg,
        mask_crop=torch.ones(1, SIZE, SIZE),
        depth_map=2.0 * fg,
        depth_mask=fg.clone(),
        camera=camera,
        image_size_hw=torch.tensor([SIZE, SIZE]),
        frame_number=index,
        sequence_name="seq",
        frame_type="test_unseen",
    )


class GrayRenderer(torch.nn.Module):
    """Renders the gray image everywhere with full opacity; checks it never sees the target's ground truth."""

    def forward(self, batch, evaluation_mode):
        assert batch.image_rgb is None and batch.fg_probability is None and batch.depth_map is None
        n = len(batch.camera)
        return {
            "images_render": torch.full((n, 3, SIZE // 2, SIZE // 2), GRAY),
            "masks_render": torch.ones(n, 1, SIZE // 2, SIZE // 2),
            "depths_render": torch.full((n, 1, SIZE // 2, SIZE // 2), 1.0),
        }


def evaluate(tmp_path, **fields):
    evaluator = NVSEvaluator(**{**get_default_args(NVSEvaluator), **fields})
    loader = [collate([frame(0)]), collate([frame(1)])]
    return evaluator.run(
        model=GrayRenderer(),
        dataloader=loader,
        device=torch.device("cpu"),
        exp_dir=str(tmp_path),
        epoch=3,
        dump_to_json=True,
    )


def test_without_lpips_weights_the_key_is_absent_and_one_line_says_why(tmp_path, capsys):
    averages = evaluate(tmp_path)
    lines = [line for line in capsys.readouterr().out.splitlines() if "LPIPS" in line]
    assert len(lines) == 1 and "lpips_backbone_weights" in lines[0]
    assert not any(key.startswith("lpips") for key in averages)
    assert averages["psnr_full_image"] == pytest.approx(100.0)
    assert averages["psnr_masked"] < 20  # the gray background is black in the masked ground truth
    assert averages["psnr_fg"] == pytest.approx(100.0)
    assert averages["iou"] == pytest.approx(0.5)
    assert averages["depth_abs_fg"] == pytest.approx(0.0, abs=1e-6)


def test_results_json_format(tmp_path):
    averages = evaluate(tmp_path)
    with open(os.path.join(tmp_path, "results_test.json")) as f:
        results = json.load(f)
    assert len(results) == 1
    entry = results[0]
    assert (entry["subset"], entry["subsubset"], entry["eval_epoch"]) == ("test", "diff=all", 3)
    assert entry["metrics"] == pytest.approx(averages)
    assert [row["frame_number"] for row in entry["per_frame"]] == [0, 1]
    assert entry["per_frame"][0]["sequence_name"] == "seq" and entry["per_frame"][0]["frame_type"] == "test_unseen"
    assert entry["per_frame"][0]["psnr_fg"] == pytest.approx(100.0)


def test_lpips_from_a_local_alexnet_state_dict(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    weights = os.path.join(tmp_path, "alexnet.pth")
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    averages = evaluate(tmp_path, lpips_backbone_weights=weights, lpips_net="alex")
    assert averages["lpips_full_image"] == pytest.approx(0.0, abs=1e-6)  # identical images
    assert averages["lpips_masked"] > 0.0


def test_lpips_from_a_local_vgg16_trunk_by_default(tmp_path):
    """Implicitron's evaluator uses LPIPS with VGG-16: the default; only the features are needed."""
    lpips = pytest.importorskip("lpips")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trunk = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False).net
    weights = os.path.join(tmp_path, "vgg16_features.pth")
    torch.save({"features." + name.split(".", 1)[1]: value for name, value in trunk.state_dict().items()}, weights)
    averages = evaluate(tmp_path, lpips_backbone_weights=weights)
    assert averages["lpips_full_image"] == pytest.approx(0.0, abs=1e-6)
    assert averages["lpips_masked"] > 0.0
    with pytest.raises(ValueError, match=r"not a torchvision AlexNet state dict \(lpips_net='alex'\)"):
        evaluate(tmp_path, lpips_backbone_weights=weights, lpips_net="alex")


def test_a_bad_lpips_weights_path_is_a_clear_error(tmp_path):
    missing = os.path.join(tmp_path, "nope.pth")
    with pytest.raises(FileNotFoundError, match=r"lpips_backbone_weights=.*nope.pth"):
        evaluate(tmp_path, lpips_backbone_weights=missing)
    not_alexnet = os.path.join(tmp_path, "other.pth")
    torch.save({"weight": torch.zeros(2)}, not_alexnet)
    with pytest.raises(ValueError, match=r"not a torchvision VGG-16 state dict"):
        evaluate(tmp_path, lpips_backbone_weights=not_alexnet)


def test_source_frames_keep_their_ground_truth_and_the_target_is_zeroed():
    from recon_trainer.evaluation.nvs_evaluator import withhold_target

    batch = collate([frame(0), frame(1)])
    withheld = withhold_target(batch)
    assert torch.all(withheld.image_rgb[0] == 0) and torch.equal(withheld.image_rgb[1], batch.image_rgb[1])
    assert torch.all(batch.image_rgb[0] == GRAY)  # the loader's batch is not modified


class TargetGrayRenderer(torch.nn.Module):
    """Renders gray; the target's (element 0) ground truth must be zeroed, the sources' kept."""

    def forward(self, batch, evaluation_mode):
        assert torch.all(batch.image_rgb[0] == 0) and torch.all(batch.image_rgb[1:] == GRAY)
        return GrayRenderer()(dataclasses.replace(batch, image_rgb=None, fg_probability=None, depth_map=None), None)


def test_multisequence_results_split_by_subset_and_source_views(tmp_path):
    def batch(frame_type, n_src, index):
        frames = [frame(index)] + [frame(100 + k) for k in range(n_src)]
        frames[0].frame_type = frame_type
        return collate(frames)

    loader = [batch("test_unseen", 1, 0), batch("test_unseen", 3, 1), batch("test_unseen", 3, 2)]
    loader.append(batch("train_unseen", 9, 3))
    evaluator = NVSEvaluator(**{**get_default_args(NVSEvaluator), "is_multisequence": True})
    averages = evaluator.run(
        model=TargetGrayRenderer(), dataloader=loader, device=torch.device("cpu"), exp_dir=str(tmp_path),
        dump_to_json=True,
    )
    with open(os.path.join(tmp_path, "results_test.json")) as f:
        results = json.load(f)
    summary = [(e["subset"], e["subsubset"], e["n_frames"]) for e in results]
    assert summary == [
        ("train", "diff=all", 1),
        ("train", "n_src=9", 1),
        ("test", "diff=all", 3),
        ("test", "n_src=1", 1),
        ("test", "n_src=3", 2),
    ]
    assert [row["n_src"] for row in results[2]["per_frame"]] == [1, 3, 3]
    assert "per_frame" not in results[1]
    assert averages["psnr_fg|subset=test|n_src=3"] == pytest.approx(100.0)
    assert averages["iou|subset=train|diff=all"] == pytest.approx(0.5)


def evaluate_with_empty_depth(tmp_path, convention):
    """Averages of two gray frames, the second with an all-zero depth map, under `convention`."""
    frames = [frame(0), frame(1)]
    frames[1].depth_map = torch.zeros_like(frames[1].depth_map)
    ramp = torch.linspace(2.0, 3.0, SIZE).view(1, SIZE, 1)
    frames[0].depth_map = ramp * frames[0].fg_probability  # a constant render cannot match it: error > 0
    evaluator = NVSEvaluator(**{**get_default_args(NVSEvaluator), "metrics_convention": convention})
    return evaluator.run(model=GrayRenderer(), dataloader=[collate([f]) for f in frames], device=torch.device("cpu"),
                         exp_dir=str(tmp_path), dump_to_json=True)


def test_metrics_convention_implicitron_averages_all_frames_and_channel_mean_skips_nan(tmp_path):
    implicitron = evaluate_with_empty_depth(tmp_path, "implicitron")
    channel_mean = evaluate_with_empty_depth(tmp_path, "channel_mean")
    # the same best scale for the first frame (depths ~2.5); the empty frame scores 0 in the plain
    # mean of "implicitron" and NaN, skipped, in "channel_mean"
    assert channel_mean["depth_abs_fg"] > 0.1
    assert implicitron["depth_abs_fg"] == pytest.approx(channel_mean["depth_abs_fg"] / 2, rel=1e-5)
    with open(os.path.join(tmp_path, "results_test.json")) as f:
        per_frame = json.load(f)[0]["per_frame"]
    assert per_frame[1]["depth_abs_fg"] is None  # NaN is written as null
    assert implicitron["rgb_l1_masked"] == pytest.approx(3 * channel_mean["rgb_l1_masked"])


def test_average_frames_is_a_plain_mean_over_the_frames_that_have_the_metric():
    from recon_trainer.evaluation.nvs_evaluator import average_frames

    rows = [{"n_src": 0, "psnr_fg": 10.0}, {"n_src": 0, "psnr_fg": 20.0, "depth_abs_fg": 0.5}]
    assert average_frames(rows) == {"psnr_fg": 15.0, "depth_abs_fg": 0.5}
    assert math.isnan(average_frames(rows + [{"psnr_fg": math.nan}])["psnr_fg"])


def test_an_unknown_metrics_convention_is_a_config_error():
    from recon_trainer.config.errors import ConfigError

    with pytest.raises(ConfigError, match=r"metrics_convention='co3d'.*'implicitron', 'channel_mean'"):
        NVSEvaluator(**{**get_default_args(NVSEvaluator), "metrics_convention": "co3d"})
