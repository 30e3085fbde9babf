"""ETH3D high-resolution multi-view training scenes: DSLR images with laser-scan depth (MiDaS eval).

On-disk layout (the DSLR JPG download with each scene's DSLR depth download merged under one root):

    <root>/<scene>/images/dslr_images/<NAME>.JPG                 the DSLR image (6048 x 4032)
    <root>/<scene>/ground_truth_depth/dslr_images/<NAME>.JPG     its depth, despite the name

The depth file is not a JPEG: it is raw little-endian float32, the image's size (width * height
values), row-major, in metres; inf or 0 where the scan has no measurement.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, DepthSample
from recon_trainer.data.depth.image_files import read_rgb
from recon_trainer.data.file_check import DataFile
from recon_trainer.errors import DataFileError
from recon_trainer.data.depth.sintel import select_scenes

if TYPE_CHECKING:
    from recon_trainer.data.depth.synthetic import DepthViews

IMAGE_DIR = os.path.join("images", "dslr_images")
DEPTH_DIR = os.path.join("ground_truth_depth", "dslr_images")


@registry.register
class ETH3D(DepthDataset):
    """ETH3D DSLR images with depth; records are (image path, depth path, scene)."""

    split: str = choice_field("test", ("test",))  # test: every image of every scene (the only split)
    scenes: Tuple[str, ...] = ()  # only these scenes; (): every scene folder under root
    depth_cap: float = 72.0  # metres
    eval_metric: str = "absrel"

    def list_samples(self) -> List[Tuple[str, str, str]]:
        if not os.path.isdir(self.root):
            raise ConfigError(f"ETH3D: root folder {self.root!r} not found")
        records = []
        for scene in select_scenes(self.root, self.scenes, "ETH3D"):
            image_dir, depth_dir = (os.path.join(self.root, scene, d) for d in (IMAGE_DIR, DEPTH_DIR))
            for folder in (image_dir, depth_dir):
                if not os.path.isdir(folder):
                    raise ConfigError(f"ETH3D: folder {folder!r} not found")
            for name in sorted(n for n in os.listdir(image_dir) if n.lower().endswith((".jpg", ".jpeg"))):
                depth_path = os.path.join(depth_dir, name)
                if not os.path.isfile(depth_path):
                    raise ConfigError(f"ETH3D: depth file {depth_path!r} not found for {name!r}")
                records.append((os.path.join(image_dir, name), depth_path, scene))
        return records

    def record_files(self, record: Tuple[str, str, str]) -> Tuple[DataFile, ...]:
        return DataFile(record[0], "image"), DataFile(record[1], "file")  # the depth file is raw float32

    def load_sample(self, record: Tuple[str, str, str]) -> DepthSample:
        image_path, depth_path, scene = record
        rgb = read_rgb(image_path)
        depth = read_raw_depth(depth_path, rgb.shape[:2])
        return DepthSample(image=rgb, depth=depth, path=image_path, sequence=scene)


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
    from `first` and their exact float32 depth under the same name. Returns out_dir (the root)."""
    for scene, ids in zip(scenes, np.array_split(np.arange(len(views.rgb)), len(scenes))):
        image_dir, depth_dir = (os.path.join(out_dir, scene, d) for d in (IMAGE_DIR, DEPTH_DIR))
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(depth_dir, exist_ok=True)
        for number, i in enumerate(ids, start=first):
            name = f"DSC_{number:04d}.JPG"
            image_path = os.path.join(image_dir, name)
            Image.fromarray(views.rgb[i]).save(image_path, format="JPEG", quality=quality, subsampling=0)
            np.ascontiguousarray(views.depth[i], dtype="<f4").tofile(os.path.join(depth_dir, name))
    return out_dir
