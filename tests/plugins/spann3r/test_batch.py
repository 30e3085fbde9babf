"""PointMapBatchBuilder: SequenceRecords to PointMapBatch (world points from depth, K and pose with pixel
centres at + 0.5, DUSt3R's valid mask, ImgNorm images, portrait views stored transposed to landscape
with their own true_shape kept, as DUSt3R's transpose_to_landscape)."""
import math
from typing import Optional, Tuple

import pytest
import torch

from recon_trainer.data.records import SequenceRecord, ViewRecord
from recon_trainer_plugins.spann3r.batch import PointMapBatch, PointMapBatchBuilder

K = torch.tensor([[2.0, 0.0, 1.5], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])


def rotation_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def pose(angle: float = 0.3, translation: Tuple[float, float, float] = (1.0, -2.0, 0.5)) -> torch.Tensor:
    matrix = torch.eye(4)
    matrix[:3, :3] = rotation_z(angle)
    matrix[:3, 3] = torch.tensor(translation)
    return matrix


def make_view(height: int, width: int, seed: int = 0, depth: Optional[torch.Tensor] = None,
              camera_to_world: Optional[torch.Tensor] = None, **fields) -> ViewRecord:
    generator = torch.Generator().manual_seed(seed)
    if depth is None:
        depth = 1.0 + torch.rand(height, width, generator=generator)
    return ViewRecord(image=torch.rand(3, height, width, generator=generator), depth=depth,
                      intrinsics=K.clone(), camera_to_world=pose() if camera_to_world is None else camera_to_world,
                      **fields)


def sequence(*views: ViewRecord, name: str = "scene0", dataset: str = "Tiny") -> SequenceRecord:
    return SequenceRecord(views=list(views), sequence=name, dataset=dataset)


def hand_points(depth: torch.Tensor, intrinsics: torch.Tensor, camera_to_world: torch.Tensor) -> torch.Tensor:
    """World point of every pixel with one loop per pixel: centre (j + 0.5, i + 0.5) back-projected."""
    out = torch.zeros(*depth.shape, 3)
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    for i in range(depth.shape[0]):
        for j in range(depth.shape[1]):
            d = depth[i, j]
            camera = torch.stack([(j + 0.5 - cx) / fx * d, (i + 0.5 - cy) / fy * d, d])
            out[i, j] = camera_to_world[:3, :3] @ camera + camera_to_world[:3, 3]
    return out


def test_world_points_images_and_shapes():
    views = [make_view(3, 4, seed=s, camera_to_world=pose(0.2 * s, (s, 0.0, -s))) for s in range(3)]
    other = [make_view(3, 4, seed=10 + s) for s in range(3)]
    batch = PointMapBatchBuilder()([sequence(*views), sequence(*other, name="scene1", dataset="Other")])
    assert isinstance(batch, PointMapBatch) and len(batch) == 2 and batch.num_frames == 3
    assert batch.images.shape == (2, 3, 3, 3, 4) and batch.points.shape == (2, 3, 3, 4, 3)
    assert batch.valid.shape == batch.depth.shape == (2, 3, 3, 4) and batch.valid.dtype == torch.bool
    assert batch.intrinsics.shape == (2, 3, 3, 3) and batch.camera_to_world.shape == (2, 3, 4, 4)
    assert batch.true_shape.dtype == torch.int64 and batch.true_shape.tolist() == [[[3, 4]] * 3] * 2
    assert batch.dataset == ["Tiny", "Other"] and batch.sequence == ["scene0", "scene1"]
    assert batch.valid.all()
    for t, view in enumerate(views):
        torch.testing.assert_close(batch.rgb[0, t], view.image)
        torch.testing.assert_close(batch.images[0, t], view.image * 2 - 1)
        torch.testing.assert_close(batch.depth[0, t], view.depth)
        torch.testing.assert_close(batch.camera_to_world[0, t], view.camera_to_world)
        torch.testing.assert_close(batch.points[0, t], hand_points(view.depth, K, view.camera_to_world))
    assert batch.images.min() >= -1 and batch.images.max() <= 1


