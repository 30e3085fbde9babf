"""NYUv2 semantic scene completion as MonoScene pre-processes it (Symphonies' and MonoScene's NYU data).

    data_root/NYU{train,test}/<name>_color.jpg    640 x 480 RGB (name = NYU<id>_0000)
    data_root/NYU{train,test}/<name>.png          depth, uint16 / 8000 = metres (0 unknown)
    label_root/NYU{train,test}/<name>.pkl         one pickled dict:
        cam_pose     float32 (4, 4) camera-to-world (SSCNet's; OpenCV camera axes)
        voxel_origin float32 (3,) world coordinates of the min corner of voxel (0, 0, 0)
        name         str
        target_1_4   uint8 (60, 36, 60) labels at 0.08 m, axes (x, height, z) as stored
        target_1_16  uint8 (15, 9, 15) labels at 0.32 m

The loaders transpose the targets to (x, z, height) = (60, 60, 36) and (15, 15, 9): grid axis k
runs along world coordinate k, height last (the scene is 4.8 x 4.8 x 2.88 m). 12 classes (0 empty,
1 ceiling, 2 floor, 3 wall, 4 window, 5 chair, 6 bed, 7 sofa, 8 table, 9 tvs, 10 furniture,
11 objects), 255 ignored. The camera is fixed: K = [[518.8579, 0, 320], [0, 518.8579, 240],
[0, 0, 1]] with integer pixel centres (records add half a pixel, data/records.py).

Pickle runs code named in the file when it loads; these files are read with `read_pkl`, a
restricted unpickler that only builds numpy arrays, numpy scalars and dtypes and the basic Python
types (dict, list, tuple, str, bytes, numbers), and refuses anything else with a DataFileError.
"""
from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
from typing import Any, Dict, Optional

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.records import ViewRecord, VoxelRecord, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

NYU_INTRINSICS = ((518.8579, 0.0, 320.0), (0.0, 518.8579, 240.0), (0.0, 0.0, 1.0))  # integer pixel centres
VOXEL_SIZE_1_4 = 0.08  # metres, target_1_4
VOXEL_SIZE_1_16 = 0.32  # metres, target_1_16
DEPTH_SCALE = 8000.0  # depth PNG units per metre (as Symphonies reads it)
CLASS_NAMES = ("empty", "ceiling", "floor", "wall", "window", "chair", "bed", "sofa", "table", "tvs",
               "furniture", "objects")

# (module, name) the pickles may name: what numpy's own pickles of arrays, scalars and dtypes use
# (numpy 1.x wrote numpy.core, 2.x writes numpy._core), protocol 2's bytes and OrderedDict.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("collections", "OrderedDict"): ("collections", "OrderedDict"),
}


def _numpy_core(name: str) -> Any:
    for package in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ImportError:
            continue
    raise ImportError(f"numpy has no _core.{name} or core.{name}")


def _resolve(kind: str, name: str) -> Any:
    if kind == "numpy":
        return getattr(np, name)
    if kind == "_codecs":
        import codecs

        return codecs.encode
    if kind == "collections":
        return collections.OrderedDict
    return getattr(_numpy_core(kind), name)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that builds only numpy arrays / scalars / dtypes and basic Python values."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and basic types "
                                         f"are allowed")
        return _resolve(*allowed)


def read_pkl(path: str) -> Any:
    """The object of a pickle file holding numpy arrays and basic Python values, read with
    RestrictedUnpickler; DataFileError naming the file when it cannot be read or names anything else."""
    try:
        with open(path, "rb") as file:
            return RestrictedUnpickler(io.BytesIO(file.read())).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as error:
        raise DataFileError(f"{path}: cannot read the pickle: {error}") from None


def sample_paths(data_root: str, label_root: str, split: str, name: str) -> Dict[str, str]:
    """The image, depth and label files of sample `name` (e.g. NYU0001_0000) of split train or test."""
    folder = f"NYU{split}"
    return {
        "image": os.path.join(data_root, folder, f"{name}_color.jpg"),
        "depth": os.path.join(data_root, folder, f"{name}.png"),
        "label": os.path.join(label_root, folder, f"{name}.pkl"),
    }


