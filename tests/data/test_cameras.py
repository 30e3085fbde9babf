"""PerspectiveCameras conventions pinned with hand-computed values (pytorch3d's NDC conventions)."""
import math

import pytest
import torch

from recon_trainer.data.cameras import (
    PerspectiveCameras,
    cameras_from_opencv,
    cameras_from_opengl_c2w,
    intrinsics_pixels_to_ndc,
    join_cameras,
    look_at_cameras,
    opencv_from_cameras,
    opengl_c2w_from_cameras,
)

DTYPE = torch.float64


def _camera(R=None, T=(0.0, 0.0, 2.0), focal=(2.0, 3.0), principal=(0.0, 0.0), image_size=None) -> PerspectiveCameras:
    return PerspectiveCameras(
        R=(torch.eye(3, dtype=DTYPE) if R is None else R)[None],
        T=torch.tensor([T], dtype=DTYPE),
        focal_length=torch.tensor([focal], dtype=DTYPE),
        principal_point=torch.tensor([principal], dtype=DTYPE),
        image_size=None if image_size is None else torch.tensor([image_size]),
    )


def _rotation(axis, angle: float) -> torch.Tensor:
    """(3, 3) rotation matrix (column-vector convention) about `axis` by `angle` (Rodrigues)."""
    k = torch.nn.functional.normalize(torch.tensor(axis, dtype=DTYPE), dim=0)
    K = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=DTYPE)
    return torch.eye(3, dtype=DTYPE) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_world_point_to_ndc_by_hand():
    # identity rotation, camera 2 units behind the origin along -z: view = X + (0, 0, 2)
    cam = _camera(focal=(2.0, 3.0), principal=(0.1, -0.2))
    points = torch.tensor([[[1.0, 0.0, 0.0], [0.5, -1.0, 2.0]]], dtype=DTYPE)
    ndc = cam.transform_points_ndc(points)
    # (1, 0, 0) -> view (1, 0, 2): x = 2 * 1 / 2 + 0.1, y = 3 * 0 / 2 - 0.2, depth 2
    # (0.5, -1, 2) -> view (0.5, -1, 4): x = 2 * 0.5 / 4 + 0.1, y = 3 * -1 / 4 - 0.2, depth 4
    expected = torch.tensor([[[1.1, -0.2, 2.0], [0.35, -0.95, 4.0]]], dtype=DTYPE)
    torch.testing.assert_close(ndc, expected)
    torch.testing.assert_close(cam.get_camera_center(), torch.tensor([[0.0, 0.0, -2.0]], dtype=DTYPE))
    # unproject inverts the projection
    torch.testing.assert_close(cam.unproject_points(ndc), points)
    torch.testing.assert_close(cam.view_to_world(cam.world_to_view(points)), points)


def test_positive_view_x_is_left_and_positive_y_is_up_in_pixels():
    cam = _camera(focal=(1.0, 1.0))
    ndc = cam.transform_points_ndc(torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=DTYPE))
    pixels = cam.ndc_to_pixel(ndc[..., :2], (100, 200))
    assert pixels[0, 0, 0] < 100  # +x lands left of the centre column (W / 2 = 100)
    assert pixels[0, 1, 1] < 50  # +y lands above the centre row (H / 2 = 50)


def test_ndc_to_pixel_for_a_non_square_image():
    cam = _camera()
    # H = 100, W = 200: the shorter side (H) spans [-1, 1], the longer [-2, 2]; scale = 50 px
    ndc = torch.tensor([[0.0, 0.0], [2.0, 1.0], [-2.0, -1.0], [1.0, -0.5]], dtype=DTYPE)
    expected = torch.tensor([[100.0, 50.0], [0.0, 0.0], [200.0, 100.0], [50.0, 75.0]], dtype=DTYPE)
    torch.testing.assert_close(cam.ndc_to_pixel(ndc, (100, 200)), expected)
    # a tall image: H = 200, W = 100, scale = 50 px; y spans [-2, 2]
    torch.testing.assert_close(
        cam.ndc_to_pixel(torch.tensor([[1.0, 2.0]], dtype=DTYPE), (200, 100)), torch.tensor([[0.0, 0.0]], dtype=DTYPE)
    )


