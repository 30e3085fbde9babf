"""The NVS formats' ViewRecords: the same cameras as the providers' FrameData (points projected and
unprojected through both), the formats named in mixing expressions (frames and sequences of N
views), and NVS and depth data mixed in one train split."""
import collections
import os

import numpy as np
import pytest
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.data.depth.synthetic import render_depth_views, write_tum
from recon_trainer.data.frame_data import FrameData
from recon_trainer.data.mixing import MixableDataset
from recon_trainer.data.mixing.data_source import MixtureDataSource, count_labels
from recon_trainer.data.providers.blender import Blender, BlenderDatasetMapProvider, BlenderSequences
from recon_trainer.data.providers.co3d.dataset import JsonIndexDataset
from recon_trainer.data.providers.co3d.providers import Co3dFrames, Co3dSequences
from recon_trainer.data.providers.co3d.writer import default_sequences, write_co3d_dataset
from recon_trainer.data.providers.llff import LLFF, LlffDatasetMapProvider, LLFFSequences, render_llff_dataset
from recon_trainer.data.providers.rendered_mesh import (
    COW_OBJ,
    RenderedMeshDatasetMapProvider,
    orbit_cameras,
    rendered_views,
    view_azimuths,
)
from recon_trainer.data.records import (
    SequenceRecord,
    ViewRecord,
    opencv_view_from_cameras,
    pixel_centres,
    rescale_intrinsics,
)
from tests.data.conftest import EXPORT_SETTINGS

WORKERS = 2


def assert_same_camera(record: ViewRecord, camera, tolerance: float = 1e-4) -> None:
    """record.to_cameras() and a FrameData camera project world points to the same NDC and depth,
    and unproject NDC points at a depth to the same world points."""
    cameras = record.to_cameras()
    assert cameras.image_size.tolist() == camera.image_size.tolist()
    generator = torch.Generator().manual_seed(0)
    centre = camera.get_camera_center()
    world = centre[:, None] + 2.0 * torch.randn(1, 50, 3, generator=generator)  # around the camera, some behind
    assert torch.allclose(cameras.transform_points_ndc(world), camera.transform_points_ndc(world), atol=tolerance)
    xy_depth = torch.cat([torch.rand(1, 20, 2, generator=generator) * 2 - 1, torch.rand(1, 20, 1) + 1], dim=-1)
    assert torch.allclose(cameras.unproject_points(xy_depth), camera.unproject_points(xy_depth), atol=tolerance)


def assert_depth_lands_on_its_pixels(record: ViewRecord, camera, tolerance: float) -> None:
    """Each valid pixel's point (the record's depth, K and pose) projects by `camera` onto its centre."""
    valid = record.depth_valid()
    world = record.points_world()[valid]
    pixels = camera.ndc_to_pixel(camera.transform_points_ndc(world[None])[0, :, :2], record.image_size_hw)
    assert float((pixels - pixel_centres(record.image_size_hw)[valid]).norm(dim=-1).max()) < tolerance


def test_cameras_to_record_geometry_and_back():
    eye = torch.tensor([[3.0, 1.0, 2.0], [-1.0, 2.0, -4.0]])
    cameras = look_at_cameras(eye, torch.zeros(2, 3), torch.tensor([[0.0, 1.0, 0.0]] * 2), 1.7, (24, 32))
    cameras.principal_point = torch.tensor([[0.1, -0.05], [0.0, 0.2]])
    intrinsics, camera_to_world = opencv_view_from_cameras(cameras)
    assert intrinsics.dtype == camera_to_world.dtype == torch.float32
    assert torch.allclose(camera_to_world[:, :3, 3], eye)  # the camera centres
    assert torch.allclose(intrinsics[:, 0, 0], torch.full((2,), 1.7 * 12))  # NDC focal * min(H, W) / 2
    for k in range(2):
        record = ViewRecord(torch.zeros(3, 24, 32), intrinsics=intrinsics[k], camera_to_world=camera_to_world[k])
        assert_same_camera(record, cameras[k], 1e-5)
    resized = rescale_intrinsics(intrinsics[0], (24, 32), (48, 96))
    assert torch.allclose(resized[:2, :3], intrinsics[0, :2, :3] * torch.tensor([[3.0], [2.0]]))


def test_registered_names():
    for cls in (Blender, BlenderSequences, LLFF, LLFFSequences, Co3dFrames, Co3dSequences):
        assert registry.get(MixableDataset, cls.__name__) is cls
        assert cls.PATH_FIELDS == ("root",)


