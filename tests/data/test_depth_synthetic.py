"""The synthetic depth renderer: deterministic, dense, positive depth that agrees with the scene geometry."""
import os

import numpy as np
import pytest
import torch

from recon_trainer.data.depth.synthetic import DATASET_LAYOUTS, render_depth_views, synthetic_room, write_depth_datasets
from recon_trainer.data.scene_rendering import pixel_center_ndc

SIZE = (40, 56)


@pytest.fixture(scope="module")
def views():
    return render_depth_views(12, SIZE, seed=5, depth_range=(1.0, 10.0), views_per_scene=6)


def test_views_are_deterministic_and_depend_on_the_seed(views):
    again = render_depth_views(12, SIZE, seed=5, depth_range=(1.0, 10.0), views_per_scene=6)
    np.testing.assert_array_equal(views.rgb, again.rgb)
    np.testing.assert_array_equal(views.depth, again.depth)
    torch.testing.assert_close(views.cameras.R, again.cameras.R, rtol=0, atol=0)
    other = render_depth_views(2, SIZE, seed=6, depth_range=(1.0, 10.0))
    assert np.abs(other.depth - views.depth[:2]).mean() > 0.1


def test_depth_is_dense_positive_and_roughly_in_range(views):
    assert views.rgb.shape == (12, *SIZE, 3) and views.rgb.dtype == np.uint8
    assert views.depth.shape == (12, *SIZE) and views.depth.dtype == np.float32
    assert len(views.cameras) == 12
    assert views.cameras.image_size.tolist() == [list(SIZE)] * 12
    assert (views.depth > 0).all()
    # The room's diagonal is the far depth; cameras keep about `near` from every surface.
    assert views.depth.max() <= 10.0
    assert np.percentile(views.depth, 1) > 0.7
    # Views differ: no two images are near-duplicates, and each has a real depth spread.
    flat = views.depth.reshape(12, -1)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(12) for j in range(i)) > 0.05
    assert (flat.max(axis=1) / flat.min(axis=1) > 1.2).all()
    assert views.rgb.reshape(12, -1, 3).std(axis=1).mean() > 20


def test_depth_agrees_with_the_scene_geometry(views):
    """Unprojecting each pixel at its depth lands inside the room box, and either exactly on one of
    its six walls or inside an object's bounding sphere; most pixels see the walls."""
    ndc = pixel_center_ndc(SIZE).float().reshape(1, -1, 2)
    for view, scene in ((0, 0), (7, 1)):
        room = synthetic_room(5, scene, (1.0, 10.0))
        depth = torch.from_numpy(views.depth[view].reshape(1, -1, 1))
        points = views.cameras[view].unproject_points(torch.cat([ndc, depth], dim=-1))[0].double().numpy()
        low = np.array([-room.extents[0] / 2, 0.0, -room.extents[2] / 2])
        high = low + room.extents
        assert (points >= low - 1e-3).all() and (points <= high + 1e-3).all()
        on_wall = np.minimum(np.abs(points - low), np.abs(points - high)).min(axis=1) < 1e-3
        centres, radii = room.objects[:, :3], room.objects[:, 3]
        in_object = (np.linalg.norm(points[:, None] - centres[None], axis=-1) <= radii[None] * 1.001).any(axis=1)
        assert (on_wall | in_object).all()
        assert on_wall.mean() > 0.3


def test_depth_range_scales_the_scene():
    near = render_depth_views(4, (24, 24), seed=1, depth_range=(1.0, 10.0))
    far = render_depth_views(4, (24, 24), seed=1, depth_range=(8.0, 80.0))
    np.testing.assert_allclose(far.depth, 8.0 * near.depth, rtol=1e-4)
    assert np.abs(far.rgb.astype(int) - near.rgb).max() <= 1


def test_bad_depth_range_is_rejected():
    with pytest.raises(ValueError, match="depth_range"):
        render_depth_views(2, (16, 16), depth_range=(5.0, 1.0))


def test_write_depth_datasets_writes_every_layout(tmp_path):
    written = write_depth_datasets(str(tmp_path), list(DATASET_LAYOUTS), n_images=2, image_size_hw=(24, 32), seed=1)
    assert written == {name: str(tmp_path / folder) for name, (folder, _, _) in DATASET_LAYOUTS.items()}
    for path in written.values():
        assert sum(len(files) for _, _, files in os.walk(path)) >= 2
    with pytest.raises(ValueError, match="unknown datasets \\['nyuv3'\\]"):
        write_depth_datasets(str(tmp_path), ["nyuv3"])
