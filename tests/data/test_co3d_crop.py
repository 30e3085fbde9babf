"""Box crop / resize maths (recon_trainer/data/crop.py) and the CO3D viewpoint conversions."""
import math

import pytest
import torch

from recon_trainer.data import crop
from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras
from recon_trainer.data.providers.co3d.viewpoints import camera_from_viewpoint, viewpoint_from_camera


def _camera(size_hw=(30, 50)) -> PerspectiveCameras:
    camera = look_at_cameras(torch.tensor([[1.0, 0.8, 3.5]]), torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]),
                             focal_length=2.2, image_size_hw=size_hw)
    camera.principal_point = torch.tensor([[0.07, -0.04]])
    camera.focal_length = torch.tensor([[2.2, 2.1]])
    return camera


def _pixels(camera: PerspectiveCameras, points: torch.Tensor, size_hw) -> torch.Tensor:
    """(P, 2) pixel x, y (continuous, pixel j spans [j, j + 1]) of world points (P, 3)."""
    return camera.ndc_to_pixel(camera.transform_points_ndc(points[None])[0, :, :2], size_hw)


def test_bbox_from_mask_threshold_and_empty():
    mask = torch.zeros(10, 12)
    mask[2:5, 3:9] = 0.9
    assert crop.bbox_from_mask(mask, 0.4) == (3, 2, 6, 3)
    faint = mask * 0.3  # nothing passes 0.4: the threshold is lowered until the pixels pass
    assert crop.bbox_from_mask(faint, 0.4) == (3, 2, 6, 3)
    assert crop.bbox_from_mask(torch.zeros(4, 4), 0.4) is None


def test_crop_box_with_context_grows_and_clips():
    assert crop.crop_box_with_context((10, 10, 10, 20), 0.3, (100, 100)) == (8, 7, 22, 33)
    assert crop.crop_box_with_context((0, 0, 10, 10), 1.0, (8, 9)) == (0, 0, 9, 8)
    assert crop.crop_box_with_context((5, 5, 0, 0), 0.0, (20, 20)) == (5, 5, 7, 7)  # at least 2 pixels


def test_resize_and_pad_keeps_aspect_and_marks_valid_pixels():
    image = torch.rand(3, 10, 20)
    out, mask_crop = crop.resize_and_pad(image, (16, 16), "bilinear")
    assert out.shape == (3, 16, 16) and mask_crop.shape == (1, 16, 16)
    assert mask_crop[0, :8].eq(1).all() and mask_crop[0, 8:].eq(0).all()
    assert out[:, 8:].abs().max() == 0
    same, ones = crop.resize_and_pad(image, None, "nearest")
    assert torch.equal(same, image) and ones.eq(1).all()


@pytest.mark.parametrize("box,out_hw", [((7, 4, 33, 25), (24, 24)), (None, (20, 40)), ((3, 2, 40, 30), None)])
def test_projected_point_lands_on_the_same_content(box, out_hw):
    size_hw = (30, 50)
    camera = _camera(size_hw)
    points = torch.tensor([[0.1, 0.2, -0.1], [-0.3, 0.0, 0.2], [0.25, -0.2, 0.3]])
    before = _pixels(camera, points, size_hw)
    cropped = crop.crop_resize_camera(camera, size_hw, box, out_hw)
    out_size = tuple(cropped.image_size[0].tolist())
    after = _pixels(cropped, points, out_size)
    x0, y0 = (0, 0) if box is None else box[:2]
    h, w = size_hw if box is None else (box[3] - box[1], box[2] - box[0])
    new_h, new_w = crop.fit_size((h, w), out_hw)
    expected = (before - torch.tensor([x0, y0])) * torch.tensor([new_w / w, new_h / h])
    assert torch.allclose(after, expected, atol=1e-3)
    # Image content: a bright 3x3 spot under each projected point stays under it after the crop.
    image = torch.zeros(1, *size_hw)
    for x, y in before.tolist():
        image[0, int(y) - 1: int(y) + 2, int(x) - 1: int(x) + 2] = 1.0
    if box is not None:
        image = crop.crop_image(image, box)
    resized, _ = crop.resize_and_pad(image, out_hw, "nearest")
    for x, y in after.tolist():
        assert resized[0, int(y), int(x)] == 1.0


def test_intrinsics_pixel_round_trip():
    focal, principal = torch.tensor([2.0, 1.5], dtype=torch.float64), torch.tensor([0.1, -0.2], dtype=torch.float64)
    pix = crop.intrinsics_ndc_to_pixels(focal, principal, (30, 50))
    assert torch.allclose(pix[0], torch.tensor([30.0, 22.5], dtype=torch.float64))
    assert torch.allclose(pix[1], torch.tensor([25.0 - 1.5, 15.0 + 3.0], dtype=torch.float64))
    back = crop.intrinsics_pixels_to_ndc(*pix, (30, 50))
    assert torch.allclose(back[0], focal) and torch.allclose(back[1], principal)


@pytest.mark.parametrize("intrinsics_format", ["ndc_norm_image_bounds", "ndc_isotropic"])
def test_viewpoint_round_trip_and_formats(intrinsics_format):
    size_hw = (30, 50)
    camera = _camera(size_hw)
    viewpoint = viewpoint_from_camera(camera, size_hw, intrinsics_format)
    back = camera_from_viewpoint(viewpoint, size_hw)
    assert torch.allclose(back.focal_length, camera.focal_length, atol=1e-6)
    assert torch.allclose(back.principal_point, camera.principal_point, atol=1e-6)
    assert torch.equal(back.R, camera.R) and torch.equal(back.T, camera.T)
    if intrinsics_format == "ndc_norm_image_bounds":  # the image spans [-1, 1] along x: fx scales by H / W
        assert math.isclose(viewpoint.focal_length[0], 2.2 * 30 / 50, rel_tol=1e-6)
        assert math.isclose(viewpoint.focal_length[1], 2.1, rel_tol=1e-6)
    else:
        assert viewpoint.focal_length == pytest.approx((2.2, 2.1))