# ------------------------------------------------------------------------------------------ Blender


def test_blender_records_match_the_provider_frames(exported_cow):
    frames = BlenderDatasetMapProvider(base_dir=exported_cow).get_dataset_map().train
    dataset = Blender(root=exported_cow, split="train")
    assert len(dataset) == len(frames) == 6
    for i in range(len(dataset)):
        record, frame = dataset[i], frames[i]
        assert record.dataset == "Blender" and record.label_type == "synthetic" and record.depth_kind == "metric"
        assert (record.sequence, record.frame, record.path) == ("cow", frame.frame_number, frame.image_path)
        assert torch.equal(record.image, frame.image_rgb) and torch.equal(record.mask_fg[None], frame.fg_probability)
        assert torch.equal(record.depth[None], frame.depth_map)
        assert_same_camera(record, frame.camera)
        assert_depth_lands_on_its_pixels(record, frame.camera, 2e-3)
        fx = 0.5 * 32 / np.tan(0.5 * np.radians(EXPORT_SETTINGS.get("fov_degrees", 39.6)))
        assert torch.allclose(record.intrinsics, torch.tensor([[fx, 0, 16], [0, fx, 16], [0, 0, 1]]).float())
    white = Blender(root=exported_cow, split="val", bg_color=(1.0, 1.0, 1.0), fg_mask=False, downscale_factor=2)[0]
    assert white.mask_fg is None and white.image_size_hw == (16, 16) and float(white.image.max()) == 1.0
    assert white.frame == 6  # numbered train, then val, then test, as the provider numbers them
    with pytest.raises(ConfigError, match=r"bad value 'tarin' for 'Blender.split'; did you mean 'train'\?"):
        Blender(root=exported_cow, split="tarin")


def test_blender_sequences(exported_cow):
    dataset = BlenderSequences(root=exported_cow, num_views=3, min_thresh=1, max_thresh=2, scene="cow_scene")
    assert len(dataset) == 1 and dataset.sequences[0].frames == tuple(range(6))
    item = dataset[(0, 7, 3)]
    assert isinstance(item, SequenceRecord) and len(item) == 3 and item.sequence == "cow_scene"
    stacked = item.stack()
    assert stacked.camera_to_world.shape == (3, 4, 4) and stacked.dataset == ["BlenderSequences"] * 3


# ------------------------------------------------------------------------------------------ LLFF


@pytest.fixture(scope="module")
def llff_scene(tmp_path_factory):
    return render_llff_dataset(str(tmp_path_factory.mktemp("llff") / "fern"))


def test_llff_records_match_the_provider_frames(llff_scene):
    maps = LlffDatasetMapProvider(base_dir=llff_scene, downscale_factor=2).get_dataset_map()
    frames = {frame.frame_number: frame for split in (maps.train, maps.test) for frame in split}
    everything = LLFF(root=llff_scene, split="all", downscale_factor=2)
    assert len(everything) == 9 and len(LLFF(root=llff_scene, split="test", downscale_factor=2)) == 2
    for i in range(9):
        record = everything[i]
        frame = frames[record.frame]
        assert record.label_type == "sfm" and record.depth is None and record.sequence == "fern"
        assert torch.equal(record.image, frame.image_rgb) and record.path == frame.image_path
        assert torch.equal(record.extras["depth_bounds"], frame.meta["depth_bounds"])
        assert_same_camera(record, frame.camera)
    train = LLFF(root=llff_scene, downscale_factor=2)
    assert [train[i].frame for i in range(len(train))] == [1, 2, 3, 4, 5, 6, 7]
    sequences = LLFFSequences(root=llff_scene, downscale_factor=2, num_views=4, min_thresh=1, max_thresh=3)
    item = sequences[(0, 1, 0)]
    assert len(item) == 4 and all(view.intrinsics is not None for view in item.views)


# ------------------------------------------------------------------------------------------ CO3D


@pytest.fixture(scope="module")
def co3d_roots(tmp_path_factory):
    """CO3D v1 and v2 layouts of one category: 4 sequences of 8 frames of 32 x 40 pixels."""
    root = tmp_path_factory.mktemp("co3d")
    specs = default_sequences({"procedural": "builtin"}, 4)
    for version in ("v1", "v2"):
        write_co3d_dataset(str(root / version), version, specs, n_frames=8, image_size_hw=(32, 40))
    return {version: str(root / version) for version in ("v1", "v2")}


@pytest.mark.parametrize("crop", [{"box_crop": False, "image_height": None, "image_width": None},
                                  {"image_height": 24, "image_width": 24}])
