"""Voxel-grid geometry of semantic scene completion (recon_trainer/data/ssc/geometry.py) and
VoxelRecord's per-axis voxel sizes."""
import numpy as np
import pytest
import torch

from recon_trainer.data.formats import nyu_ssc
from recon_trainer.data.records import ViewRecord, VoxelRecord, intrinsics_centre_to_corner, stack_records
from recon_trainer.data.ssc import geometry
from recon_trainer.data.ssc.synthetic_rooms import room_labels, room_seed, sample_room

NYU_K = np.array(nyu_ssc.NYU_INTRINSICS)


def _view(pose: np.ndarray, hw=(480, 640)) -> ViewRecord:
    return ViewRecord(image=torch.zeros(3, *hw),
                      intrinsics=intrinsics_centre_to_corner(torch.tensor(NYU_K, dtype=torch.float32)),
                      camera_to_world=torch.tensor(pose, dtype=torch.float32))


def _room_record(name: str = "NYU0001_0000"):
    """A synthetic room's 0.08 m target (MonoScene's pkl content, world axes) and its view."""
    room = sample_room(room_seed(0, name))
    classes = nyu_ssc.map_to_12_classes(room_labels(room))
    target = nyu_ssc.downsample_labels(classes, 4).transpose(0, 2, 1)
    voxels = VoxelRecord(torch.from_numpy(np.ascontiguousarray(target)), 0.08,
                         torch.tensor(room.voxel_origin, dtype=torch.float32))
    return voxels, _view(room.camera_pose), room


def _vox2pix_numpy(pose, k, origin, voxel_size, shape, hw):
    """The originals' vox2pix re-derived in numpy (float32 as their numba code): voxel centres,
    the inverse pose, round(fx x / z + cx) with the integer-centred K."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    points = (origin.astype(np.float32) + voxel_size * index.astype(np.float32) + voxel_size * 0.5).astype(np.float32)
    world_to_camera = np.linalg.inv(pose.astype(np.float32))
    camera = (world_to_camera @ np.hstack([points, np.ones((len(points), 1), np.float32)]).T).T[:, :3]
    k = k.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = camera[:, 0] * k[0, 0] / camera[:, 2] + k[0, 2]
        v = camera[:, 1] * k[1, 1] / camera[:, 2] + k[1, 2]
    z = camera[:, 2]
    fov = (np.round(u) >= 0) & (np.round(u) < hw[1]) & (np.round(v) >= 0) & (np.round(v) < hw[0]) & (z > 0)
    return np.stack([u, v], -1), z, fov


def test_voxel_projection_hand_case():
    voxels = VoxelRecord(torch.zeros(2, 1, 2, dtype=torch.uint8), 1.0, torch.tensor([0.0, 0.0, -1.0]))
    pixels, depth, fov = geometry.voxel_projection(voxels, _view(np.eye(4)))
    # raster order: (0,0,0) centre (0.5, 0.5, -0.5) behind the camera; (0,0,1) centre (0.5, 0.5, 0.5)
    f = 518.8579
    assert pixels.shape == (4, 2) and pixels.dtype == torch.int64 and depth.dtype == torch.float32
    assert torch.equal(depth, torch.tensor([-0.5, 0.5, -0.5, 0.5]))
    assert pixels[1].tolist() == [round(f + 320), round(f + 240)] == [839, 759]
    assert pixels[3].tolist() == [round(3 * f + 320), 759]
    assert fov.tolist() == [False, False, False, False]  # behind, or right of / below the image
    far = VoxelRecord(torch.zeros(2, 1, 1, dtype=torch.uint8), 1.0, torch.tensor([0.0, 0.0, 4.0]))
    pixels, depth, fov = geometry.voxel_projection(far, _view(np.eye(4)))
    assert pixels.tolist() == [[378, 298], [493, 298]]  # 320 + f * 0.5 / 4.5 = 377.65, 320 + f * 1.5 / 4.5 = 492.95
    assert fov.tolist() == [True, True] and depth.tolist() == [4.5, 4.5]
    corners, _, _ = geometry.voxel_projection(far, _view(np.eye(4)), offset=0.0)
    assert corners.tolist() == [[320, 240], [450, 240]]  # the min corners (0, 0, 4), (1, 0, 4): 320 + f / 4


def test_voxel_projection_matches_the_originals_math():
    voxels, view, room = _room_record()
    pixels, depth, fov = geometry.voxel_projection(voxels, view)
    uv, z, fov_ref = _vox2pix_numpy(room.camera_pose, NYU_K, room.voxel_origin, 0.08, voxels.grid_shape, (480, 640))
    near_tie = np.abs(np.abs(uv - np.floor(uv)) - 0.5).min(axis=1) < 1e-3  # float32 vs float64 may round apart
    comparable = (np.abs(uv) < 1e4).all(axis=1) & ~near_tie  # far off-image pixels carry float32 error
    assert np.array_equal(pixels.numpy()[comparable], np.round(uv[comparable]).astype(np.int64))
    assert np.array_equal(fov.numpy()[~near_tie], fov_ref[~near_tie])
    assert np.allclose(depth.numpy(), z, atol=1e-4)
    assert 0.4 < fov.float().mean() < 0.95  # most of the volume in view, as in NYU


def _local_frustums_loop(pixels, depth, labels, hw, num_classes, size):
    """MonoScene's compute_local_frustums re-derived: loops over the tiles, row-major."""
    h, w = hw
    masks, counts = [], []
    for y in range(size):
        for x in range(size):
            u0, u1, v0, v1 = x / size * w, (x + 1) / size * w, y / size * h, (y + 1) / size * h
            u, v = pixels[:, 0], pixels[:, 1]
            inside = (u >= u0) & (u < u1) & (v >= v0) & (v < v1) & (depth > 0)
            mask = (labels != 255) & inside.reshape(labels.shape)
            masks.append(mask)
            counts.append(np.bincount(labels[mask].astype(np.int64), minlength=num_classes))
    return np.array(masks), np.array(counts, dtype=np.float32)


