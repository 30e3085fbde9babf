"""NYUv2 semantic scene completion as MonoScene pre-processes it (Symphonies' and MonoScene's NYU data).

    data_root/NYU{train,test}/<name>_color.jpg    640 x 480 RGB (name = NYU<id>_0000)
    data_root/NYU{train,test}/<name>.png          depth, uint16 / 8000 = metres (0 unknown)
    label_root/NYU{train,test}/<name>.pkl         one pickled dict:
        cam_pose     float32 (4, 4) camera-to-world (SSCNet's; OpenCV camera axes)
        voxel_origin float32 (3,) world coordinates of the min corner of voxel (0, 0, 0)
        name         str
        target_1_4   uint8 (60, 36, 60) labels at 0.08 m, stored axes (world x, height, world y)
        target_1_16  uint8 (15, 9, 15) labels at 0.32 m

The loaders transpose the targets to (x, y, height) = (60, 60, 36) and (15, 15, 9): grid axis k
runs along world coordinate k, height (world z) last (the scene is 4.8 x 4.8 x 2.88 m). 12 classes (0 empty,
1 ceiling, 2 floor, 3 wall, 4 window, 5 chair, 6 bed, 7 sofa, 8 table, 9 tvs, 10 furniture,
11 objects), 255 ignored. The camera is fixed: K = [[518.8579, 0, 320], [0, 518.8579, 240],
[0, 0, 1]] with integer pixel centres (records add half a pixel, data/records.py).

Pickle runs code named in the file when it loads; these files are read with `read_pkl`, a
restricted unpickler that only builds numpy arrays, numpy scalars and dtypes and the basic Python
types (dict, list, tuple, str, bytes, numbers), and refuses anything else with a DataFileError.

SSCNet's "depthbin" files (the raw data MonoScene pre-processes into the pkl above):

    data_root/NYU{train,test}/<name>.bin   little-endian: float32 x 3 voxel origin (world, metres),
                                           float32 x 16 camera-to-world pose (4 x 4, row-major,
                                           OpenCV camera axes), then uint32 (value, count) pairs:
                                           the run-length code of the labels in C order
    data_root/NYU{train,test}/<name>.png   depth: SSCNet stores millimetres rotated left by 3 bits
                                           (mm * 8 below 8.192 m), so uint16 / 8000 = metres

The decoded volume is uint8 (240, 144, 240) at 0.02 m with stored axes (world x, world z, world y):
SSCNet's world frame has z up (the floor at z = 0, voxel_origin z = -0.05), and its writer swaps
the axes to (y, z, x) in MATLAB's column-major order, i.e. (x, z, y) in numpy's C order. Hence the
pkl targets (x, height, y) and the loaders' transpose(0, 2, 1) to world (x, y, z). Values are
SSCNet's 36 object classes (ids 0..36, 0 empty) and 255 (outside the room); `SEG_CLASS_MAP`
maps them to the 12 classes above. SSCNet places the 4.8 x 4.8 x 2.88 m volume 3.4 m ahead of the
camera: voxel_origin = R @ (0, 0, 3.4) + t - (2.4, 2.4, 1.44) with its z replaced by -0.05, so
the volume starts about a metre in front of the camera; in-room voxels outside the camera's view
are labelled 0, empty voxels outside the room 255.

`depthbin_to_pkl_content` is MonoScene's pre-processing: classes mapped to 12, then
`downsample_labels` by 4 (target_1_4) and by 16 (target_1_16). Its rule for a block of f^3 voxels:
more than 95 % empty (0) or unknown (255) -> 0 or 255, whichever is more frequent (255 on a tie);
otherwise the most frequent class among the others (the smallest id on a tie).
"""
from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.data.records import ViewRecord, VoxelRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError
from recon_trainer.fileio import atomic_path

NYU_INTRINSICS = ((518.8579, 0.0, 320.0), (0.0, 518.8579, 240.0), (0.0, 0.0, 1.0))  # integer pixel centres
VOXEL_SIZE_1_4 = 0.08  # metres, target_1_4
VOXEL_SIZE_1_16 = 0.32  # metres, target_1_16
DEPTH_SCALE = 8000.0  # depth PNG units per metre (as Symphonies reads it)
CLASS_NAMES = ("empty", "ceiling", "floor", "wall", "window", "chair", "bed", "sofa", "table", "tvs",
               "furniture", "objects")
