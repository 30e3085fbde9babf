"""MoGe's data: perspective crops that keep the geometry exact, depth warping without bleeding
across edges, flips, sky through crops, invalid views, one reproducible size per batch, weighted
mixing through DataLoader workers, the built-in datasets and the visualisation tool."""
import collections
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.file_check import check_split_files
from recon_trainer.data.formats import moge as moge_format
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.records import ViewRecord, intrinsics_from_normalized
from recon_trainer.errors import DataFileError, UserError
from recon_trainer_plugins.moge import augmentation as aug
from recon_trainer_plugins.moge.batch import MoGeBatch, MoGeBatchBuilder
from recon_trainer_plugins.moge.builtin_data import DATASETS, MoGeSyntheticDatasets, write_moge_datasets
from recon_trainer_plugins.moge.dataset import MoGeDataset

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tools")
K_SOURCE = np.array([[0.7, 0.0, 0.52], [0.0, 0.95, 0.48], [0.0, 0.0, 1.0]])
SRC_HW = (48, 64)


def _rays(intrinsics, size_hw):
    """(H, W, 3) K^-1 [u, v, 1] at the pixel centres."""
    h, w = size_hw
    v, u = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    return np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(intrinsics).T


def _plane_depth(normal, offset, intrinsics, size_hw):
    """Depth of the plane normal . X = offset seen through `intrinsics`."""
    return offset / (_rays(intrinsics, size_hw) @ normal)


def _perspective(seed=0, aspect=1.25, centre=1.0):
    rng = np.random.default_rng(seed)
    return aug.sample_perspective(K_SOURCE, aspect, centre, (1, 179), (0.5, 0.9), rng)


@pytest.fixture(scope="module")
def builtin_root(tmp_path_factory):
    generator = MoGeSyntheticDatasets(n_train=8, n_sfm=4, n_eval=2, height=48, width=64,
                                      cache_dir=str(tmp_path_factory.mktemp("cache")))
    return generator.ensure_written()


# ------------------------------------------------------------------------------- geometry of a crop


def test_a_3d_point_lands_on_the_warped_pixel_and_intrinsics_stay_consistent():
    tgt_hw = (40, 50)
    k_target, rotation = _perspective(seed=3)
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-12) and np.isclose(np.linalg.det(rotation), 1)
    assert k_target[0, 2] == 0.5 and k_target[1, 2] == 0.5
    assert np.isclose(k_target[0, 0] / k_target[1, 1], tgt_hw[0] / tgt_hw[1])  # square pixels at W / H = 1.25
    point = np.array([0.1, -0.05, 2.0])  # in the source camera
    uv_source = (K_SOURCE @ point)[:2] / point[2]
    moved = rotation @ point
    uv_target = (k_target @ moved)[:2] / moved[2]
    assert 0.1 < uv_target[0] < 0.9 and 0.1 < uv_target[1] < 0.9
    mapped = aug.homography(K_SOURCE, rotation, k_target) @ [*uv_source, 1.0]
    assert np.allclose(mapped[:2] / mapped[2], uv_target)
    # an image of a bright dot at the point: the warped dot is at the projected pixel
    size = np.array([SRC_HW[1], SRC_HW[0]])
    centre = uv_source * size - 0.5
    rows, cols = np.mgrid[:SRC_HW[0], :SRC_HW[1]]
    blob = np.exp(-((cols - centre[0]) ** 2 + (rows - centre[1]) ** 2) / 2.0)
    image = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=-1)
    warped = aug.warp_image(image, aug.homography(K_SOURCE, rotation, k_target), tgt_hw).astype(float)[..., 0]
    weights = np.clip(warped - 20, 0, None)
    found = np.array([(weights * np.arange(tgt_hw[1])).sum(), (weights * np.arange(tgt_hw[0])[:, None]).sum()])
    expected = uv_target * np.array([tgt_hw[1], tgt_hw[0]]) - 0.5
    assert np.abs(found / weights.sum() - expected).max() < 0.35


def test_the_crop_stays_inside_the_source_image():
    for seed in range(20):
        k_target, rotation = _perspective(seed, aspect=float(np.random.default_rng(seed).uniform(0.5, 2.0)))
        corners = np.array([[0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1.0]])
        back = corners @ np.linalg.inv(aug.homography(K_SOURCE, rotation, k_target)).T
        uv = back[:, :2] / back[:, 2:]
        assert (uv > -1e-9).all() and (uv < 1 + 1e-9).all()