def list_samples(label_root: str, split: str) -> list:
    """The sample names of a split (the .pkl files of label_root/NYU<split>), sorted."""
    folder = os.path.join(label_root, f"NYU{split}")
    try:
        return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".pkl"))
    except OSError as error:
        raise DataFileError(f"{folder}: cannot list the NYU labels: {error}") from None


def read_sample(data_root: str, label_root: str, split: str, name: str, with_depth: bool = True,
                dataset: str = "") -> ViewRecord:
    """One NYU SSC sample as a ViewRecord (image, metric depth when `with_depth`, K, the pkl's
    camera-to-world pose) with extras["voxels"]: a VoxelRecord of target_1_4 transposed to
    (60, 60, 36) at 0.08 m from voxel_origin, whose extras["target_1_16"] is the (15, 15, 9)
    volume at 0.32 m."""
    paths = sample_paths(data_root, label_root, split, name)
    labels = read_pkl(paths["label"])
    missing = [key for key in ("cam_pose", "voxel_origin", "target_1_4") if not isinstance(labels, dict) or
               key not in labels]
    if missing:
        raise DataFileError(f"{paths['label']}: the NYU label pickle has no {', '.join(missing)}")
    try:
        with Image.open(paths["image"]) as file:
            rgb = np.array(file.convert("RGB"))
        depth = None
        if with_depth:
            with Image.open(paths["depth"]) as file:
                depth = torch.from_numpy(np.array(file).astype(np.float32) / DEPTH_SCALE)
    except OSError as error:
        raise DataFileError(f"{paths['image']}: cannot read the sample's image or depth: {error}") from None
    origin = torch.tensor(np.asarray(labels["voxel_origin"], dtype=np.float32).reshape(3))
    extras: Dict[str, Any] = {}
    if "target_1_16" in labels:
        coarse = np.ascontiguousarray(np.asarray(labels["target_1_16"], dtype=np.uint8).transpose(0, 2, 1))
        extras["target_1_16"] = VoxelRecord(torch.from_numpy(coarse), VOXEL_SIZE_1_16, origin.clone())
    target = np.ascontiguousarray(np.asarray(labels["target_1_4"], dtype=np.uint8).transpose(0, 2, 1))
    voxels = VoxelRecord(torch.from_numpy(target), VOXEL_SIZE_1_4, origin, extras)
    return ViewRecord(
        image=torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0,
        depth=depth,
        depth_kind="metric",
        intrinsics=intrinsics_centre_to_corner(torch.tensor(NYU_INTRINSICS, dtype=torch.float32)),
        camera_to_world=torch.tensor(np.asarray(labels["cam_pose"], dtype=np.float32).reshape(4, 4)),
        sequence=str(labels.get("name", name)),
        dataset=dataset,
        label_type="sensor",
        path=paths["image"],
        extras={"voxels": voxels},
    )


def write_sample(data_root: str, label_root: str, split: str, name: str, rgb: np.ndarray,
                 depth_m: Optional[np.ndarray], cam_pose: np.ndarray, voxel_origin: np.ndarray,
                 target_1_4: np.ndarray, target_1_16: Optional[np.ndarray] = None) -> None:
    """Write one sample in the layout above (tests, tiny synthetic copies): targets in the stored
    axis order (x, height, z), e.g. (60, 36, 60) and (15, 9, 15)."""
    paths = sample_paths(data_root, label_root, split, name)
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(paths["image"], quality=95)
    if depth_m is not None:
        units = np.clip(np.round(np.nan_to_num(depth_m, nan=0.0, posinf=0.0) * DEPTH_SCALE), 0, 65535)
        Image.fromarray(units.astype(np.uint16)).save(paths["depth"])
    content = {"cam_pose": np.asarray(cam_pose, dtype=np.float32), "voxel_origin": np.asarray(voxel_origin, np.float32),
               "name": name, "target_1_4": np.asarray(target_1_4, dtype=np.uint8)}
    if target_1_16 is not None:
        content["target_1_16"] = np.asarray(target_1_16, dtype=np.uint8)
    with open(paths["label"], "wb") as file:
        pickle.dump(content, file)