CLASS_WEIGHTS = (0.05,) + (1.0,) * 11  # cross-entropy weights of the 12 classes (empty down-weighted)
SCENE_SIZE = (4.8, 4.8, 2.88)  # metres along world (x, y, z); z is up
DEPTHBIN_SHAPE = (240, 144, 240)  # stored axes (world x, world z, world y)
DEPTHBIN_VOXEL_SIZE = 0.02  # metres
# SSCNet's class ids 0..36 -> the 12 classes of CLASS_NAMES (MonoScene's seg_class_map); 255 stays 255.
SEG_CLASS_MAP = (0, 1, 2, 3, 4, 11, 5, 6, 7, 8, 8, 10, 10, 10, 11, 11, 9, 8, 11, 11, 11, 11, 11, 11, 11, 11,
                 11, 10, 10, 11, 8, 10, 11, 9, 11, 11, 11)
_HEADER_FLOATS = 3 + 16  # voxel origin, camera pose
_EMPTY_FRACTION = 0.95  # downsampling: a block more empty/unknown than this is empty/unknown

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


def _list_names(folder: str, suffix: str, what: str) -> list:
    """The names (without suffix) of folder's files ending with `suffix`, sorted; DataFileError
    naming the folder when it cannot be listed."""
    try:
        return sorted(name[:-len(suffix)] for name in os.listdir(folder) if name.endswith(suffix))
    except OSError as error:
        raise DataFileError(f"{folder}: cannot list the {what}: {error}") from None


def list_samples(label_root: str, split: str) -> list:
    """The sample names of a split (the .pkl files of label_root/NYU<split>), sorted."""
    return _list_names(os.path.join(label_root, f"NYU{split}"), ".pkl", "NYU labels")


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
        image=image_tensor(rgb),
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
    axis order (x, height, y), e.g. (60, 36, 60) and (15, 9, 15); depth as SSCNet's PNG."""
    paths = sample_paths(data_root, label_root, split, name)
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(paths["image"], quality=95)
    if depth_m is not None:
        write_depth_png(paths["depth"], depth_m)
    content = {"cam_pose": np.asarray(cam_pose, dtype=np.float32), "voxel_origin": np.asarray(voxel_origin, np.float32),
               "name": name, "target_1_4": np.asarray(target_1_4, dtype=np.uint8)}
    if target_1_16 is not None:
        content["target_1_16"] = np.asarray(target_1_16, dtype=np.uint8)
    with open(paths["label"], "wb") as file:
        pickle.dump(content, file)


# ------------------------------------------------------------------------------------ depth PNG


def write_depth_png(path: str, depth_m: np.ndarray) -> None:
    """(H, W) metres as SSCNet's depth PNG: millimetres rotated left by 3 bits in a uint16, which is
    mm * 8 (uint16 / 8000 = metres, as Symphonies reads it) for depths below 8.192 m, where this
    writer clips. 0 (and NaN, inf) = unknown."""
    depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    millimetres = np.clip(np.round(depth * 1000.0), 0, 8191).astype(np.uint16)
    Image.fromarray(millimetres << 3).save(path)


def read_depth_png(path: str) -> np.ndarray:
    """(H, W) float32 metres of a uint16 depth PNG as Symphonies reads it (value / 8000; 0 unknown):
    exact for SSCNet's files below 8.192 m and for maps written as metres * 8000."""
    try:
        with Image.open(path) as file:
            units = np.array(file)
    except OSError as error:
        raise DataFileError(f"{path}: cannot read the depth PNG: {error}") from None
    if units.ndim != 2:
        raise DataFileError(f"{path}: expected a single-channel 16-bit depth PNG, got shape {units.shape}")
    return units.astype(np.float32) / np.float32(DEPTH_SCALE)


# ------------------------------------------------------------------------------------ depthbin


def depthbin_path(data_root: str, split: str, name: str) -> str:
    """data_root/NYU<split>/<name>.bin."""
    return os.path.join(data_root, f"NYU{split}", f"{name}.bin")


def list_depthbins(data_root: str, split: str) -> list:
    """The sample names of data_root/NYU<split>/*.bin, sorted."""
    return _list_names(os.path.join(data_root, f"NYU{split}"), ".bin", "SSCNet depthbin files")


