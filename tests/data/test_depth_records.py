"""The depth readers' ViewRecords: intrinsics and poses as the writers stored them (checked by sending
a rendered pixel's depth through the record's K and pose and back through the true camera), depth
kinds, labels, and the calibration files' errors."""
import os

import numpy as np
import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.depth.base import DepthSample
from recon_trainer.data.depth.diw import DIW
from recon_trainer.data.depth.eth3d import CALIBRATION_DIR, ETH3D, write_eth3d
from recon_trainer.data.depth.kitti import CALIBRATION_FILE, DEPTH_DIRS, KITTI, RAW_DIR, write_kitti
from recon_trainer.data.depth.nyu import NYUv2, write_nyu
from recon_trainer.data.depth.redweb import ReDWeb
from recon_trainer.data.depth.sintel import Sintel, write_sintel
from recon_trainer.data.depth.synthetic import DepthViews, render_depth_views, write_diw, write_redweb, write_tum
from recon_trainer.data.depth.tum import TUM, nearest_pose
from recon_trainer.data.formats.colmap import read_cameras_text
from recon_trainer.data.records import ViewRecord, opencv_view_from_cameras, pixel_centres, transform_points
from recon_trainer.errors import DataFileError

DRIVE = "2011_09_26_drive_0002_sync"
SIZE = (24, 32)


@pytest.fixture(scope="module")
def views():
    """4 views of 24 x 32 pixels (the renderer's cameras: 60 degrees across the height)."""
    return render_depth_views(4, SIZE, seed=2, depth_range=(1.0, 10.0))


def reprojection_error(record: ViewRecord, views: DepthViews, i: int, pose: torch.Tensor = None) -> float:
    """Largest pixel distance between every pixel centre and where its point (the record's depth
    through the record's K, then to the world by the record's pose, or by `pose` for a format
    without one) lands in the true camera of view i."""
    pose = record.camera_to_world if pose is None else pose
    valid = record.depth_valid()
    world = transform_points(pose, record.points_camera())[valid]
    camera = views.cameras[i]
    ndc = camera.transform_points_ndc(world[None].double().float())[0, :, :2]
    pixels = camera.ndc_to_pixel(ndc, SIZE)
    return float((pixels - pixel_centres(SIZE)[valid]).norm(dim=-1).max())


def true_geometry(views: DepthViews, i: int):
    """(K (3, 3), camera_to_world (4, 4)) of view i, records' conventions."""
    intrinsics, pose = opencv_view_from_cameras(views.cameras[i])
    return intrinsics[0], pose[0]


def test_kitti_intrinsics_from_the_calibration_file(tmp_path, views):
    write_kitti(str(tmp_path), views, drive=DRIVE, first_frame=5)
    calibration = tmp_path / RAW_DIR / DRIVE[:10] / CALIBRATION_FILE
    assert "P_rect_02:" in calibration.read_text() and "S_rect_02: 3.200000e+01 2.400000e+01" in calibration.read_text()
    dataset = KITTI(raw_root=str(tmp_path / RAW_DIR), depth_root=str(tmp_path / DEPTH_DIRS["velodyne_raw"]),
                    item_type="record")
    for i in range(4):
        record = dataset[i]
        assert isinstance(record, ViewRecord) and record.dataset == "KITTI" and record.label_type == "lidar"
        assert record.depth_kind == "metric" and record.sequence == DRIVE and record.frame == 5 + i
        assert record.camera_to_world is None  # the raw data's OXTS poses are not read
        intrinsics, pose = true_geometry(views, i)
        assert torch.allclose(record.intrinsics, intrinsics, rtol=1e-6, atol=1e-5)
        assert reprojection_error(record, views, i, pose) < 2e-3  # depth quantised to 1/256 m
        assert dataset.item_files(i)[-1].path == str(calibration)
    frame = KITTI(raw_root=str(tmp_path / RAW_DIR), depth_root=str(tmp_path / DEPTH_DIRS["velodyne_raw"]))[0]
    assert frame.camera is None and frame.meta == {"dataset": "KITTI", "eval_metric": "delta1.25", "depth_cap": 80.0}
    os.remove(calibration)  # the calibration download is optional
    assert KITTI(raw_root=str(tmp_path / RAW_DIR), depth_root=str(tmp_path / DEPTH_DIRS["velodyne_raw"]),
                 item_type="record")[0].intrinsics is None