def test_co3d_records_match_the_items(co3d_roots, crop):
    root = co3d_roots["v1"]
    folder = os.path.join(root, "procedural")
    dataset = JsonIndexDataset(frame_annotations_file=os.path.join(folder, "frame_annotations.jgz"),
                               sequence_annotations_file=os.path.join(folder, "sequence_annotations.jgz"),
                               subset_lists_file=os.path.join(folder, "set_lists.json"), dataset_root=root, **crop)
    for index in (0, 9, 30):
        record, frame = dataset.read_record(index), dataset[index]
        assert record.depth_kind == "relative" and record.label_type == "sfm"
        assert (record.sequence, record.frame) == (frame.sequence_name, int(frame.frame_number))
        assert record.extras["frame_type"] == frame.frame_type and record.extras["category"] == "procedural"
        assert torch.equal(record.image, frame.image_rgb) and torch.equal(record.mask_fg[None], frame.fg_probability)
        assert torch.equal(record.mask_valid[None].float(), frame.mask_crop)
        assert torch.equal(record.depth[None], frame.depth_map)
        assert_same_camera(record, frame.camera)
        if crop["image_height"] is None:  # uncropped: the stored depth lands on its pixels
            assert_depth_lands_on_its_pixels(record, frame.camera, 0.05)  # float16 depth
    assert dataset[0].meta == {key: dataset.read_record(0).extras[key] for key in dataset[0].meta}


def test_co3d_frames_in_mixing_expressions(co3d_roots):
    v1 = Co3dFrames(root=co3d_roots["v1"], category="procedural", subsets=("train_known",), image_height=24,
                    image_width=24)
    assert len(v1) == 2 * 6 and {v1[i].extras["frame_type"] for i in range(len(v1))} == {"train_known"}
    record = v1[0]
    assert record.dataset == "Co3dFrames" and record.image.shape == (3, 24, 24)
    assert record.camera_to_world.shape == (4, 4)
    v2 = Co3dFrames(root=co3d_roots["v2"], category="procedural", subset_name="fewview_dev", image_height=24,
                    image_width=24)
    assert len(v2) == 32  # train, val and test together, the frames that are in val and test once
    test = Co3dFrames(root=co3d_roots["v2"], category="procedural", subset_name="fewview_dev", subsets=("test",))
    assert len(test) == 16 and test[0].extras["frame_type"] == "test_unseen"
    with pytest.raises(ConfigError, match=r"Co3dFrames.subsets: \['train_known'\] are not set lists of CO3D v2"):
        Co3dFrames(root=co3d_roots["v2"], category="procedural", subset_name="fewview_dev", subsets=("train_known",))
    with pytest.raises(ConfigError, match="set root .* and category"):
        Co3dFrames(root=co3d_roots["v2"])


def test_co3d_sequence_samples_of_n_views_with_poses(co3d_roots):
    source = MixtureDataSource(
        train=f"6 @ Co3dSequences(root='{co3d_roots['v2']}', category='procedural', subset_name='fewview_dev', "
              "num_views=4, min_thresh=1, max_thresh=2, image_height=24, image_width=24)",
        batch_size=3, num_workers=WORKERS, batch_builder_class_type="RecordBatch",
    )
    datasets, loaders = source.get_datasets_and_dataloaders()
    sequences = datasets.train.children[0].dataset
    assert [s.name for s in sequences.sequences] == [f"procedural_{k:03d}" for k in range(4)]
    item = sequences[(1, 5, 2)]
    assert len(item) == 4 and len({view.sequence for view in item.views}) == 1
    numbers = sorted(view.frame for view in item.views)
    assert all(1 <= b - a <= 2 for a, b in zip(numbers, numbers[1:]))  # the frame-gap limit
    for view in item.views:
        assert view.intrinsics is not None and view.camera_to_world is not None and view.depth is not None
    torch.manual_seed(0)
    batches = list(loaders.train)
    assert len(batches) == 2
    for batch in batches:
        assert isinstance(batch, ViewRecord) and batch.batch_shape == (3, 4)
        assert batch.camera_to_world.shape == (3, 4, 4, 4) and batch.intrinsics.shape == (3, 4, 3, 3)
        assert batch.image.shape == (3, 4, 3, 24, 24) and batch.dataset == [["Co3dSequences"] * 4] * 3
        rotations = batch.camera_to_world[..., :3, :3]
        assert torch.allclose(rotations @ rotations.transpose(-1, -2), torch.eye(3).expand(3, 4, 3, 3), atol=1e-5)