def test_local_frustums_hand_case():
    pixels = torch.tensor([[0, 0], [1, 1], [3, 0], [0, 3], [3, 3], [9, 0]])
    depth = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, 1.0])
    labels = torch.tensor([2, 255, 1, 0, 1, 1], dtype=torch.uint8).reshape(1, 2, 3)
    masks, counts = geometry.local_frustums(pixels, depth, labels, (4, 4), num_classes=3, size=2)
    assert masks.shape == (4, 1, 2, 3) and masks.dtype == torch.bool and counts.dtype == torch.float32
    flat = masks.reshape(4, -1)
    assert flat[0].tolist() == [True, False, False, False, False, False]  # 255 left out
    assert flat[1].tolist() == [False, False, True, False, False, False]
    assert flat[2].tolist() == [False, False, False, True, False, False]
    assert not flat[3].any()  # behind the camera; (9, 0) is outside the image
    assert counts.tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="num_classes"):
        geometry.local_frustums(pixels, depth, labels, (4, 4), num_classes=2, size=2)


def test_local_frustums_match_the_loop():
    voxels, view, _ = _room_record("NYU0002_0000")
    pixels, depth, _ = geometry.voxel_projection(voxels, view)
    for size, hw in ((8, (480, 640)), (3, (480, 640))):
        masks, counts = geometry.local_frustums(pixels, depth, voxels.labels, hw, 12, size)
        ref_masks, ref_counts = _local_frustums_loop(pixels.numpy(), depth.numpy(), voxels.labels.numpy(), hw, 12, size)
        assert np.array_equal(masks.numpy(), ref_masks) and np.array_equal(counts.numpy(), ref_counts)
    assert counts.sum() > 0