def test_kitti_calibration_of_another_size_and_errors(tmp_path, views):
    write_kitti(str(tmp_path), views, drive=DRIVE, camera="image_03")
    calibration = tmp_path / RAW_DIR / DRIVE[:10] / CALIBRATION_FILE
    text = calibration.read_text()
    doubled = text.replace("S_rect_03: 3.200000e+01 2.400000e+01", "S_rect_03: 6.400000e+01 4.800000e+01")
    lines = [line for line in doubled.splitlines() if line.startswith("P_rect_03")]
    values = [float(v) for v in lines[0].split(":")[1].split()]
    for k in (0, 2, 3, 5, 6, 7):  # K at twice the size, centres integer: c' = 2 (c + 0.5) - 0.5
        values[k] = 2 * values[k] + (0.5 if k in (2, 6) else 0.0)
    calibration.write_text(doubled.replace(lines[0], "P_rect_03: " + " ".join(f"{v:.12e}" for v in values)))
    dataset = KITTI(raw_root=str(tmp_path / RAW_DIR), depth_root=str(tmp_path / DEPTH_DIRS["velodyne_raw"]),
                    camera="image_03", item_type="record")
    assert torch.allclose(dataset[0].intrinsics, true_geometry(views, 0)[0], rtol=1e-6, atol=1e-5)
    calibration.write_text(text.replace("P_rect_03: ", "P_rect_03: 1.0 "))
    with pytest.raises(DataFileError, match=rf"{CALIBRATION_FILE}: P_rect_03: .* expected 12 numbers"):
        dataset[0]
    calibration.write_text("calib_time 09-Jan-2012\n")
    with pytest.raises(DataFileError, match=rf"{CALIBRATION_FILE}:1: 'calib_time 09-Jan-2012', expected 'key: values'"):
        dataset[0]