def encode_rle(labels: np.ndarray) -> np.ndarray:
    """uint32 (2 R,) (value, count) pairs of the labels' runs in C order."""
    flat = np.ascontiguousarray(labels, dtype=np.uint8).ravel()
    if flat.size == 0:
        return np.zeros(0, dtype=np.uint32)
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    counts = np.diff(np.append(starts, flat.size))
    return np.stack([flat[starts].astype(np.uint32), counts.astype(np.uint32)], axis=1).ravel()


def decode_rle(rle: np.ndarray, shape: Tuple[int, ...] = DEPTHBIN_SHAPE, source: str = "") -> np.ndarray:
    """uint8 labels of `shape` (C order) from (value, count) pairs; DataFileError naming `source`
    when the runs do not fill the shape exactly or a value is above 255."""
    rle = np.asarray(rle, dtype=np.uint32)
    if rle.size % 2:
        raise DataFileError(f"{source}: the run-length code has an odd number ({rle.size}) of uint32 values")
    values, counts = rle[0::2], rle[1::2].astype(np.int64)
    total = int(np.prod(shape))
    if counts.sum() != total:
        raise DataFileError(f"{source}: the runs hold {int(counts.sum())} voxels, expected {total} = {shape}")
    if values.size and values.max() > 255:
        raise DataFileError(f"{source}: label value {int(values.max())} is above 255")
    return np.repeat(values.astype(np.uint8), counts).reshape(shape)


def read_depthbin(path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(voxel_origin (3,) float32 world metres, camera_pose (4, 4) float32 camera-to-world,
    labels (240, 144, 240) uint8) of an SSCNet .bin, exactly as stored: SSCNet's class ids 0..36
    and 255, stored axes (world x, world z = up, world y) (module doc). DataFileError naming the file."""
    try:
        raw = np.fromfile(path, dtype="<u4")
    except OSError as error:
        raise DataFileError(f"{path}: cannot read the SSCNet depthbin volume: {error}") from None
    if raw.size < _HEADER_FLOATS:
        raise DataFileError(f"{path}: {raw.size * 4} bytes, too short for an SSCNet depthbin header (76 bytes)")
    header = raw[:_HEADER_FLOATS].view("<f4").astype(np.float32)
    labels = decode_rle(raw[_HEADER_FLOATS:], DEPTHBIN_SHAPE, path)
    return header[:3].copy(), header[3:].reshape(4, 4).copy(), labels


def write_depthbin(path: str, voxel_origin: np.ndarray, camera_pose: np.ndarray, labels: np.ndarray) -> None:
    """Write an SSCNet .bin (the inverse of read_depthbin): labels (240, 144, 240) uint8 in the
    stored axis order, run-length coded; through a temporary file and a rename."""
    labels = np.asarray(labels)
    if labels.shape != DEPTHBIN_SHAPE:
        raise ValueError(f"write_depthbin: labels must be {DEPTHBIN_SHAPE} (world x, z, y), got {labels.shape}")
    header = np.concatenate([np.asarray(voxel_origin, np.float32).reshape(3),
                             np.asarray(camera_pose, np.float32).reshape(16)]).astype("<f4")
    with atomic_path(path, ".bin") as tmp_path:
        with open(tmp_path, "wb") as file:
            file.write(header.tobytes())
            file.write(encode_rle(labels).astype("<u4").tobytes())


def map_to_12_classes(labels: np.ndarray, source: str = "") -> np.ndarray:
    """uint8 labels of SSCNet's ids 0..36 (and 255) mapped by SEG_CLASS_MAP to the 12 classes;
    DataFileError naming `source` for any other id."""
    labels = np.asarray(labels, dtype=np.uint8)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    bad = [int(v) for v in present if len(SEG_CLASS_MAP) <= v < 255]
    if bad:
        raise DataFileError(f"{source}: label ids {bad[:5]} are not SSCNet classes (0..36 or 255)")
    table = np.full(256, 255, dtype=np.uint8)
    table[:len(SEG_CLASS_MAP)] = SEG_CLASS_MAP
    return table[labels]


def _block_view(labels: np.ndarray, factor: int) -> np.ndarray:
    """(n_blocks, factor^3) of (X, Y, Z) labels, blocks in C order of the (X/f, Y/f, Z/f) grid."""
    if any(n % factor for n in labels.shape):
        raise ValueError(f"downsample_labels: shape {labels.shape} is not divisible by {factor}")
    a, b, c = (n // factor for n in labels.shape)
    blocks = labels.reshape(a, factor, b, factor, c, factor).transpose(0, 2, 4, 1, 3, 5)
    return blocks.reshape(a * b * c, factor ** 3)


def downsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """(X, Y, Z) uint8 labels (0 empty, 255 unknown) to (X/f, Y/f, Z/f) by MonoScene's rule (module
    doc); each axis must be divisible by `factor`. Vectorised: blocks of one value keep it (what the
    rule gives them), the others are counted; `downsample_labels_reference` is the plain loop."""
    labels = np.asarray(labels, dtype=np.uint8)
    if any(n % factor for n in labels.shape):
        raise ValueError(f"downsample_labels: shape {labels.shape} is not divisible by {factor}")
    f = factor
    views = [labels[i::f, j::f, k::f] for i in range(f) for j in range(f) for k in range(f)]  # one voxel per block
    result = views[0].copy()
    uniform = np.ones(result.shape, dtype=bool)
    for view in views[1:]:
        uniform &= view == views[0]
    mixed = np.nonzero(~uniform)
    if mixed[0].size:
        result[mixed] = _downsample_blocks(np.stack([view[mixed] for view in views], axis=1), f)
    return result


def _downsample_blocks(blocks: np.ndarray, factor: int) -> np.ndarray:
    """MonoScene's rule on (n, f^3) uint8 blocks: (n,) uint8."""
    values = np.flatnonzero(np.bincount(blocks.ravel(), minlength=256))  # the labels present, sorted
    lookup = np.zeros(256, dtype=np.int64)
    lookup[values] = np.arange(len(values))
    rows = np.arange(len(blocks))[:, None] * len(values)
    counts = np.bincount((rows + lookup[blocks]).ravel(), minlength=len(blocks) * len(values))
    counts = counts.reshape(len(blocks), len(values))
    zero = counts[:, values == 0].sum(axis=1)
    unknown = counts[:, values == 255].sum(axis=1)
    is_empty = zero + unknown > _EMPTY_FRACTION * factor ** 3
    result = np.where(zero > unknown, 0, 255).astype(np.uint8)
    classes = (values != 0) & (values != 255)
    if classes.any():
        majority = values[classes][np.argmax(counts[:, classes], axis=1)]  # first maximum: the smallest id
        result = np.where(is_empty, result, majority).astype(np.uint8)
    return result