# ------------------------------------------------------------------------------------------ rendered mesh


def test_rendered_mesh_frames_come_from_records():
    from recon_trainer.data.providers.scene_meshes import load_mesh_file, normalize_to_unit_cube
    from recon_trainer.data.scene_rendering import render_mesh

    frames = list(RenderedMeshDatasetMapProvider(num_views=3, resolution=16, use_point_light=False)
                  .get_dataset_map().train)
    cameras = orbit_cameras(view_azimuths(3, 180.0), 2.7, 16)
    rendering = render_mesh(normalize_to_unit_cube(load_mesh_file(COW_OBJ)), cameras, (16, 16), ambient=1.0)
    for k, (record, frame) in enumerate(zip(rendered_views(cameras, rendering, "cow"), frames)):
        assert (record.frame, record.sequence, record.label_type) == (k, "cow", "synthetic")
        assert torch.equal(record.image, frame.image_rgb) and torch.equal(record.depth[None], frame.depth_map)
        assert torch.equal(frame.depth_mask, frame.fg_probability) and frame.image_path is None
        assert_same_camera(record, frame.camera, 1e-5)
        assert_same_camera(record, cameras[k], 1e-5)
        assert_depth_lands_on_its_pixels(record, cameras[k], 1e-3)


# ------------------------------------------------------------------------------------------ NVS + depth


@pytest.fixture(scope="module")
def tum_root(tmp_path_factory):
    """A TUM sequence of 4 rendered 32 x 32 views, with ground-truth poses."""
    root = tmp_path_factory.mktemp("tum") / "rgbd_dataset_freiburg2_desk"
    write_tum(str(root), render_depth_views(4, (32, 32), seed=5, depth_range=(0.5, 8.0)))
    return str(root)


def test_blender_and_a_depth_dataset_mix_in_fixed_shares(exported_cow, tum_root):
    train = f"Blender(root='{exported_cow}', fg_mask=False) + 8 @ TUM(root='{tum_root}', item_type='record')"
    source = MixtureDataSource(train=train, mixing="equal", batch_size=4, batches_per_epoch=3, num_workers=WORKERS,
                               batch_builder_class_type="RecordBatch")
    _, loaders = source.get_datasets_and_dataloaders()
    torch.manual_seed(0)
    batches = list(loaders.train)
    assert len(batches) == 3
    for batch in batches:
        assert isinstance(batch, ViewRecord) and batch.batch_shape == (4,) and batch.image.shape == (4, 3, 32, 32)
        assert collections.Counter(batch.dataset) == {"Blender": 2, "TUM": 2}
        assert collections.Counter(batch.label_type) == {"synthetic": 2, "sensor": 2}
        assert batch.intrinsics.shape == (4, 3, 3) and batch.camera_to_world.shape == (4, 4, 4)
        assert batch.depth_kind == ["metric"] * 4 and bool(batch.depth_valid().any(dim=(1, 2)).all())
    frame_source = MixtureDataSource(train=train, mixing="equal", batch_size=4, batches_per_epoch=2,
                                     num_workers=WORKERS)
    torch.manual_seed(0)
    frame_batches = list(frame_source.get_datasets_and_dataloaders()[1].train)
    assert all(isinstance(b, FrameData) and len(b.camera) == 4 for b in frame_batches)
    assert count_labels(frame_batches) == {"Blender": 4, "TUM": 4}


def test_the_data_check_sees_and_drops_bad_nvs_frames(exported_cow, co3d_roots, tmp_path):
    import shutil

    from recon_trainer.errors import DataFileError

    scene = tmp_path / "cow"
    shutil.copytree(exported_cow, scene)
    bad = scene / "train" / "r_1.png"
    bad.write_bytes(bad.read_bytes()[:-60])  # truncated: no IEND chunk
    co3d = f"Co3dFrames(root='{co3d_roots['v1']}', category='procedural', subsets=('train_known',))"
    train = f"Blender(root='{scene}') + {co3d}"
    with pytest.raises(DataFileError, match=rf"1 data file failed the check before training.*\n  {bad}: truncated PNG"):
        MixtureDataSource(train=train).get_datasets_and_dataloaders()
    datasets, _ = MixtureDataSource(train=train, skip_unreadable=True).get_datasets_and_dataloaders()
    assert datasets.train.component_sizes == [5, 12]
    blender = datasets.train.children[0]
    assert [blender[i].path for i in range(5)] == [str(scene / "train" / f"r_{k}.png") for k in (0, 2, 3, 4, 5)]