def test_nyu_has_the_kinect_intrinsics(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(2, 480, 640, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, size=(2, 480, 640)).astype(np.float32)
    write_nyu(str(tmp_path), DepthViews(rgb=rgb, depth=depth, cameras=None))
    record = NYUv2(root=str(tmp_path), depth_key="depths", item_type="record")[0]
    expected = torch.tensor([[518.8579, 0, 326.0824], [0, 519.4696, 254.2362], [0, 0, 1]])  # + half a pixel
    assert torch.allclose(record.intrinsics, expected)
    assert record.depth_kind == "metric" and record.label_type == "sensor" and record.camera_to_world is None
    assert record.frame == 0 and record.path.endswith("nyu_depth_v2_labeled.mat#1")
    assert torch.equal(record.depth, torch.from_numpy(depth[0]))
    # the camera as pytorch3d cameras: the principal point's ray is the optical axis
    posed = ViewRecord(record.image, intrinsics=record.intrinsics, camera_to_world=torch.eye(4))
    cameras = posed.to_cameras()
    pixel = cameras.ndc_to_pixel(cameras.transform_points_ndc(torch.tensor([[[0.0, 0.0, 2.0]]]))[0, :, :2], (480, 640))
    assert torch.allclose(pixel, expected[:2, 2][None], atol=1e-3)


def test_nyu_resized_copy_gets_rescaled_intrinsics(tmp_path, views):
    write_nyu(str(tmp_path), views)
    record = NYUv2(root=str(tmp_path), item_type="record")[0]
    scale = torch.tensor([32 / 640, 24 / 480, 1.0])[:, None]
    assert torch.allclose(record.intrinsics, torch.tensor([[518.8579, 0, 326.0824], [0, 519.4696, 254.2362],
                                                           [0, 0, 1]]) * scale)


def test_tum_poses_from_groundtruth_and_freiburg_intrinsics(tmp_path, views):
    root = tmp_path / "rgbd_dataset_freiburg2_desk"
    write_tum(str(root), views)
    assert (root / "groundtruth.txt").read_text().startswith("# ground truth trajectory")
    dataset = TUM(root=str(root), item_type="record")
    scale = torch.tensor([32 / 640, 24 / 480, 1.0])[:, None]
    freiburg2 = torch.tensor([[520.9, 0, 325.6], [0, 521.0, 250.2], [0, 0, 1]]) * scale
    for i in range(4):
        record = dataset[i]
        assert record.dataset == "TUM" and record.label_type == "sensor" and record.frame == i
        assert record.sequence == "rgbd_dataset_freiburg2_desk" and record.depth_kind == "metric"
        assert torch.allclose(record.intrinsics, freiburg2)
        _, pose = true_geometry(views, i)
        assert torch.allclose(record.camera_to_world, pose, atol=1e-5)  # not the decoy half a frame earlier
        cameras = record.to_cameras()
        assert torch.allclose(cameras.get_camera_center(), views.cameras[i].get_camera_center(), atol=1e-5)
        assert torch.allclose(cameras.R, views.cameras[i].R, atol=1e-5)
    freiburg1 = TUM(root=str(root), sensor="freiburg1", item_type="record")[0].intrinsics
    assert torch.allclose(freiburg1, torch.tensor([[517.3, 0, 319.1], [0, 516.5, 255.8], [0, 0, 1]]) * scale)
    with pytest.raises(ConfigError, match=r"bad value 'freiburg4' for 'TUM.sensor'"):
        TUM(root=str(root), sensor="freiburg4")
    poses = np.stack([np.eye(4), 2 * np.eye(4)])
    assert nearest_pose((np.array([1.0, 1.1]), poses), 1.06, 0.05)[0, 0] == 2.0
    assert nearest_pose((np.array([1.0, 1.1]), poses), 1.05, 0.02) is None  # no pose close enough


def test_tum_groundtruth_errors_and_absence(tmp_path, views):
    root = tmp_path / "tum"
    write_tum(str(root), views)
    with open(root / "groundtruth.txt", "a") as f:
        f.write("1311870426.5 1 2 3\n")
    with pytest.raises(DataFileError, match=r"groundtruth\.txt:\d+: '1311870426\.5 1 2 3', expected 'timestamp tx ty"):
        TUM(root=str(root))
    os.remove(root / "groundtruth.txt")
    record = TUM(root=str(root), item_type="record")[0]
    assert record.camera_to_world is None and record.intrinsics is not None  # freiburg2: no freiburgN in the name


def test_eth3d_colmap_calibration(tmp_path, views):
    write_eth3d(str(tmp_path), views, scenes=("courtyard", "pipes"))
    cameras = read_cameras_text(str(tmp_path / "pipes" / CALIBRATION_DIR / "cameras.txt"))
    assert [c.model for c in cameras.values()] == ["PINHOLE", "PINHOLE"]
    dataset = ETH3D(root=str(tmp_path), item_type="record")
    for i in range(4):
        record = dataset[i]
        assert record.label_type == "lidar" and record.depth_kind == "metric" and record.extras == {}
        assert record.sequence == ("courtyard" if i < 2 else "pipes") and record.frame == i % 2
        intrinsics, pose = true_geometry(views, i)
        assert torch.allclose(record.intrinsics, intrinsics, atol=1e-5)
        assert torch.allclose(record.camera_to_world, pose, atol=1e-5)
        assert reprojection_error(record, views, i) < 1e-3
        cameras = record.to_cameras()
        for name in ("R", "T", "focal_length", "principal_point"):
            assert torch.allclose(getattr(cameras, name), getattr(views.cameras[i], name), atol=1e-5), name


def test_eth3d_distorted_model_and_bad_files(tmp_path, views):
    write_eth3d(str(tmp_path), views, scenes=("courtyard",))
    path = tmp_path / "courtyard" / CALIBRATION_DIR / "cameras.txt"
    lines = path.read_text().splitlines()
    fields = lines[3].split()
    lines[3] = " ".join([fields[0], "THIN_PRISM_FISHEYE", *fields[2:], "0.1", "-0.2", "0", "0", "0", "0", "0", "0"])
    path.write_text("\n".join(lines) + "\n")
    record = ETH3D(root=str(tmp_path), item_type="record")[0]
    assert record.extras["camera_model"] == "THIN_PRISM_FISHEYE"
    assert record.extras["distortion"] == {"k1": 0.1, "k2": -0.2, "p1": 0.0, "p2": 0.0, "k3": 0.0, "k4": 0.0,
                                           "sx1": 0.0, "sy1": 0.0}
    assert torch.allclose(record.intrinsics, true_geometry(views, 0)[0], atol=1e-5)  # the pinhole part
    lines[3] = " ".join([fields[0], "PINHOLE", *fields[2:5]])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"cameras\.txt:4: .*expected 'CAMERA_ID PINHOLE WIDTH HEIGHT fx fy cx cy'"):
        ETH3D(root=str(tmp_path))
    images = tmp_path / "courtyard" / CALIBRATION_DIR / "images.txt"
    path.write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(DataFileError, match=r"images\.txt: image 'dslr_images/DSC_0001\.JPG' has camera 1"):
        ETH3D(root=str(tmp_path))
    write_eth3d(str(tmp_path), views, scenes=("courtyard",))
    images.write_text("\n".join(images.read_text().splitlines()[:4]) + "\n")  # the header only
    with pytest.raises(DataFileError, match=r"images\.txt has no entry for dslr_images/DSC_0001\.JPG"):
        ETH3D(root=str(tmp_path))


