"""COLMAP's text model: cameras.txt and images.txt (ETH3D ships its calibration in it).

cameras.txt: one line per camera, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS...", with the parameters
of the model (`MODEL_PARAMS`): the pinhole part first (f, cx, cy or fx, fy, cx, cy, in pixels,
pixel centres at + 0.5 as in the records), then the distortion coefficients.
images.txt: two lines per image, "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", then the image's
2D points (possibly an empty line). (QW, QX, QY, QZ) and (TX, TY, TZ) map world to camera
coordinates, `X_cam = R(q) X_world + t`, with OpenCV camera axes. Lines starting with '#' are
comments.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Tuple

import numpy as np

from recon_trainer.data.formats.poses import matrix_to_quaternion, quaternion_to_matrix, rigid_matrix
from recon_trainer.errors import DataFileError

# Parameter names of each camera model, in file order (COLMAP's src/colmap/sensor/models.h).
MODEL_PARAMS: Dict[str, Tuple[str, ...]] = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
    "OPENCV_FISHEYE": ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"),
    "FULL_OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
    "FOV": ("fx", "fy", "cx", "cy", "omega"),
    "SIMPLE_RADIAL_FISHEYE": ("f", "cx", "cy", "k"),
    "RADIAL_FISHEYE": ("f", "cx", "cy", "k1", "k2"),
    "THIN_PRISM_FISHEYE": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1"),
}
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")  # the models without distortion


@dataclasses.dataclass
class ColmapCamera:
    """One line of cameras.txt: model, image width and height in pixels, parameters (MODEL_PARAMS)."""

    model: str
    width: int
    height: int
    params: Tuple[float, ...]

    def intrinsics(self) -> np.ndarray:
        """(3, 3) float64 K of the model's pinhole part (pixels, centres at + 0.5)."""
        values = dict(zip(MODEL_PARAMS[self.model], self.params))
        fx, fy = (values["f"], values["f"]) if "f" in values else (values["fx"], values["fy"])
        return np.array([[fx, 0.0, values["cx"]], [0.0, fy, values["cy"]], [0.0, 0.0, 1.0]])

    def distortion(self) -> Dict[str, float]:
        """The distortion coefficients by name ({} for the pinhole models)."""
        pinhole = {"f", "fx", "fy", "cx", "cy"}
        return {name: value for name, value in zip(MODEL_PARAMS[self.model], self.params) if name not in pinhole}


@dataclasses.dataclass
class ColmapImage:
    """One image of images.txt: its id, world-to-camera rotation (QW, QX, QY, QZ) and translation,
    camera id and name (the path relative to the image folder)."""

    image_id: int
    qvec: Tuple[float, float, float, float]
    tvec: Tuple[float, float, float]
    camera_id: int
    name: str

    def camera_to_world(self) -> np.ndarray:
        """(4, 4) float64 camera-to-world pose (OpenCV axes)."""
        return np.linalg.inv(rigid_matrix(quaternion_to_matrix(np.asarray(self.qvec)), np.asarray(self.tvec)))


def _data_lines(path: str) -> list:
    """(line number, text) of the non-comment lines of a text file (empty lines kept)."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(f"{path}: cannot read the COLMAP text file: {error}") from None
    return [(number, line) for number, line in enumerate(lines, start=1) if not line.startswith("#")]


def read_cameras_text(path: str) -> Dict[int, ColmapCamera]:
    """{camera id: camera} of a cameras.txt; DataFileError naming the file and line when malformed."""
    cameras = {}
    for number, line in _data_lines(path):
        fields = line.split()
        if not fields:
            continue
        model = fields[1] if len(fields) > 1 else ""
        try:
            if model not in MODEL_PARAMS or len(fields) != 4 + len(MODEL_PARAMS[model]):
                raise ValueError
            camera_id, width, height = int(fields[0]), int(fields[2]), int(fields[3])
            params = tuple(float(v) for v in fields[4:])
        except ValueError:
            expected = (f"'CAMERA_ID {model} WIDTH HEIGHT {' '.join(MODEL_PARAMS[model])}'" if model in MODEL_PARAMS
                        else f"'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...' with MODEL one of {', '.join(MODEL_PARAMS)}")
            raise DataFileError(f"{path}:{number}: {line!r}, expected {expected}") from None
        cameras[camera_id] = ColmapCamera(model, width, height, params)
    return cameras


def read_images_text(path: str) -> Dict[str, ColmapImage]:
    """{image name: image} of an images.txt (the 2D-point lines are skipped); DataFileError naming
    the file and line when malformed."""
    lines = _data_lines(path)
    images = {}
    for number, line in lines[0::2]:
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 10:
                raise ValueError
            values = [float(v) for v in fields[1:8]]
            image = ColmapImage(int(fields[0]), tuple(values[:4]), tuple(values[4:]), int(fields[8]), fields[9])
        except ValueError:
            raise DataFileError(f"{path}:{number}: {line!r}, expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME' "
                                f"(then a line of 2D points)") from None
        images[image.name] = image
    return images


def write_cameras_text(path: str, cameras: Dict[int, ColmapCamera]) -> None:
    """Write cameras.txt (with COLMAP's header comments)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(cameras)}"]
    for camera_id, camera in sorted(cameras.items()):
        lines.append(" ".join([str(camera_id), camera.model, str(camera.width), str(camera.height)]
                              + [repr(float(v)) for v in camera.params]))
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def write_images_text(path: str, images: Dict[str, ColmapImage]) -> None:
    """Write images.txt (with COLMAP's header comments and an empty 2D-point line per image)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)", f"# Number of images: {len(images)}"]
    for image in sorted(images.values(), key=lambda i: i.image_id):
        values = [repr(float(v)) for v in (*image.qvec, *image.tvec)]
        lines += [" ".join([str(image.image_id), *values, str(image.camera_id), image.name]), ""]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def image_from_pose(image_id: int, camera_to_world: np.ndarray, camera_id: int, name: str) -> ColmapImage:
    """The images.txt entry of a (4, 4) camera-to-world pose (OpenCV axes)."""
    world_to_camera = np.linalg.inv(np.asarray(camera_to_world, dtype=np.float64))
    qvec = matrix_to_quaternion(world_to_camera[:3, :3])
    return ColmapImage(image_id, tuple(float(v) for v in qvec), tuple(float(v) for v in world_to_camera[:3, 3]),
                       camera_id, name)