def test_intrinsics_pixels_to_ndc_by_hand():
    focal, principal = intrinsics_pixels_to_ndc(
        torch.tensor([[100.0, 150.0]], dtype=DTYPE),
        torch.tensor([[110.0, 40.0]], dtype=DTYPE),
        torch.tensor([[100, 200]]),  # H, W; scale = min / 2 = 50
    )
    torch.testing.assert_close(focal, torch.tensor([[2.0, 3.0]], dtype=DTYPE))
    # principal point (110, 40) px is 10 px right of and 10 px above the centre (100, 50)
    torch.testing.assert_close(principal, torch.tensor([[-0.2, 0.2]], dtype=DTYPE))


def _opencv_inputs():
    R = torch.stack([_rotation((0.3, -1.0, 0.5), 0.7), _rotation((1.0, 0.2, 0.0), -1.2)])
    tvec = torch.tensor([[0.1, -0.3, 4.0], [-0.5, 0.2, 6.0]], dtype=DTYPE)
    K = torch.tensor(
        [
            [[300.0, 0.0, 161.0], [0.0, 310.0, 118.0], [0.0, 0.0, 1.0]],
            [[250.0, 0.0, 150.0], [0.0, 250.0, 125.0], [0.0, 0.0, 1.0]],
        ],
        dtype=DTYPE,
    )
    image_size = torch.tensor([[240, 320], [250, 300]])
    return R, tvec, K, image_size


def test_opencv_round_trip():
    R, tvec, K, image_size = _opencv_inputs()
    cams = cameras_from_opencv(R, tvec, K, image_size)
    R2, t2, K2 = opencv_from_cameras(cams)
    torch.testing.assert_close(R2, R)
    torch.testing.assert_close(t2, tvec)
    torch.testing.assert_close(K2, K)


def test_opencv_projection_matches_ndc_then_pixels():
    R, tvec, K, image_size = _opencv_inputs()
    cams = cameras_from_opencv(R, tvec, K, image_size)
    points = torch.tensor([[0.2, -0.1, 0.3], [-0.4, 0.5, -0.2], [0.0, 0.0, 0.0]], dtype=DTYPE)
    for i in range(2):
        x_cam = points @ R[i].T + tvec[i]  # OpenCV: x right, y down, z forward
        uv = (x_cam @ K[i].T)[:, :2] / x_cam[:, 2:]
        ndc = cams[i].transform_points_ndc(points[None])[0]
        h, w = image_size[i].tolist()
        # pytorch3d's screen convention is continuous, pixel k spanning [k, k + 1]: no half-pixel
        # shift in the conversion, so (u, v) = K (R X + t) is reproduced exactly
        torch.testing.assert_close(cams[i].ndc_to_pixel(ndc[:, :2], (h, w)), uv)
        torch.testing.assert_close(ndc[:, 2], x_cam[:, 2])  # depth is the same view-space z


def test_top_left_pixel_centre_is_half_a_pixel_in():
    # the NDC pixel-centre grid convention: pixel (row 0, col 0) of a 100 x 200 image has its
    # centre at NDC (2 - 1/100, 1 - 1/100), which is screen (0.5, 0.5); OpenCV calls that
    # point u = 0.5, v = 0.5 (OpenCV puts pixel centres on integers: the known half-pixel offset)
    cam = _camera()
    ndc = torch.tensor([[2.0 - 0.01, 1.0 - 0.01]], dtype=DTYPE)
    torch.testing.assert_close(cam.ndc_to_pixel(ndc, (100, 200)), torch.tensor([[0.5, 0.5]], dtype=DTYPE))


def _blender_c2w(position, look_at=(0.0, 0.0, 0.0), world_up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """(4, 4) OpenGL/Blender camera-to-world: columns right, up, backward, position."""
    position = torch.tensor(position, dtype=DTYPE)
    forward = torch.nn.functional.normalize(torch.tensor(look_at, dtype=DTYPE) - position, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, torch.tensor(world_up, dtype=DTYPE)), dim=0)
    up = torch.linalg.cross(right, forward)
    c2w = torch.eye(4, dtype=DTYPE)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, position
    return c2w


