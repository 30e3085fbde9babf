"""view_losses: ground truth read at the rays' NDC points, and the loss values."""
import math

import pytest
import torch

from recon_trainer.errors import NonFiniteError
from recon_trainer.models.view_losses import sample_at_ndc, view_losses
from recon_trainer.rendering.ndc_grid import ndc_pixel_centers


@pytest.mark.parametrize("height, width", [(5, 5), (4, 6), (6, 4)])
def test_reading_at_pixel_centres_returns_the_pixels(height, width):
    image = torch.rand(2, 3, height, width)
    xys = ndc_pixel_centers(height, width).expand(2, height, width, 2)
    read = sample_at_ndc(image, xys, "nearest")
    assert torch.equal(read.permute(0, 3, 1, 2), image)
    assert torch.allclose(sample_at_ndc(image, xys).permute(0, 3, 1, 2), image, atol=1e-6)


def test_the_top_left_pixel_has_the_largest_ndc_x_and_y():
    image = torch.zeros(1, 1, 4, 4)
    image[..., 0, 0] = 1.0
    assert sample_at_ndc(image, torch.tensor([[[0.75, 0.75]]]), "nearest").item() == 1.0


def test_loss_values_by_hand():
    xys = ndc_pixel_centers(2, 2).reshape(1, 4, 2)
    image = torch.zeros(1, 3, 2, 2)
    fg = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    features = torch.full((1, 4, 3), 0.1)
    masks = torch.full((1, 4, 1), 0.5)
    depths = torch.full((1, 4, 1), 2.0)
    depth_map = torch.tensor([[[[3.0, 0.0], [1.0, 0.0]]]])  # 0 = unknown
    losses = view_losses(
        features=features, depths=depths, masks=masks, xys=xys, image_rgb=image, fg_probability=fg, depth_map=depth_map
    )
    assert losses["rgb_mse"].item() == pytest.approx(0.01)
    assert losses["rgb_psnr"].item() == pytest.approx(20.0)
    assert losses["rgb_psnr_fg"].item() == pytest.approx(20.0)
    assert losses["mask_bce"].item() == pytest.approx(math.log(2.0))
    assert losses["depth_abs"].item() == pytest.approx(1.0)  # |2 - 3| and |2 - 1| where the depth is known
    assert losses["depth_abs_fg"].item() == pytest.approx(1.0)
    assert set(view_losses(features=features, depths=depths, masks=masks, xys=xys)) == set()


def test_l1_huber_and_neg_iou_by_hand():
    xys = ndc_pixel_centers(2, 2).reshape(1, 4, 2)
    image = torch.zeros(1, 3, 2, 2)
    fg = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    features = torch.full((1, 4, 3), 0.3)
    masks = torch.tensor([[[1.0], [0.0], [1.0], [0.0]]])  # pixels (0, 0), (0, 1), (1, 0), (1, 1)
    depths = torch.ones(1, 4, 1)
    losses = view_losses(features=features, depths=depths, masks=masks, xys=xys, image_rgb=image, fg_probability=fg)
    assert losses["rgb_l1"].item() == pytest.approx(0.3)
    assert losses["rgb_huber"].item() == pytest.approx(0.03 * (math.sqrt(1 + 100) - 1), rel=1e-5)
    assert losses["mask_neg_iou"].item() == pytest.approx(1 - 1 / 3, rel=1e-5)  # intersection 1, union 3
    empty = view_losses(features=features, depths=depths, masks=masks * 0, xys=xys, fg_probability=fg * 0)
    assert empty["mask_neg_iou"].item() == pytest.approx(0.0)


def test_a_nan_opacity_is_reported_before_the_cross_entropy_fails_on_it():
    xys = ndc_pixel_centers(2, 2).reshape(1, 4, 2)
    masks = torch.tensor([[[0.5], [float("nan")], [0.5], [float("inf")]]])
    with pytest.raises(NonFiniteError, match=r"the rendered opacity \(mask_bce's input\) holds 2 NaN or infinite"):
        view_losses(features=torch.zeros(1, 4, 3), depths=torch.ones(1, 4, 1), masks=masks, xys=xys,
                    fg_probability=torch.ones(1, 1, 2, 2))