def test_depth_of_a_plane_is_reprojected_exactly():
    normal, offset = np.array([0.2, -0.5, -0.8]) / np.linalg.norm([0.2, -0.5, -0.8]), -3.0
    depth = _plane_depth(normal, offset, K_SOURCE, SRC_HW)
    assert (depth > 0).all()
    tgt_hw = (36, 45)
    k_target, rotation = _perspective(seed=5)
    warped = aug.warp_depth(depth, aug.homography(K_SOURCE, rotation, k_target), tgt_hw)
    expected = _plane_depth(rotation @ normal, offset, k_target, tgt_hw)
    assert np.isfinite(warped).all()
    assert np.abs(warped / expected - 1).max() < 1e-5  # disparity is affine over a plane: bilinear is exact
    # and the normals of that plane, warped and rotated, are the plane's normal in the target camera
    normals = np.broadcast_to(normal * np.sign(-normal[2]), SRC_HW + (3,)).astype(np.float32)
    warped_normals = aug.warp_normal(normals, aug.homography(K_SOURCE, rotation, k_target), rotation, tgt_hw)
    assert np.allclose(warped_normals, rotation @ (normal * np.sign(-normal[2])), atol=1e-5)


def test_disparity_interpolation_does_not_bleed_across_depth_edges():
    depth = np.full(SRC_HW, 2.0, dtype=np.float32)
    depth[:, 32:] = 20.0  # a wall far behind a near one
    edges = aug.depth_edges(depth, np.isfinite(depth), kernel_size=aug.EDGE_KERNEL, ltol=aug.EDGE_LTOL)
    assert edges[:, 30:34].all() and not edges[:, :26].any() and not edges[:, 38:].any()
    zoom = np.diag([1.37, 1.37, 1.0]) @ np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    zoom[:2, 2] += 0.5  # a zoom about the image centre by a non-integer factor: sub-pixel sampling
    warped = aug.warp_depth(depth, zoom, (61, 83))
    assert set(np.unique(warped).tolist()) == {2.0, 20.0}  # no value between the two surfaces
    ramp = np.tile(np.linspace(1.0, 3.0, SRC_HW[1], dtype=np.float32), (SRC_HW[0], 1))
    smooth = aug.warp_depth(ramp, zoom, (61, 83))
    assert len(np.unique(np.round(smooth, 5))) > 70  # off edges the depth is interpolated, not nearest


def test_sparse_depth_keeps_its_points_when_shrunk():
    depth = np.full((60, 80), np.nan, dtype=np.float32)
    depth[::4, ::4] = 5.0  # one known pixel in 16
    shrink = np.eye(3)  # the same view at a quarter of the size
    warped = aug.warp_depth(depth, shrink, (15, 20))
    assert np.isfinite(warped).mean() > 0.9 and np.allclose(warped[np.isfinite(warped)], 5.0)


# ------------------------------------------------------------------------------- views


def _view(depth=None, normal=True):
    depth = (_plane_depth(np.array([0.0, 0.0, -1.0]), -4.0, K_SOURCE, SRC_HW).astype(np.float32)
             if depth is None else depth)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, SRC_HW + (3,), dtype=np.uint8)
    normals = aug.normals_from_depth(depth, K_SOURCE) if normal else None
    return aug.ViewArrays(image=image, depth=depth, intrinsics=K_SOURCE.copy(), normal=normals,
                          segmentation=np.arange(SRC_HW[0] * SRC_HW[1]).reshape(SRC_HW) % 7)


def test_flip_mirrors_maps_normals_and_the_principal_point():
    view = _view()
    view.normal[:] = [0.3, -0.2, -0.93]
    flipped = aug.flip_horizontally(view)
    assert np.array_equal(flipped.image, view.image[:, ::-1]) and np.array_equal(flipped.depth, view.depth[:, ::-1])
    assert np.array_equal(flipped.segmentation, view.segmentation[:, ::-1])
    assert np.allclose(flipped.normal, [-0.3, -0.2, -0.93]) and np.isclose(flipped.intrinsics[0, 2], 1 - 0.52)
    rays, rays_flipped = _rays(view.intrinsics, SRC_HW), _rays(flipped.intrinsics, SRC_HW)
    assert np.allclose(rays_flipped, rays[:, ::-1] * [-1, 1, 1])  # the mirrored scene: x negated
    twice = aug.flip_horizontally(flipped)
    assert np.array_equal(twice.image, view.image) and np.allclose(twice.intrinsics, view.intrinsics)