def test_blender_c2w_to_cameras():
    c2w = _blender_c2w((1.0, 2.0, 3.0))[None]
    cams = cameras_from_opengl_c2w(
        c2w,
        focal_pix=torch.tensor([[100.0, 100.0]], dtype=DTYPE),
        principal_pix=torch.tensor([[50.0, 40.0]], dtype=DTYPE),  # the image centre
        image_size_hw=torch.tensor([[80, 100]]),
    )
    torch.testing.assert_close(cams.get_camera_center(), c2w[:, :3, 3])
    position, right, up, backward = c2w[0, :3, 3], c2w[0, :3, 0], c2w[0, :3, 1], c2w[0, :3, 2]
    ahead = position - 2.0 * backward  # straight ahead along the Blender camera's -z
    points = torch.stack([ahead, ahead + 0.5 * right, ahead + 0.5 * up])[None]
    ndc = cams.transform_points_ndc(points)[0]
    torch.testing.assert_close(ndc[0], torch.tensor([0.0, 0.0, 2.0], dtype=DTYPE))
    # focal 100 px over scale 40 px = 2.5 NDC; Blender's right is pytorch3d's -x (left is +x)
    torch.testing.assert_close(ndc[1], torch.tensor([-2.5 * 0.5 / 2.0, 0.0, 2.0], dtype=DTYPE))
    torch.testing.assert_close(ndc[2], torch.tensor([0.0, 2.5 * 0.5 / 2.0, 2.0], dtype=DTYPE))
    torch.testing.assert_close(opengl_c2w_from_cameras(cams), c2w)


def test_look_at_cameras():
    eye = torch.tensor([[0.0, 0.0, -5.0], [3.0, 4.0, 0.0]], dtype=DTYPE)
    at = torch.zeros(2, 3, dtype=DTYPE)
    up = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=DTYPE)
    cams = look_at_cameras(eye, at, up, focal_length=1.5, image_size_hw=(30, 40))
    torch.testing.assert_close(cams.R[0], torch.eye(3, dtype=DTYPE))
    torch.testing.assert_close(cams.T[0], torch.tensor([0.0, 0.0, 5.0], dtype=DTYPE))
    torch.testing.assert_close(cams.get_camera_center(), eye)
    assert cams.image_size.tolist() == [[30, 40], [30, 40]]
    torch.testing.assert_close(torch.linalg.det(cams.R), torch.ones(2, dtype=DTYPE))
    ndc = cams.transform_points_ndc(torch.stack([at, at + up], dim=1))  # (2 cameras, 2 points, 3)
    torch.testing.assert_close(ndc[:, 0], torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]], dtype=DTYPE))
    assert (ndc[:, 1, 1] > 0).all()  # the up vector points up in the image
    # camera 0 looks along +z with +y up, so world +x is on the left: positive NDC x
    assert cams[0].transform_points_ndc(torch.tensor([[[1.0, 0.0, 0.0]]], dtype=DTYPE))[0, 0, 0] > 0


def test_join_and_index():
    a = _camera(T=(0.0, 0.0, 1.0), image_size=(10, 20))
    b = _camera(T=(0.0, 0.0, 2.0), image_size=(30, 40))
    c = _camera(T=(0.0, 0.0, 3.0), image_size=(50, 60))
    joined = join_cameras([a, join_cameras([b, c])])
    assert len(joined) == 3
    assert joined.T[:, 2].tolist() == [1.0, 2.0, 3.0]
    assert joined.image_size.tolist() == [[10, 20], [30, 40], [50, 60]]
    one = joined[1]
    assert len(one) == 1 and one.T[0, 2] == 2.0 and one.image_size.tolist() == [[30, 40]]
    assert joined[-1].T[0, 2] == 3.0
    assert joined[1:].T[:, 2].tolist() == [2.0, 3.0]
    assert joined[torch.tensor([2, 0])].T[:, 2].tolist() == [3.0, 1.0]
    assert joined[[0, 2]].image_size.tolist() == [[10, 20], [50, 60]]
    assert join_cameras([a, _camera()]).image_size is None
    copy = joined.clone()
    copy.T[0, 2] = 9.0
    assert joined.T[0, 2] == 1.0


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match="focal_length"):
        PerspectiveCameras(torch.eye(3)[None], torch.zeros(1, 3), torch.ones(2, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="image_size"):
        opencv_from_cameras(_camera())


def test_any_shape_points_and_directions_go_to_each_cameras_view_frame():
    cameras = look_at_cameras(
        torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]]), torch.zeros(2, 3), torch.tensor([[0.0, 1.0, 0.0]] * 2), 1.0
    )
    points = torch.randn(2, 4, 5, 3)
    view = cameras.world_to_view_any(points)
    assert view.shape == points.shape
    assert torch.allclose(view[1], cameras[1].world_to_view(points[1].reshape(1, -1, 3)).reshape(4, 5, 3))
    directions = torch.randn(2, 4, 3)
    rotated = cameras.directions_to_view(directions)
    shifted = cameras.world_to_view_any(directions + 1.0) - cameras.world_to_view_any(torch.ones_like(directions))
    assert torch.allclose(rotated, shifted, atol=1e-5)  # a direction is a difference of points
