"""ETH3D high-resolution multi-view training scenes: DSLR images with laser-scan depth (MiDaS eval).

On-disk layout (the DSLR JPG download with each scene's DSLR depth download merged under one root):

    <root>/<scene>/images/dslr_images/<NAME>.JPG                 the DSLR image (6048 x 4032)
    <root>/<scene>/ground_truth_depth/dslr_images/<NAME>.JPG     its depth, despite the name

    <root>/<scene>/dslr_calibration_jpg/cameras.txt, images.txt   the JPG download's calibration

The depth file is not a JPEG: it is raw little-endian float32, the image's size (width * height
values), row-major, in metres; inf or 0 where the scan has no measurement.

Records: metric depth (label type "lidar", the laser scan), sequence = the scene, frame = the
image's position in it. The calibration is COLMAP's text model (formats/colmap.py; images.txt
names the images "dslr_images/<NAME>"): intrinsics = the camera model's pinhole part (COLMAP's
pixel convention is the records'; rescaled when the image is not the camera's WIDTH x HEIGHT),
camera_to_world = the inverse of the image's world-to-camera pose. The JPG download's images are
distorted (model THIN_PRISM_FISHEYE): a model with distortion puts extras["camera_model"] (its
name) and extras["distortion"] ({coefficient: value}) in the record. Without the calibration
folder, intrinsics and camera_to_world are None.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, depth_tensor, image_tensor
from recon_trainer.data.depth.image_files import read_rgb
from recon_trainer.data.depth.sintel import select_scenes
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats.colmap import (
    PINHOLE_MODELS,
    ColmapCamera,
    image_from_pose,
    read_cameras_text,
    read_images_text,
    write_cameras_text,
    write_images_text,
)
from recon_trainer.data.records import ViewRecord, opencv_view_from_cameras, rescale_intrinsics
from recon_trainer.errors import DataFileError

if TYPE_CHECKING:
    from recon_trainer.data.depth.synthetic import DepthViews

IMAGE_DIR = os.path.join("images", "dslr_images")
DEPTH_DIR = os.path.join("ground_truth_depth", "dslr_images")
CALIBRATION_DIR = "dslr_calibration_jpg"


class ETH3DSample(NamedTuple):
    """One image of a scene: its files and, when the scene has a calibration, its camera and pose."""

    image: str
    depth: str
    scene: str
    frame: int  # position in the scene (sorted names)
    camera: Optional[ColmapCamera] = None
    camera_to_world: Optional[np.ndarray] = None  # (4, 4) float64, OpenCV axes


@registry.register
class ETH3D(DepthDataset):
    """ETH3D DSLR images with depth; samples are ETH3DSamples (calibration read when listing)."""

    LABEL_TYPE = "lidar"

    split: str = choice_field("test", ("test",))  # test: every image of every scene (the only split)
    scenes: Tuple[str, ...] = ()  # only these scenes; (): every scene folder under root
    depth_cap: float = 72.0  # metres
    eval_metric: str = "absrel"

    def sample_sequence(self, sample: ETH3DSample) -> str:
        """The sequence a sample belongs to (DepthSequences groups by it): its scene."""
        return sample.scene

    def list_samples(self) -> List[ETH3DSample]:
        if not os.path.isdir(self.root):
            raise ConfigError(f"ETH3D: root folder {self.root!r} not found")
        samples = []
        for scene in select_scenes(self.root, self.scenes, "ETH3D"):
            image_dir, depth_dir = (os.path.join(self.root, scene, d) for d in (IMAGE_DIR, DEPTH_DIR))
            for folder in (image_dir, depth_dir):
                if not os.path.isdir(folder):
                    raise ConfigError(f"ETH3D: folder {folder!r} not found")
            calibration_dir = os.path.join(self.root, scene, CALIBRATION_DIR)
            calibration = read_calibration(calibration_dir)
            names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith((".jpg", ".jpeg")))
            for frame, name in enumerate(names):
                depth_path = os.path.join(depth_dir, name)
                if not os.path.isfile(depth_path):
                    raise ConfigError(f"ETH3D: depth file {depth_path!r} not found for {name!r}")
                camera = camera_to_world = None
                if calibration is not None:
                    if name not in calibration:
                        raise DataFileError(f"ETH3D: {os.path.join(calibration_dir, 'images.txt')} has no entry for "
                                            f"dslr_images/{name}")
                    camera, camera_to_world = calibration[name]
                samples.append(ETH3DSample(os.path.join(image_dir, name), depth_path, scene, frame, camera,
                                           camera_to_world))
        return samples

    def record_files(self, sample: ETH3DSample) -> Tuple[DataFile, ...]:
        return DataFile(sample.image, "image"), DataFile(sample.depth, "file")  # the depth file is raw float32

    def load_sample(self, sample: ETH3DSample) -> ViewRecord:
        rgb = read_rgb(sample.image)
        depth = read_raw_depth(sample.depth, rgb.shape[:2])
        intrinsics = camera_to_world = None
        extras = {}
        if sample.camera is not None:
            camera = sample.camera
            intrinsics = rescale_intrinsics(torch.from_numpy(camera.intrinsics()), (camera.height, camera.width),
                                            rgb.shape[:2]).float()
            camera_to_world = torch.from_numpy(sample.camera_to_world).float()
            if camera.model not in PINHOLE_MODELS:
                extras = {"camera_model": camera.model, "distortion": camera.distortion()}
        return ViewRecord(
            image=image_tensor(rgb),
            depth=depth_tensor(depth),
            depth_kind="metric",
            intrinsics=intrinsics,
            camera_to_world=camera_to_world,
            sequence=sample.scene,
            frame=sample.frame,
            path=sample.image,
            extras=extras,
        )


def read_calibration(folder: str) -> Optional[Dict[str, Tuple[ColmapCamera, np.ndarray]]]:
    """{image file name: (camera, (4, 4) camera-to-world)} of a scene's calibration folder (COLMAP
    text model, images named "dslr_images/<NAME>"); None when the folder is not there."""
    if not os.path.isdir(folder):
        return None
    cameras_path, images_path = os.path.join(folder, "cameras.txt"), os.path.join(folder, "images.txt")
    cameras = read_cameras_text(cameras_path)
    calibration = {}
    for name, image in read_images_text(images_path).items():
        if image.camera_id not in cameras:
            raise DataFileError(f"ETH3D: {images_path}: image {name!r} has camera {image.camera_id}, which "
                                f"{cameras_path} does not list (cameras {sorted(cameras)})")
        calibration[os.path.basename(name)] = (cameras[image.camera_id], image.camera_to_world())
    return calibration


def read_raw_depth(path: str, size_hw: Tuple[int, int]) -> np.ndarray:
    """(H, W) float32 from a raw little-endian float32 file; DataFileError naming the file when its
    byte count is not 4 * H * W."""
    expected = 4 * size_hw[0] * size_hw[1]
    found = os.path.getsize(path)
    if found != expected:
        raise DataFileError(
            f"ETH3D: {path!r} has {found} bytes, expected {expected} (float32, {size_hw[1]}x{size_hw[0]})"
        )
    return np.fromfile(path, dtype="<f4").reshape(size_hw).astype(np.float32)


def write_eth3d(
    out_dir: str, views: "DepthViews", scenes: Sequence[str] = ("courtyard",), quality: int = 95, first: int = 1
) -> str:
    """Write views as ETH3D scenes (split into `scenes` in order): JPEG images (4:4:4) DSC_NNNN.JPG numbered
    from `first` and their exact float32 depth under the same name; with views.cameras, each
    scene's dslr_calibration_jpg/ with one PINHOLE camera per view and its pose. Returns out_dir (the root)."""
    height, width = views.depth.shape[1:]
    for scene, ids in zip(scenes, np.array_split(np.arange(len(views.rgb)), len(scenes))):
        image_dir, depth_dir = (os.path.join(out_dir, scene, d) for d in (IMAGE_DIR, DEPTH_DIR))
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(depth_dir, exist_ok=True)
        cameras, images = {}, {}
        for number, i in enumerate(ids, start=first):
            name = f"DSC_{number:04d}.JPG"
            image_path = os.path.join(image_dir, name)
            Image.fromarray(views.rgb[i]).save(image_path, format="JPEG", quality=quality, subsampling=0)
            np.ascontiguousarray(views.depth[i], dtype="<f4").tofile(os.path.join(depth_dir, name))
            if views.cameras is not None:
                intrinsics, camera_to_world = (t[0].double().numpy()
                                               for t in opencv_view_from_cameras(views.cameras[int(i)]))
                params = (intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2])
                cameras[number] = ColmapCamera("PINHOLE", width, height, tuple(float(v) for v in params))
                images[name] = image_from_pose(number, camera_to_world, number, f"dslr_images/{name}")
        if views.cameras is not None:
            write_cameras_text(os.path.join(out_dir, scene, CALIBRATION_DIR, "cameras.txt"), cameras)
            write_images_text(os.path.join(out_dir, scene, CALIBRATION_DIR, "images.txt"), images)
    return out_dir
