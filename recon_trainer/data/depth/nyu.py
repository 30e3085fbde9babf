"""NYU Depth v2, the labelled subset (1449 images; MiDaS evaluates the 654 test images on rawDepths).

On-disk layout (as distributed):

    <root>/nyu_depth_v2_labeled.mat   MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB header
    <root>/splits.mat                 MATLAB v5: trainNdxs (795, 1), testNdxs (654, 1), 1-based

MATLAB stores arrays column-major, so HDF5 sees them with the axes reversed: `images` uint8
(N, 3, W, H) (MATLAB: H x W x 3 x N), `depths` float32 (N, W, H) in metres (in-painted, dense) and
`rawDepths` float32 (N, W, H) in metres from the sensor (0 = missing). One image is
`images[i].transpose(2, 1, 0)` (H, W, 3) and its depth `depths[i].T` (H, W).

Records: metric depth (label type "sensor", the Kinect), frame = the 0-based image index, no
sequence and no pose. The intrinsics are the colour camera's of the labelled set (NYU toolbox
camera_params.m: fx 518.8579, fy 519.4696, cx 325.5824, cy 253.7362 at 640 x 480, integer pixel
centres: half a pixel is added, data/records.py); this reader crops nothing (the white border of
the labelled images is kept), and an image of another size (a resized copy) gets K rescaled to it.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, depth_tensor, image_tensor
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.records import ViewRecord, intrinsics_centre_to_corner, rescale_intrinsics
from recon_trainer.dependencies import require
from recon_trainer.errors import DataFileError

if TYPE_CHECKING:
    import h5py

    from recon_trainer.data.depth.synthetic import DepthViews

MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}
DEPTH_KEYS = ("rawDepths", "depths")
USERBLOCK_BYTES = 512
# The labelled set's colour camera (NYU toolbox camera_params.m), integer pixel centres, at CAMERA_HW.
CAMERA_INTRINSICS = ((518.8579, 0.0, 325.5824), (0.0, 519.4696, 253.7362), (0.0, 0.0, 1.0))
CAMERA_HW = (480, 640)


@registry.register
class NYUv2(DepthDataset):
    """The labelled NYUv2 images of one split; samples are 0-based indices into the .mat arrays."""

    LABEL_TYPE = "sensor"

    split: str = choice_field("test", SPLIT_KEYS)  # test (654 images, splits.mat testNdxs) or train (795, trainNdxs)
    depth_key: str = choice_field("rawDepths", DEPTH_KEYS)  # rawDepths (sensor, 0 = missing) or depths (filled)
    depth_cap: float = 10.0  # metres
    eval_metric: str = "delta1.25"

    @property
    def mat_path(self) -> str:
        return os.path.join(self.root, MAT_NAME)

    def open_mat(self) -> h5py.File:
        """The labelled .mat opened for reading; DataFileError naming it when h5py cannot open it."""
        h5py = require("h5py", "NYUv2 (its labelled .mat is HDF5)")
        try:
            return h5py.File(self.mat_path, "r")
        except OSError as error:
            raise DataFileError(f"NYUv2: {self.mat_path!r} is not a MATLAB v7.3 (HDF5) file h5py can open "
                                f"({error})") from error

    def list_samples(self) -> List[int]:
        splits_path = os.path.join(self.root, SPLITS_NAME)
        for path in (self.mat_path, splits_path):
            if not os.path.isfile(path):
                raise ConfigError(f"NYUv2: {path!r} not found (root={self.root!r})")
        key = SPLIT_KEYS[self.split]
        splits = require("scipy.io", "NYUv2 (splits.mat is MATLAB v5)", "scipy").loadmat(splits_path)
        if key not in splits:
            found = sorted(k for k in splits if not k.startswith("__"))
            raise DataFileError(f"NYUv2: {splits_path!r} has no {key!r} (found {found})")
        one_based = np.asarray(splits[key]).ravel()
        if not np.all(one_based == np.round(one_based)):
            raise DataFileError(f"NYUv2: {splits_path!r} {key} holds non-integer indices")
        with self.open_mat() as mat:
            for name in ("images", self.depth_key):
                if name not in mat:
                    raise DataFileError(f"NYUv2: {self.mat_path!r} has no dataset {name!r}")
            count = mat["images"].shape[0]
        indices = sorted(int(i) - 1 for i in one_based)
        if indices and (indices[0] < 0 or indices[-1] >= count):
            raise DataFileError(f"NYUv2: {splits_path!r} {key} has indices outside 1..{count} ({self.mat_path!r})")
        return indices

    def record_files(self, sample: int) -> Tuple[DataFile, ...]:
        return (DataFile(self.mat_path, "hdf5"),)  # one file for every image

    def load_sample(self, sample: int) -> ViewRecord:
        with self.open_mat() as mat:
            image, depth = mat["images"][sample], mat[self.depth_key][sample]
        if image.ndim != 3 or image.shape[0] != 3 or depth.shape != image.shape[1:]:
            raise DataFileError(
                f"NYUv2: {self.mat_path!r} images[{sample}] is {image.shape} and {self.depth_key}[{sample}] "
                f"{depth.shape}, expected (3, W, H) and (W, H)"
            )
        rgb = image.transpose(2, 1, 0).astype(np.uint8)
        return ViewRecord(
            image=image_tensor(rgb),
            depth=depth_tensor(depth.T),
            depth_kind="metric",
            intrinsics=camera_intrinsics(rgb.shape[:2]),
            frame=sample,
            path=f"{self.mat_path}#{sample + 1}",
        )


def camera_intrinsics(image_hw: Tuple[int, int]) -> torch.Tensor:
    """(3, 3) float32 K (records' convention) of the labelled set's camera for an image of image_hw."""
    intrinsics = intrinsics_centre_to_corner(torch.tensor(CAMERA_INTRINSICS, dtype=torch.float64))
    return rescale_intrinsics(intrinsics, CAMERA_HW, image_hw).float()


def matlab_header(created: Optional[str] = None) -> bytes:
    """The 128-byte header MATLAB puts in a v7.3 file's userblock: 116 bytes of text, 8 bytes of
    subsystem offset, version 0x0200 and the endian mark 'IM' (little-endian). created: default the
    epoch, so that written files are reproducible."""
    created = created or time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(0))
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 ."
    return text.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02" + b"IM"


def write_nyu(
    out_dir: str,
    views: "DepthViews",
    test_indices: Optional[Sequence[int]] = None,
    hole_step: int = 7,
) -> str:
    """Write views as the labelled NYUv2 files: the v7.3-style .mat (images, in-painted `depths` =
    the exact depth, `rawDepths` = the depth with every `hole_step`-th pixel missing) and splits.mat.
    test_indices: 0-based test images (default: the even ones); the rest are train. Returns out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    count = len(views.rgb)
    depth = views.depth.astype(np.float32)
    raw = depth.reshape(count, -1).copy()
    raw[:, ::hole_step] = 0.0
    raw = raw.reshape(depth.shape)
    mat_path = os.path.join(out_dir, MAT_NAME)
    h5py = require("h5py", "writing NYUv2's labelled .mat (HDF5)")
    with h5py.File(mat_path, "w", userblock_size=USERBLOCK_BYTES) as mat:
        mat.create_dataset("images", data=views.rgb.transpose(0, 3, 2, 1).astype(np.uint8))
        mat.create_dataset("depths", data=depth.transpose(0, 2, 1))
        mat.create_dataset("rawDepths", data=raw.transpose(0, 2, 1))
    with open(mat_path, "r+b") as handle:
        handle.write(matlab_header().ljust(USERBLOCK_BYTES, b"\x00"))
    test = sorted(set(range(0, count, 2) if test_indices is None else test_indices))
    train = [i for i in range(count) if i not in test]
    splits = {SPLIT_KEYS["train"]: train, SPLIT_KEYS["test"]: test}
    # MATLAB doubles, 1-based, as (k, 1) columns
    require("scipy.io", "writing NYUv2's splits.mat", "scipy").savemat(
        os.path.join(out_dir, SPLITS_NAME),
        {key: np.asarray(ids, dtype=np.float64).reshape(-1, 1) + 1 for key, ids in splits.items()},
    )
    return out_dir