def test_sintel_cam_files_and_non_occluded_pixels(tmp_path, views):
    write_sintel(str(tmp_path), views, scenes=("alley_1", "bamboo_2"))
    assert sorted(os.listdir(tmp_path / "camdata_left" / "alley_1")) == ["frame_0001.cam", "frame_0002.cam"]
    dataset = Sintel(root=str(tmp_path), item_type="record")
    for i in range(4):
        record = dataset[i]
        assert record.label_type == "synthetic" and record.depth_kind == "metric"
        assert (record.sequence, record.frame) == (("alley_1", "bamboo_2")[i // 2], i % 2 + 1)
        intrinsics, pose = true_geometry(views, i)
        assert torch.allclose(record.intrinsics, intrinsics, atol=1e-5)
        assert torch.allclose(record.camera_to_world, pose, atol=1e-5)
        assert reprojection_error(record, views, i) < 1e-3
        assert int((~record.extras["eval_mask"]).sum()) == 6 * 8  # the occluded box
        frame = Sintel(root=str(tmp_path))[i]  # evaluation items leave the occluded pixels out
        assert torch.equal(frame.depth_mask[0] > 0, record.extras["eval_mask"])
    cam = tmp_path / "camdata_left" / "alley_1" / "frame_0002.cam"
    cam.write_bytes(cam.read_bytes()[:100])
    with pytest.raises(DataFileError, match=r"frame_0002\.cam'.*100 bytes, expected 172"):
        dataset[1]
    assert "eval_mask" not in Sintel(root=str(tmp_path), use_occlusions=False, item_type="record")[0].extras


def test_redweb_and_diw_records(tmp_path, views):
    write_redweb(str(tmp_path / "redweb"), views)
    record = ReDWeb(root=str(tmp_path / "redweb"), item_type="record")[0]
    assert record.depth_kind == "disparity" and record.label_type == "stereo" and record.intrinsics is None
    assert record.dataset == "ReDWeb" and record.depth.dtype == torch.float32 and float(record.depth.max()) == 255
    write_diw(str(tmp_path / "diw"), views, pairs_per_image=2)
    diw = DIW(root=str(tmp_path / "diw"), item_type="record")
    record = diw[1]
    assert record.depth is None and record.label_type == "ordinal" and record.extras["ordinal_pairs"].shape == (2, 5)
    item = DIW(root=str(tmp_path / "diw"))[1]
    assert torch.equal(item.meta["ordinal_pairs"], record.extras["ordinal_pairs"])


def test_record_items_exclude_training_crops(tmp_path, views):
    write_redweb(str(tmp_path), views)
    with pytest.raises(ConfigError, match="training_crop=16 crops FrameData items; item_type='record'"):
        ReDWeb(root=str(tmp_path), training_crop=16, item_type="record")
    with pytest.raises(ConfigError, match=r"bad value 'records' for 'ReDWeb.item_type'"):
        ReDWeb(root=str(tmp_path), item_type="records")


def test_depth_sample_becomes_a_record():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    sample = DepthSample(image=image, path="a.png", sequence="s", disparity=np.ones((2, 3), np.float32),
                         mask=np.array([[True, False, True], [True, True, True]]))
    record = sample.to_record()
    assert record.depth_kind == "disparity" and record.sequence == "s" and record.extras["eval_mask"].sum() == 5
    assert DepthSample(image=image, path="b.png", depth=np.ones((2, 3))).to_record().depth_kind == "metric"
