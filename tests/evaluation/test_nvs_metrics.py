"""NVS metrics against hand-computed values."""

import math

import pytest
import torch

from recon_trainer.evaluation import nvs_metrics as M


def test_psnr_of_a_known_mse():
    gt = torch.rand(2, 3, 4, 4) * 0.5
    assert torch.allclose(M.psnr(gt + 0.1, gt), torch.tensor([20.0, 20.0]))  # mse 0.01
    assert torch.allclose(M.psnr(gt, gt), torch.tensor([100.0, 100.0]))  # mse clamped at 1e-10


def test_mask_selects_the_pixels_of_psnr_and_l1():
    gt = torch.zeros(1, 3, 2, 2)
    pred = gt.clone()
    pred[..., 0, 0] = 0.5  # error only in pixel (0, 0)
    mask = torch.ones(1, 1, 2, 2)
    mask[..., 0, 0] = 0
    assert M.psnr(pred, gt, mask).item() == pytest.approx(100.0)
    assert M.rgb_l1(pred, gt).item() == pytest.approx(3 * 0.5 / 4)  # summed over channels, per pixel
    assert M.rgb_l1_channel_mean(pred, gt).item() == pytest.approx(0.5 / 4)
    only_error = 1 - mask
    assert M.mse(pred, gt, only_error).item() == pytest.approx(0.25)  # normalised by the masked channel count
    assert M.psnr(pred, gt, only_error).item() == pytest.approx(-10 * math.log10(0.25))


def test_iou():
    pred = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    gt = torch.tensor([[[[0.0, 1.0, 1.0, 1.0]]]])
    assert M.iou(pred, gt).item() == pytest.approx(1 / (4 + 1e-4))  # 1e-4 added to the union
    assert M.iou(pred, pred).item() == pytest.approx(2 / (2 + 1e-4))
    assert M.iou(torch.zeros_like(pred), torch.zeros_like(gt)).item() == 0.0
    crop = torch.tensor([[[[0.0, 1.0, 1.0, 1.0]]]])
    assert M.iou(pred, gt, crop).item() == pytest.approx(1 / (3 + 1e-4))
    soft_crop = torch.full_like(crop, 0.5)  # both masks are multiplied by the crop: 0.25 / (1 + 1.5 - 0.25)
    assert M.iou(pred, gt, soft_crop).item() == pytest.approx(0.25 / (2.25 + 1e-4))


def test_depth_error_is_zero_for_a_scaled_prediction_and_ignores_the_border():
    gt = torch.rand(2, 1, 16, 16) + 1.0
    gt[0, :, 8:, :] = 0  # unknown depth is not counted
    assert torch.allclose(M.depth_abs_best_scale(gt * 0.5, gt), torch.zeros(2), atol=1e-6)
    pred = gt * 3.0
    pred[:, :, :5] = 100.0  # within the 5-pixel border
    assert torch.allclose(M.depth_abs_best_scale(pred, gt), torch.zeros(2), atol=1e-5)
    assert not torch.allclose(M.depth_abs_best_scale(pred, gt, border=0), torch.zeros(2), atol=1e-3)
    assert torch.equal(M.depth_abs_best_scale(gt, torch.zeros_like(gt)), torch.zeros(2))  # no valid depth: 0
    assert torch.isnan(M.depth_abs_best_scale(gt, torch.zeros_like(gt), exact_scale=True)).all()


def test_depth_error_with_the_best_scale_by_hand():
    gt = torch.tensor([[[[1.0, 2.0]]]])
    pred = torch.tensor([[[[1.0, 1.0]]]])
    # s = (1 + 2) / (1 + 1) = 1.5; |1 - 1.5| + |2 - 1.5| = 1 over 2 pixels
    assert M.depth_abs_best_scale(pred, gt, border=0).item() == pytest.approx(0.5)


def test_eval_frame_resizes_renders_and_reports_every_metric():
    gt = torch.full((1, 3, 16, 16), 0.25)
    fg = torch.zeros(1, 1, 16, 16)
    fg[..., 4:12, 4:12] = 1.0
    depth = torch.full((1, 1, 16, 16), 2.0)
    render = gt * fg  # the mask and depth renders are at half the resolution: resized (nearest)
    results = M.eval_frame(
        image_render=render,
        image_gt=gt,
        mask_render=torch.nn.functional.interpolate(fg, size=(8, 8)),
        depth_render=torch.full((1, 1, 8, 8), 4.0),
        fg_probability=fg,
        depth_gt=depth,
        depth_mask=torch.ones_like(depth),
    )
    expected = {
        "psnr_full_image",
        "rgb_l1_full_image",
        "psnr_masked",
        "rgb_l1_masked",
        "psnr_fg",
        "rgb_l1_fg",
        "iou",
        "depth_abs_fg",
    }
    assert set(results) == expected and all(v.shape == (1,) for v in results.values())
    assert results["psnr_masked"].item() == pytest.approx(100.0)  # the render is the masked ground truth
    assert results["psnr_fg"].item() == pytest.approx(100.0)
    assert results["psnr_full_image"].item() == pytest.approx(-10 * math.log10(0.25**2 * 192 / 256), rel=1e-5)
    assert results["iou"].item() == pytest.approx(1.0, abs=1e-5)
    assert results["depth_abs_fg"].item() == pytest.approx(0.0, abs=1e-6)  # best scale 0.5


