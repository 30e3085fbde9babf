"""Records: conventions (pixels, depth validity, poses), converters to PerspectiveCameras, stacking,
voxel centres and their projection."""
import math

import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.cameras import opencv_from_cameras
from recon_trainer.data.records import (
    IGNORE_LABEL,
    SequenceRecord,
    ViewRecord,
    VoxelRecord,
    depth_to_points,
    intrinsics_centre_to_corner,
    intrinsics_corner_to_centre,
    intrinsics_from_normalized,
    intrinsics_to_normalized,
    invert_pose,
    pixel_centres,
    stack_records,
)

H, W = 24, 32
K = torch.tensor([[50.0, 0.0, 16.5], [0.0, 60.0, 12.25], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _rotation(axis, angle):
    k = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float64), dim=0)
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _pose(axis=(0.3, 1.0, -0.2), angle=0.4, t=(0.2, -0.1, 0.5)):
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = _rotation(axis, angle)
    pose[:3, 3] = torch.tensor(t, dtype=torch.float64)
    return pose


def _view(**kwargs):
    generator = torch.Generator().manual_seed(0)
    values = dict(image=torch.rand(3, H, W, generator=generator),
                  depth=1 + 3 * torch.rand(H, W, generator=generator, dtype=torch.float64),
                  intrinsics=K, camera_to_world=_pose(), sequence="s", frame=3, dataset="toy")
    values.update(kwargs)
    return ViewRecord(**values)


def test_intrinsics_normalised_and_pixel_conventions():
    normalised = intrinsics_to_normalized(K, (H, W))
    assert torch.allclose(normalised, torch.tensor([[50 / W, 0, 16.5 / W], [0, 60 / H, 12.25 / H], [0, 0, 1]],
                                                   dtype=torch.float64))
    assert torch.allclose(intrinsics_from_normalized(normalised, (H, W)), K)
    assert torch.allclose(_view().normalized_intrinsics(), normalised)
    moge = torch.tensor([[0.8, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])  # a centred MoGe camera
    assert intrinsics_from_normalized(moge, (H, W))[:2, 2].tolist() == [W / 2, H / 2]  # the image centre
    opencv = intrinsics_corner_to_centre(K)
    assert opencv[:2, 2].tolist() == [16.0, 11.75] and torch.equal(intrinsics_centre_to_corner(opencv), K)
    centres = pixel_centres((2, 3))
    assert centres[0, 0].tolist() == [0.5, 0.5] and centres[1, 2].tolist() == [2.5, 1.5]


def test_depth_validity_conventions():
    depth = torch.tensor([[1.0, float("inf"), float("nan")], [0.0, -1.0, 2.0]])
    view = ViewRecord(torch.zeros(3, 2, 3), depth=depth, intrinsics=torch.eye(3))
    assert view.depth_valid().tolist() == [[True, False, False], [False, False, True]]
    assert view.depth_infinite().tolist() == [[False, True, False], [False, False, False]]
    masked = ViewRecord(torch.zeros(3, 2, 3), depth=depth, mask_valid=torch.tensor([[False, True, True]] * 2))
    assert masked.depth_valid().tolist() == [[False, False, False], [False, False, True]]
    points = view.points_camera()
    assert torch.isnan(points[0, 2]).all() and torch.isposinf(points[0, 1, 2]) and points[1, 0].eq(0).all()


def test_points_from_depth_project_back_to_their_pixels():
    view = _view()
    camera = view.points_camera()
    assert torch.allclose(camera[..., 2], view.depth)
    uv = camera[..., :2] / camera[..., 2:] * torch.stack([K[0, 0], K[1, 1]]) + K[:2, 2]
    assert torch.allclose(uv, pixel_centres((H, W), torch.float64))
    world = view.points_world()
    assert torch.allclose(world, camera @ _pose()[:3, :3].T + _pose()[:3, 3])
    projection = view.project(world)
    assert torch.allclose(projection.pixels, pixel_centres((H, W), torch.float64), atol=1e-9)
    assert torch.allclose(projection.depth, view.depth) and bool(projection.in_view.all())
    behind = view.project(_pose()[:3, 3] - _pose()[:3, 2])  # one metre behind the camera
    assert not bool(behind.in_view) and float(behind.depth) == pytest.approx(-1.0)


def test_to_cameras_projects_like_the_record():
    view = _view()
    cameras = view.to_cameras()
    assert len(cameras) == 1 and cameras.image_size.tolist() == [[H, W]]
    world = torch.tensor([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.0], [0.0, 0.0, 1.5]], dtype=torch.float64)
    world = world @ _pose()[:3, :3].T + _pose()[:3, 3]  # points in front of the camera
    expected = view.project(world)
    ndc = cameras.transform_points_ndc(world[None])
    pixels = cameras.ndc_to_pixel(ndc[0, :, :2], (H, W))
    assert torch.allclose(pixels, expected.pixels, atol=1e-9)
    assert torch.allclose(ndc[0, :, 2], expected.depth)
    R, tvec, K_back = opencv_from_cameras(cameras)  # the OpenCV converter round trip
    assert torch.allclose(K_back[0], K) and torch.allclose(R[0], invert_pose(_pose())[:3, :3])
    assert torch.allclose(tvec[0], invert_pose(_pose())[:3, 3])