def test_sky_survives_the_crop_and_the_far_clamp():
    depth = _plane_depth(np.array([0.0, 0.0, -1.0]), -4.0, K_SOURCE, SRC_HW).astype(np.float32)
    depth[:20] = np.inf
    settings = aug.AugmentationSettings(center_augmentation=0.0, fov_range_relative=(0.8, 0.9), image_augmentation=())
    seen_sky = False
    for seed in range(4):
        out = aug.training_view(_view(depth), (30, 40), settings, np.random.default_rng(seed))
        sky = np.isposinf(out.depth)
        seen_sky |= bool(sky.any())
        assert not out.invalid and not np.isnan(out.depth).any()
        assert sky[0].all() and not sky[-1].any()  # the top of the crop is sky, the bottom is not
        clamped, mask_fin, mask_inf = aug.depth_targets(out.depth, 1000.0, only_known=False)
        assert np.array_equal(mask_inf, sky) and np.array_equal(mask_fin, ~sky) and np.isposinf(clamped[sky]).all()
    assert seen_sky


def test_far_depth_is_clamped_for_training_and_dropped_for_evaluation():
    depth = np.full((10, 10), 1.0, dtype=np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = 5000.0, np.inf, np.nan
    clamped, fin, inf = aug.depth_targets(depth, 1000.0, only_known=False)
    assert clamped[0, 0] == 1000.0 and fin[0, 0] and fin[2, 2] and not fin[1, 1] and inf[1, 1]
    known_only = aug.depth_targets(depth, 1000.0, only_known=True)[1]
    assert not known_only[2, 2] and known_only[0, 0]
    dropped, fin, _ = aug.depth_targets(depth, 1000.0, only_known=True, drop_far=True)
    assert np.isnan(dropped[0, 0]) and not fin[0, 0] and fin[3, 3]


def test_a_view_without_finite_depth_is_invalid():
    depth = np.full(SRC_HW, np.nan, dtype=np.float32)
    depth[5, 5] = 3.0
    out = aug.training_view(_view(depth, normal=False), (30, 40), aug.AugmentationSettings(image_augmentation=()),
                            np.random.default_rng(0))
    assert out.invalid and (out.depth == 1).all()
    record = ViewRecord(image=torch.zeros(3, *SRC_HW), depth=torch.from_numpy(depth), label_type="synthetic",
                        intrinsics=intrinsics_from_normalized(torch.tensor(K_SOURCE, dtype=torch.float32), SRC_HW),
                        extras={"augment": True, "seed": 3})
    batch = MoGeBatchBuilder(image_sizes=[[40, 30]], image_augmentation=())([record])
    assert batch.label_type == ["invalid"] and bool((batch.depth == 1).all())


def test_colour_augmentations_are_reproducible_and_keep_the_image_shape():
    view = _view()
    everything = aug.AUGMENTATIONS
    outputs = [aug.color_augmentation(view.image, everything, np.random.default_rng(7), depth=view.depth)
               for _ in range(2)]
    assert np.array_equal(*outputs) and outputs[0].shape == view.image.shape and outputs[0].dtype == np.uint8
    changed = [not np.array_equal(aug.color_augmentation(view.image, everything, np.random.default_rng(s),
                                                         depth=view.depth), view.image) for s in range(4)]
    assert all(changed)
    with pytest.raises(ValueError, match="unknown augmentations"):
        aug.color_augmentation(view.image, ["sepia"], np.random.default_rng(0))
    sharp = np.zeros((32, 32, 3), np.uint8)
    sharp[:, 16:] = 255
    disparity = np.where(np.arange(32) < 16, 1.0, 0.1)[None].repeat(32, 0)
    blurred = aug.depth_of_field(sharp, disparity, focus=1.0, max_radius=6)
    assert np.array_equal(blurred[:, :10], sharp[:, :10])  # in focus
    assert 0 < blurred[16, 24, 0] < 255 or blurred[:, 20:].std() > 0  # out of focus: blurred


# ------------------------------------------------------------------------------- datasets and batches


def _items(root, name, n, augment=True, seed=0, **fields):
    dataset = MoGeDataset(root=os.path.join(root, name), augment=augment, **fields)
    return [dataset[(i % len(dataset), seed, i)] for i in range(n)]


def test_one_reproducible_size_per_batch(builtin_root):
    builder = MoGeBatchBuilder(area_range=(2000, 4000), aspect_ratio_range=(0.5, 2.0))
    items = _items(builtin_root, "Rooms", 3) + _items(builtin_root, "RoomsSfM", 1, finite_depth_mask="only_known",
                                                      label_type="sfm", aspect_ratio_range=(1.0, 3.0))
    first, again = builder(items), builder(items)
    assert isinstance(first, MoGeBatch) and len(first) == 4
    h, w = first.image.shape[-2:]
    assert 2000 * 0.98 <= h * w <= 4000 and 0.5 <= w / h <= 3.0
    assert first.depth.shape == (4, h, w) and first.normal.shape == (4, h, w, 3) and first.intrinsics.shape == (4, 3, 3)
    for name in ("image", "intrinsics", "depth_mask_fin", "depth_mask_inf"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert torch.equal(torch.nan_to_num(first.depth, nan=-1), torch.nan_to_num(again.depth, nan=-1))
    other = builder(_items(builtin_root, "Rooms", 3, seed=1) + items[3:])
    assert other.image.shape[-2:] != (h, w) or not torch.equal(other.image, first.image)
    fixed = MoGeBatchBuilder(image_sizes=[[40, 30], [24, 32]])(items)
    assert tuple(fixed.image.shape[-2:]) in ((30, 40), (32, 24))
    assert first.label_type == ["synthetic"] * 3 + ["sfm"] and first.dataset == ["Rooms"] * 3 + ["RoomsSfM"]
    assert first.is_metric.tolist() == [False] * 4 and first.segmentation is None
    assert bool(first.normal_mask[0].any()) and first.has_normal(0)
    points = first.points()
    finite = torch.isfinite(first.depth)
    assert torch.allclose(points[..., 2][finite], first.depth[finite])
    assert not bool(first.depth_mask_fin[3][torch.isnan(first.depth[3])].any())  # only_known


def test_evaluation_items_are_centred_crops_of_one_size(builtin_root):
    builder = MoGeBatchBuilder()
    items = _items(builtin_root, "EvalRooms", 2, augment=False, eval_size=(40, 40), depth_unit=1.0,
                   has_sharp_boundary=True)
    batch = builder(items)
    assert batch.image.shape == (2, 3, 40, 40) and batch.sharp_boundary == [True, True]
    assert batch.is_metric.tolist() == [True, True] and batch.segmentation.shape == (2, 40, 40)
    assert batch.segmentation_labels[0]["floor"] == 1
    assert torch.allclose(batch.intrinsics[:, :2, 2], torch.tensor(0.5))
    source_k = items[0].normalized_intrinsics()
    # the centred square crop keeps the vertical FOV of the 64 x 48 image (the shorter side)
    assert math.isclose(float(batch.intrinsics[0, 1, 1]), float(source_k[1, 1]), rel_tol=0.05)
    assert torch.equal(batch.depth_mask_fin, torch.isfinite(batch.depth))
    with pytest.raises(UserError, match="different sizes"):
        builder(_items(builtin_root, "EvalRooms", 1, augment=False) + items[:1])
    with pytest.raises(UserError, match="mixes training items"):
        builder(items[:1] + _items(builtin_root, "Rooms", 1))


def test_weighted_mixture_through_two_workers_gives_exact_shares(builtin_root):
    train = ("MoGeDataset(root='Rooms', depth_unit=1.0) + "
             "MoGeDataset(root='RoomsSfM', label_type='sfm', finite_depth_mask='only_known')")
    source = MixtureDataSource(data_root=builtin_root, train=train, mixing="weighted", weights=(3.0, 1.0),
                               batch_size=4, batches_per_epoch=4, num_workers=2,
                               batch_builder_class_type="MoGeBatchBuilder")
    source.batch_builder.area_range = (1500, 2500)
    _, loaders = source.get_datasets_and_dataloaders()
    torch.manual_seed(0)
    batches = list(loaders.train)
    torch.manual_seed(0)
    repeated = list(loaders.train)
    assert len(batches) == 4
    for batch, again in zip(batches, repeated):
        assert isinstance(batch, MoGeBatch)
        assert collections.Counter(batch.dataset) == {"Rooms": 3, "RoomsSfM": 1}
        assert torch.equal(batch.image, again.image)  # the same epoch seed: the same batches, any worker
        assert [bool(m) for m in batch.is_metric] == [name == "Rooms" for name in batch.dataset]
    assert len({tuple(b.image.shape[-2:]) for b in batches}) > 1  # each batch draws its own size


def test_dataset_files_errors_and_the_data_check(builtin_root, tmp_path):
    dataset = MoGeDataset(root=os.path.join(builtin_root, "Rooms"))
    files = [os.path.basename(f.path) for f in dataset.item_files(0)]
    assert files == ["image.jpg", "meta.json", "depth.png", "normal.png"]
    view = dataset[0]
    assert view.extras["normal"].shape == (48, 64, 3) and view.depth_kind == "relative"
    assert bool(torch.isposinf(view.depth).any()) or "Rooms" in view.dataset
    assert dataset.label() == "Rooms" and MoGeDataset(root=os.path.join(builtin_root, "Rooms"), name="R").label() == "R"
    # an instance with a broken depth file: named by the data check and by the reader
    root = tmp_path / "Broken"
    instance = str(root / "a" / "0")
    moge_format.write_instance(instance, np.zeros((8, 8, 3), np.uint8), np.ones((8, 8)), np.eye(3))
    moge_format.write_index(str(root), [instance])
    os.remove(os.path.join(instance, "depth.png"))
    broken = MoGeDataset(root=str(root))
    with pytest.raises(DataFileError, match=r"depth.png"):
        check_split_files({"train": [broken]}, skip_unreadable=False, config_key="ds")
    with pytest.raises(DataFileError, match=r"0/depth.png: cannot read the depth PNG"):
        broken[0]
    with pytest.raises(ConfigError, match=r"no index file .*\.val\.txt"):
        MoGeDataset(root=str(root), index=".val.txt")
    with pytest.raises(ConfigError, match="image_augmentation: unknown"):
        MoGeDataset(root=str(root), image_augmentation=("sepia",))


def test_builtin_datasets_are_written_in_moges_layout(builtin_root):
    assert sorted(os.listdir(builtin_root)) == sorted(DATASETS)
    named = MoGeSyntheticDatasets(synthetic=("TartanAir",), sfm=(), benchmarks=("NYUv2", "KITTI"), sharp_benchmarks=(),
                                  n_train=1, n_eval=1, height=16, width=16)
    assert named.datasets() == {"TartanAir": "synthetic", "NYUv2": "benchmark", "KITTI": "benchmark"}
    rooms = MoGeDataset(root=os.path.join(builtin_root, "Rooms"))
    sfm = MoGeDataset(root=os.path.join(builtin_root, "RoomsSfM"))
    bench = MoGeDataset(root=os.path.join(builtin_root, "EvalObjects"), augment=False)
    assert (len(rooms), len(sfm), len(bench)) == (8, 4, 2)
    assert any(bool(torch.isposinf(rooms[i].depth).any()) for i in range(len(rooms)))  # sky through openings
    sfm_view = sfm[0]
    assert bool(torch.isnan(sfm_view.depth).any()) and not bool(torch.isposinf(sfm_view.depth).any())
    bench_view = bench[0]
    labels = bench_view.extras["segmentation_labels"]
    assert set(torch.unique(bench_view.extras["segmentation"]).tolist()) == set(labels.values())
    assert any(name.startswith("object_") for name in labels)
    fovs = [math.degrees(2 * math.atan(0.5 / float(rooms[i].normalized_intrinsics()[0, 0]))) for i in range(len(rooms))]
    assert 45 <= min(fovs) and max(fovs) <= 100 and max(fovs) - min(fovs) > 10


def test_vis_data_tool_writes_a_point_cloud_and_a_depth_image(builtin_root, tmp_path):
    instance = os.path.join(builtin_root, "Rooms", "room_000", "view_0")
    out = tmp_path / "vis"
    result = subprocess.run(
        [sys.executable, os.path.join(TOOLS, "moge_vis_data.py"), instance, "--ply", "-o", str(out)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    with open(out / "view_0" / "pointcloud.ply", "rb") as file:
        header = file.read(300).split(b"end_header")[0].decode()
    known = int(torch.isfinite(moge_format.read_instance(instance).depth).sum())
    assert f"element vertex {known}" in header and "property uchar red" in header
    assert (out / "view_0" / "depth_vis.png").is_file()
    bad = subprocess.run([sys.executable, os.path.join(TOOLS, "moge_vis_data.py"), str(tmp_path / "none"), "--ply"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "none: no such folder" in bad.stderr


def test_the_default_builtin_data_is_written_by_the_function_and_by_the_tool(tmp_path):
    written = write_moge_datasets(str(tmp_path / "default"), DATASETS)
    assert [len(moge_format.read_index(path)) for path in written.values()] == [32, 20, 4, 4]
    result = subprocess.run([sys.executable, os.path.join(TOOLS, "make_moge_datasets.py"), "--out", str(tmp_path / "t"),
                             "--n-train", "4", "--n-sfm", "4", "--n-eval", "1", "--height", "24", "--width", "32"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(moge_format.read_index(str(tmp_path / "t" / "RoomsSfM"))) == 4