def test_valid_mask_is_finite_positive_depth_inside_mask_valid():
    depth = torch.full((4, 6), 2.0)
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3] = 0.0, math.nan, math.inf, -1.0
    mask_valid = torch.ones(4, 6, dtype=torch.bool)
    mask_valid[3, 5] = False
    view = make_view(4, 6, depth=depth, mask_valid=mask_valid)
    batch = PointMapBatchBuilder()([sequence(view, make_view(4, 6, seed=1))])
    expected = torch.ones(4, 6, dtype=torch.bool)
    for i, j in [(0, 0), (1, 1), (2, 2), (3, 3), (3, 5)]:
        expected[i, j] = False
    assert torch.equal(batch.valid[0, 0], expected)
    invalid = ~expected
    assert (batch.points[0, 0][invalid] == 0).all() and (batch.depth[0, 0][invalid] == 0).all()
    assert torch.isfinite(batch.points).all() and torch.isfinite(batch.depth).all()
    torch.testing.assert_close(batch.points[0, 0][expected], hand_points(depth, K, pose())[expected])


def test_portrait_views_are_stored_transposed_with_their_true_shape():
    portrait = make_view(6, 4, seed=3, camera_to_world=pose(-0.4, (0.0, 1.0, 2.0)))
    landscape = make_view(4, 6, seed=4)
    batch = PointMapBatchBuilder()([sequence(portrait, landscape)])
    assert batch.images.shape == (1, 2, 3, 4, 6)
    assert batch.true_shape[0].tolist() == [[6, 4], [4, 6]]
    torch.testing.assert_close(batch.rgb[0, 0], portrait.image.transpose(1, 2))
    torch.testing.assert_close(batch.depth[0, 0], portrait.depth.T)
    torch.testing.assert_close(batch.points[0, 0], hand_points(portrait.depth, K, portrait.camera_to_world)
                               .transpose(0, 1))
    torch.testing.assert_close(batch.intrinsics[0, 0], K[[1, 0, 2]])  # DUSt3R: camera_intrinsics[[1, 0, 2]]
    torch.testing.assert_close(batch.intrinsics[0, 1], K)
    torch.testing.assert_close(batch.rgb[0, 1], landscape.image)
    # the swapped K projects each stored point onto its stored (transposed) pixel centre
    world_to_camera = torch.linalg.inv(batch.camera_to_world[0, 0])
    camera = batch.points[0, 0] @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    projected = camera @ batch.intrinsics[0, 0].T
    rows, cols = torch.meshgrid(torch.arange(4) + 0.5, torch.arange(6) + 0.5, indexing="ij")
    torch.testing.assert_close(projected[..., :2] / projected[..., 2:], torch.stack([cols, rows], dim=-1))


def test_a_portrait_mask_is_transposed_with_its_pixels():
    depth = torch.full((6, 4), 2.0)
    depth[5, 0] = 0.0
    batch = PointMapBatchBuilder()([sequence(make_view(6, 4, depth=depth), make_view(6, 4, seed=1))])
    assert batch.valid.shape == (1, 2, 4, 6)
    assert not batch.valid[0, 0, 0, 5] and int(batch.valid[0, 0].sum()) == 23


def test_select_frames_and_to():
    batch = PointMapBatchBuilder()([sequence(make_view(3, 4), make_view(3, 4, seed=1, camera_to_world=pose(0.5)),
                                             name=f"s{i}", dataset=f"D{i}") for i in range(3)])
    picked = batch.select([2, 0])
    assert picked.sequence == ["s2", "s0"] and picked.dataset == ["D2", "D0"] and len(picked) == 2
    torch.testing.assert_close(picked.points[1], batch.points[0])
    firsts = batch.frames([0])
    assert firsts.num_frames == 1 and firsts.sequence == batch.sequence
    torch.testing.assert_close(firsts.camera_to_world[:, 0], batch.camera_to_world[:, 0])
    moved = batch.to("cpu")
    assert moved.sequence == batch.sequence and torch.equal(moved.valid, batch.valid)


def test_mismatched_items_are_rejected_with_one_line():
    builder = PointMapBatchBuilder()
    with pytest.raises(ValueError, match=r"\[1, 2\] views") as error:
        builder([sequence(make_view(3, 4)), sequence(make_view(3, 4), make_view(3, 4))])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="different sizes"):
        builder([sequence(make_view(4, 8)), sequence(make_view(4, 6))])
    with pytest.raises(TypeError, match="ViewRecord"):
        builder([make_view(3, 4)])
    no_pose = ViewRecord(image=torch.rand(3, 3, 4), depth=torch.ones(3, 4), intrinsics=K, sequence="scene0")
    with pytest.raises(ValueError, match="'scene0'.*camera_to_world"):
        builder([sequence(no_pose)])