def test_sequence_stack_and_batches():
    views = [_view(frame=k, depth=torch.full((H, W), float(k + 1), dtype=torch.float64),
                   extras={"weight": float(k), "tag": f"t{k}", "mask": torch.ones(2)}) for k in range(4)]
    stacked = SequenceRecord(views, "s", "toy").stack()
    assert stacked.batch_shape == (4,) and stacked.image.shape == (4, 3, H, W)
    assert stacked.depth[:, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0] and stacked.frame.tolist() == [0, 1, 2, 3]
    assert stacked.intrinsics.shape == (4, 3, 3) and stacked.camera_to_world.shape == (4, 4, 4)
    assert stacked.sequence == ["s"] * 4 and stacked.depth_kind == ["metric"] * 4
    assert stacked.extras["weight"].tolist() == [0.0, 1.0, 2.0, 3.0] and stacked.extras["tag"] == ["t0", "t1", "t2", "t3"]
    assert stacked.extras["mask"].shape == (4, 2) and stacked.mask_fg is None
    assert len(stacked.to_cameras()) == 4
    batch = stack_records([SequenceRecord(views[:2]), SequenceRecord(views[2:])])
    assert batch.batch_shape == (2, 2) and batch.frame.tolist() == [[0, 1], [2, 3]]
    assert batch.camera_to_world.shape == (2, 2, 4, 4) and len(batch.to_cameras()) == 4


def test_stacking_and_field_errors():
    with pytest.raises(ValueError, match=r"ViewRecord.depth is set on some records and missing on others"):
        stack_records([_view(), _view(depth=None)])
    with pytest.raises(ValueError, match=r"ViewRecord.image has different shapes"):
        stack_records([_view(), _view(image=torch.zeros(3, 4, 4), depth=None, intrinsics=None)])
    with pytest.raises(ValueError, match=r"ViewRecord.depth has shape \(2, 2\), expected \(24, 32\)"):
        _view(depth=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"ViewRecord.image must be a \(3, H, W\) tensor"):
        ViewRecord(torch.zeros(H, W))
    with pytest.raises(ConfigError, match=r"bad value 'metrc' for 'ViewRecord.depth_kind\[0\]'; did you mean 'metric'"):
        _view(depth_kind="metrc")
    with pytest.raises(ValueError, match="disparity is not a depth"):
        _view(depth_kind="disparity").points_camera()
    with pytest.raises(ValueError, match="has no camera_to_world"):
        _view(camera_to_world=None).to_cameras()


def test_depth_to_points_broadcasts_over_batches():
    depth = torch.rand(2, 3, H, W, dtype=torch.float64) + 1
    points = depth_to_points(depth, K.expand(2, 3, 3, 3))
    assert points.shape == (2, 3, H, W, 3)
    assert torch.allclose(points[1, 2], depth_to_points(depth[1, 2], K))


def test_voxel_centres_and_projection():
    labels = torch.zeros(6, 5, 4, dtype=torch.uint8)
    labels[0] = IGNORE_LABEL
    origin = torch.tensor([-0.3, -0.25, 1.0])
    volume = VoxelRecord(labels, 0.1, origin)
    centres = volume.voxel_centres()
    assert centres.shape == (6, 5, 4, 3) and volume.grid_shape == (6, 5, 4)
    assert torch.allclose(centres[0, 0, 0], origin + 0.05) and torch.allclose(centres[5, 4, 3], origin + 0.1 * torch.tensor([5.5, 4.5, 3.5]))
    assert torch.allclose(volume.voxel_centres(offset=0.0)[1, 2, 3], origin + 0.1 * torch.tensor([1.0, 2.0, 3.0]))
    pose = _pose().float()
    view = _view(intrinsics=K.float(), camera_to_world=pose, depth=None)
    in_front = pose[:3, :3] @ torch.tensor([-1.5, -1.25, 1.0]) + pose[:3, 3]  # world origin of a grid ahead
    wide = VoxelRecord(labels, 0.5, in_front)
    projection = wide.project(view)
    camera = (wide.voxel_centres() - pose[:3, 3]) @ pose[:3, :3]  # the centres in camera coordinates
    uv = camera[..., :2] / camera[..., 2:] * torch.stack([K[0, 0], K[1, 1]]).float() + K[:2, 2].float()
    assert projection.pixels.shape == (6, 5, 4, 2)
    assert torch.allclose(projection.pixels, uv, atol=1e-4) and torch.allclose(projection.depth, camera[..., 2])
    inside = (camera[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
    assert torch.equal(projection.in_view, inside) and bool(inside.any()) and not bool(inside.all())
    corners = wide.project(view, offset=0.0)  # MonoScene's vox2pix projects the min corners
    assert torch.allclose(corners.depth, ((wide.voxel_centres(0.0) - pose[:3, 3]) @ pose[:3, :3])[..., 2])
    batch = stack_records([volume, volume])
    assert batch.labels.shape == (2, 6, 5, 4) and torch.allclose(batch.voxel_size, torch.tensor([0.1, 0.1]))
    assert batch.voxel_origin.shape == (2, 3)
    with pytest.raises(ValueError, match="works on one volume"):
        batch.voxel_centres()
