"""circular_trajectory: a circle of training cameras is recovered."""
import math

import pytest
import torch

from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras
from recon_trainer.rendering.trajectory import circular_trajectory, optical_axes_intersection

DTYPE = torch.float64
CENTER = torch.tensor([0.5, -0.2, 0.3], dtype=DTYPE)
UP = torch.nn.functional.normalize(torch.tensor([0.1, 1.0, 0.2], dtype=DTYPE), dim=0)
RADIUS, HEIGHT = 3.0, 1.5


def circle_basis():
    e1 = torch.nn.functional.normalize(torch.linalg.cross(UP, torch.tensor([0.0, 0.0, 1.0], dtype=DTYPE)), dim=0)
    return e1, torch.linalg.cross(UP, e1)


def cameras_on_circle(angles) -> PerspectiveCameras:
    e1, e2 = circle_basis()
    angles = torch.tensor(angles, dtype=DTYPE)
    eyes = CENTER + HEIGHT * UP + RADIUS * (angles.cos()[:, None] * e1 + angles.sin()[:, None] * e2)
    n = len(angles)
    cams = look_at_cameras(eyes, CENTER.expand(n, 3), UP.expand(n, 3), focal_length=2.0, image_size_hw=(60, 80))
    cams.principal_point = torch.tensor([[0.1, 0.0]] * n, dtype=DTYPE)
    return cams


def assert_on_the_circle_looking_at_the_centre(cams: PerspectiveCameras) -> None:
    offsets = cams.get_camera_center() - CENTER
    heights = offsets @ UP
    torch.testing.assert_close(heights, torch.full_like(heights, HEIGHT))
    radii = (offsets - heights[:, None] * UP).norm(dim=-1)
    torch.testing.assert_close(radii, torch.full_like(radii, RADIUS))
    ndc = cams.transform_points_ndc(CENTER.expand(len(cams), 1, 3))[:, 0]
    torch.testing.assert_close(ndc[:, :2], cams.principal_point)  # the centre is on every optical axis
    assert (cams.R[:, :, 1] @ UP > 0).all()  # upright


def test_optical_axes_meet_at_the_centre():
    torch.testing.assert_close(optical_axes_intersection(cameras_on_circle([0.0, 1.0, 2.5])), CENTER)


def test_a_full_circle_is_recovered():
    train = cameras_on_circle([0.3 + k * 2 * math.pi / 8 for k in range(8)])
    path = circular_trajectory(train, 12)
    assert len(path) == 12
    assert_on_the_circle_looking_at_the_centre(path)
    torch.testing.assert_close(path.get_camera_center()[0], train.get_camera_center()[0])  # starts at camera 0
    torch.testing.assert_close(path.focal_length, train.focal_length[:1].expand(12, 2))
    assert path.image_size.tolist() == [[60, 80]] * 12
    steps = (path.get_camera_center() - path.get_camera_center().roll(1, dims=0)).norm(dim=-1)
    torch.testing.assert_close(steps, torch.full_like(steps, 2 * RADIUS * math.sin(math.pi / 12)))  # evenly spaced


def test_a_partial_arc_with_the_up_vector_given():
    train = cameras_on_circle([0.0, 0.4, 0.9])  # the mean camera up is tilted towards the centre here
    assert_on_the_circle_looking_at_the_centre(circular_trajectory(train, 5, up=UP))
    assert_on_the_circle_looking_at_the_centre(circular_trajectory(train, 5, up=UP, center=CENTER))


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="n_cameras must be >= 1"):
        circular_trajectory(cameras_on_circle([0.0, 1.0]), 0)
    above = look_at_cameras(
        (CENTER + 2 * UP)[None], CENTER[None], torch.tensor([[1.0, 0.0, 0.0]], dtype=DTYPE), focal_length=1.0
    )
    with pytest.raises(ValueError, match="straight above the centre"):
        circular_trajectory(above, 4, up=UP, center=CENTER)