@pytest.mark.parametrize("voxel_size, full, crop, start", [
    (0.08, (60, 60, 36), (50, 50, 25), (5, 5, 0)),
    (0.04, (120, 120, 72), (100, 100, 50), (10, 10, 0)),
])
def test_grid_variants_shapes_and_origins(voxel_size, full, crop, start):
    assert geometry.grid_shape(geometry.FULL_EXTENT, voxel_size) == full
    labels = np.random.default_rng(0).integers(0, 12, full, dtype=np.uint8)
    origin = np.array([-1.5, 0.9, -0.05], np.float32)
    same, same_origin, size = geometry.grid_variant(labels, origin, voxel_size, "full")
    assert np.array_equal(same, labels) and np.array_equal(same_origin, origin) and size == voxel_size
    cropped, moved, size = geometry.grid_variant(labels, origin, voxel_size, "crop")
    window = tuple(slice(s, s + n) for s, n in zip(start, crop))
    assert cropped.shape == crop and np.array_equal(cropped, labels[window]) and size == voxel_size
    assert np.allclose(moved, origin + np.array(start) * voxel_size, atol=1e-6)
    scaled, scale_origin, sizes = geometry.grid_variant(labels, origin, voxel_size, "scale")
    assert scaled.shape == crop and np.array_equal(scale_origin, origin)
    assert np.allclose(sizes, (4.8 / crop[0], 4.8 / crop[1], 2.88 / crop[2]))
    assert np.allclose(np.array(sizes) * crop, geometry.FULL_EXTENT)  # the same volume
    with pytest.raises(ValueError, match="extent"):
        geometry.grid_variant(labels, origin, voxel_size, "zoom")


def test_scale_grid_is_nearest_at_the_new_centres():
    labels = np.arange(6, dtype=np.uint8).reshape(6, 1, 1).repeat(2, 1).repeat(2, 2)
    scaled = geometry.scale_grid(labels, (4, 2, 1))
    assert scaled[:, 0, 0].tolist() == [0, 2, 3, 5]  # floor((i + 0.5) * 6 / 4)
    assert scaled.shape == (4, 2, 1)


def test_voxel_record_per_axis_sizes():
    labels = torch.zeros(2, 3, 4, dtype=torch.uint8)
    cubic = VoxelRecord(labels, 0.5, torch.zeros(3))
    assert torch.allclose(cubic.voxel_centres()[1, 2, 3], torch.tensor([0.75, 1.25, 1.75]))
    for size in ((0.5, 1.0, 2.0), torch.tensor([0.5, 1.0, 2.0])):
        record = VoxelRecord(labels, size, torch.ones(3))
        assert torch.allclose(record.voxel_size_xyz(), torch.tensor([0.5, 1.0, 2.0]))
        assert torch.allclose(record.voxel_centres()[1, 2, 3], torch.tensor([1.75, 3.5, 8.0]))
        assert torch.allclose(record.voxel_centres(0.0)[1, 2, 3], torch.tensor([1.5, 3.0, 7.0]))
        stacked = stack_records([record, record])
        assert stacked.voxel_size_xyz().shape == (2, 3)
    assert torch.allclose(stack_records([cubic, cubic]).voxel_size_xyz(), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelRecord(labels, (0.5, 1.0), torch.zeros(3)).voxel_size_xyz()
    # a per-axis record projects like a cubic one with the same centres
    view = _view(np.eye(4))
    anisotropic = VoxelRecord(torch.zeros(2, 2, 2, dtype=torch.uint8), (0.2, 0.4, 0.8), torch.tensor([0.0, 0.0, 3.0]))
    pixels, depth, _ = geometry.voxel_projection(anisotropic, view)
    assert torch.allclose(depth, torch.tensor([3.4, 4.2, 3.4, 4.2, 3.4, 4.2, 3.4, 4.2]))
    assert pixels[6].tolist() == [round(518.8579 * 0.3 / 3.4 + 320), round(518.8579 * 0.6 / 3.4 + 240)]