def test_eval_frame_without_masks_treats_the_whole_image_as_foreground():
    gt = torch.full((1, 3, 16, 16), 0.3)
    results = M.eval_frame(image_render=torch.full((1, 3, 8, 8), 0.3), image_gt=gt)  # bilinear upsampling
    expected = {"psnr_full_image", "rgb_l1_full_image", "psnr_masked", "rgb_l1_masked", "psnr_fg", "rgb_l1_fg"}
    assert set(results) == expected  # as Implicitron: without fg_probability every pixel is foreground
    assert all(results[name].item() == pytest.approx(100.0) for name in expected if name.startswith("psnr"))


def test_render_is_clamped_before_psnr_and_l1():
    gt = torch.ones(1, 3, 8, 8)
    render = torch.full_like(gt, 1.2)
    for convention in M.CONVENTIONS:
        results = M.eval_frame(image_render=render, image_gt=gt, convention=convention)
        assert results["psnr_full_image"].item() == pytest.approx(100.0)  # unclamped: -10 log10(0.04) = 14.0 dB
        assert results["rgb_l1_full_image"].item() == 0.0
    results = M.eval_frame(image_render=torch.full_like(gt, -0.5), image_gt=torch.zeros_like(gt))
    assert results["psnr_masked"].item() == pytest.approx(100.0)


def test_rgb_l1_divides_by_the_one_channel_mask_sum():
    gt = torch.full((1, 3, 8, 8), 0.25)
    render = torch.full_like(gt, 0.5)
    fg = torch.zeros(1, 1, 8, 8)
    fg[..., :4] = 1.0
    implicitron = M.eval_frame(image_render=render, image_gt=gt, fg_probability=fg)
    channel_mean = M.eval_frame(image_render=render, image_gt=gt, fg_probability=fg, convention="channel_mean")
    assert implicitron["rgb_l1_full_image"].item() == pytest.approx(0.75)  # 3 channels x 0.25
    assert channel_mean["rgb_l1_full_image"].item() == pytest.approx(0.25)
    assert implicitron["rgb_l1_fg"].item() == pytest.approx(0.75)
    # masked gt: 0.25 on the foreground half, black elsewhere: (3 x 0.25 + 3 x 0.5) / 2 per pixel
    assert implicitron["rgb_l1_masked"].item() == pytest.approx(1.125)
    assert channel_mean["rgb_l1_masked"].item() == pytest.approx(0.375)
    assert M.rgb_l1(render, gt, torch.zeros_like(fg)).item() == 0.0  # empty mask: divided by max(0, 1)


def test_missing_or_empty_depth():
    gt = torch.full((1, 3, 16, 16), 0.5)
    frame = {"image_render": gt, "image_gt": gt, "mask_render": torch.ones(1, 1, 16, 16),
             "depth_render": torch.full((1, 1, 16, 16), 2.0)}
    assert "depth_abs_fg" not in M.eval_frame(**frame)  # no depth map: no depth metric
    empty = torch.zeros(1, 1, 16, 16)
    assert M.eval_frame(**frame, depth_gt=empty)["depth_abs_fg"].item() == 0.0
    assert math.isnan(M.eval_frame(**frame, depth_gt=empty, convention="channel_mean")["depth_abs_fg"].item())
    masked_out = M.eval_frame(**frame, depth_gt=torch.full_like(empty, 3.0), depth_mask=empty)  # depth_map * depth_mask
    assert masked_out["depth_abs_fg"].item() == 0.0


def test_depth_scale_floor_for_small_depths():
    pred = torch.full((1, 1, 2, 2), 0.005)
    gt = torch.full((1, 1, 2, 2), 0.01)
    # mean(pred^2) = 2.5e-5 is floored at 1e-4: s = mean(pred * gt) / 1e-4 = 5e-5 / 1e-4 = 0.5,
    # |0.01 - 0.5 * 0.005| = 0.0075; the exact least-squares scale is 2, error 0
    assert M.depth_abs_best_scale(pred, gt, border=0).item() == pytest.approx(0.0075)
    assert M.depth_abs_best_scale(pred, gt, border=0, exact_scale=True).item() == pytest.approx(0.0, abs=1e-9)
    # the means run over every pixel of the (cropped) image, invalid ones counting 0
    pred, gt = torch.tensor([[[[1.0, 1.0]]]]), torch.tensor([[[[2.0, 0.0]]]])
    assert M.depth_abs_best_scale(pred, gt, border=0).item() == pytest.approx(0.0)  # s = 1 / 0.5 = 2
    mask = torch.tensor([[[[0.5, 1.0]]]])  # mask > 0.5 selects the valid pixels: none here
    assert M.depth_abs_best_scale(pred, gt, mask, border=0).item() == 0.0


def test_unknown_convention_is_a_clear_error():
    gt = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"convention='co3d'.*'implicitron', 'channel_mean'"):
        M.eval_frame(image_render=gt, image_gt=gt, convention="co3d")