def downsample_labels_reference(labels: np.ndarray, factor: int) -> np.ndarray:
    """downsample_labels block by block (the rule as MonoScene's loop states it); for tests."""
    labels = np.asarray(labels, dtype=np.uint8)
    if factor == 1:
        return labels.copy()
    out_shape = tuple(n // factor for n in labels.shape)
    result = np.zeros(int(np.prod(out_shape)), dtype=np.uint8)
    for index, block in enumerate(_block_view(labels, factor)):
        zero, unknown = int((block == 0).sum()), int((block == 255).sum())
        if zero + unknown > _EMPTY_FRACTION * factor ** 3:
            result[index] = 0 if zero > unknown else 255
        else:
            result[index] = np.argmax(np.bincount(block[(block > 0) & (block < 255)]))
    return result.reshape(out_shape)


def depthbin_to_pkl_content(bin_path: str) -> Dict[str, Any]:
    """MonoScene's pre-processing of one .bin: {"cam_pose" (4, 4) float32, "voxel_origin" (3,)
    float32, "name" (the file name without .bin), "target_1_4" uint8 (60, 36, 60), "target_1_16"
    uint8 (15, 9, 15)}, the targets in the 12 classes and the stored axis order (x, height, y)."""
    origin, pose, labels = read_depthbin(bin_path)
    labels = map_to_12_classes(labels, bin_path)
    return {
        "cam_pose": pose,
        "voxel_origin": origin,
        "name": os.path.basename(bin_path)[:-len(".bin")],
        "target_1_4": downsample_labels(labels, 4),
        "target_1_16": downsample_labels(labels, 16),
    }


def write_pkl(path: str, content: Dict[str, Any]) -> None:
    """Pickle `content` (numpy arrays and basic values) to `path` through a temporary file and a rename."""
    with atomic_path(path, ".pkl") as tmp_path:
        with open(tmp_path, "wb") as file:
            pickle.dump(content, file)  # the default protocol, as MonoScene
