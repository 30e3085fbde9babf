"""ReDWeb (V1): web stereo images with relative depth, the MiDaS training set.

On-disk layout (as distributed, ReDWeb_V1.tar.gz):

    <root>/Imgs/<stem>.jpg     RGB images
    <root>/RDs/<stem>.png      relative depth of the same size: 8-bit, larger = closer (a disparity-like
                               value from stereo correspondence); the first channel if it has several

There is no metric depth, so records carry the RD value as depth of kind "disparity" (label type
"stereo"), and FrameData items as `disparity_map`; 0 is taken as unknown. No intrinsics or poses.
ReDWeb has no official split: split "all" is every image, "val" every `val_every`-th image in
sorted order starting with the first, "train" the others.
"""
from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, depth_tensor, image_tensor
from recon_trainer.data.depth.image_files import open_image, read_rgb
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.records import ViewRecord
from recon_trainer.errors import DataFileError

SPLITS = ("all", "train", "val")


@registry.register
class ReDWeb(DepthDataset):
    """ReDWeb_V1 images with 8-bit relative depth as disparity; samples are (image path, RD path)."""

    LABEL_TYPE = "stereo"

    split: str = choice_field("all", SPLITS)  # all, train or val (every val_every-th image in sorted order is val)
    val_every: int = 10  # one image in val_every is in the val split
    depth_cap: float = 0.0  # no metric depth
    eval_metric: str = "absrel"

    def list_samples(self) -> List[Tuple[str, str]]:
        if self.val_every < 1:
            raise ConfigError(f"ReDWeb.val_every={self.val_every}: expected >= 1")
        image_dir, rd_dir = os.path.join(self.root, "Imgs"), os.path.join(self.root, "RDs")
        for folder in (image_dir, rd_dir):
            if not os.path.isdir(folder):
                raise ConfigError(f"ReDWeb: folder {folder!r} not found (root={self.root!r}, expected Imgs/ and RDs/)")
        names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(".jpg"))
        records = []
        for index, name in enumerate(names):
            is_val = index % self.val_every == 0
            if self.split != "all" and is_val != (self.split == "val"):
                continue
            rd_path = os.path.join(rd_dir, os.path.splitext(name)[0] + ".png")
            if not os.path.isfile(rd_path):
                raise ConfigError(f"ReDWeb: relative depth {rd_path!r} not found for image {name!r}")
            records.append((os.path.join(image_dir, name), rd_path))
        return records

    def record_files(self, sample: Tuple[str, str]) -> Tuple[DataFile, ...]:
        return tuple(DataFile(path) for path in sample)

    def load_sample(self, sample: Tuple[str, str]) -> ViewRecord:
        image_path, rd_path = sample
        image = read_rgb(image_path)
        with open_image(rd_path) as rd_image:
            if rd_image.mode not in ("L", "LA", "RGB", "RGBA"):
                raise DataFileError(f"ReDWeb: {rd_path!r} has PIL mode {rd_image.mode!r}, expected an 8-bit PNG")
            rd = np.asarray(rd_image)
        rd = rd[..., 0] if rd.ndim == 3 else rd
        if rd.shape != image.shape[:2]:
            raise DataFileError(f"ReDWeb: {rd_path!r} is {rd.shape}, expected the image size {image.shape[:2]}")
        return ViewRecord(image=image_tensor(image), depth=depth_tensor(rd), depth_kind="disparity", path=image_path)
