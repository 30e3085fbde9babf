"""SemanticKITTI and SSCBench-KITTI-360 semantic scene completion, as MonoScene, VoxFormer and
Symphonies lay them out (the labels pre-processed by MonoScene's / VoxFormer's scripts).

SemanticKITTI (`SEMANTIC_KITTI`), three roots:

    data_root/dataset/sequences/<seq>/image_2/<frame>.png    left colour camera (~1241 x 376)
    data_root/dataset/sequences/<seq>/calib.txt              "key: 12 numbers" lines; P2 and Tr used
    data_root/dataset/sequences/<seq>/voxels/<frame>.bin     bit-packed input occupancy, every 5th frame
        (.label / .invalid / .occluded beside it are the raw labels; the readers do not need them)
    label_root/<seq>/<frame>_1_1.npy   (256, 256, 32) labels, 20 classes, 255 ignored (uint8; MonoScene's
                                       script saves float32, which is accepted when integral)
    label_root/<seq>/<frame>_1_8.npy   (32, 32, 4) labels, MonoScene's 8x downsampling (`downsample_labels`)
    depth_root/sequences/<seq>/<frame>.npy   float32 (H, W) metres at image size (VoxFormer's
                                             MobileStereoNet depth)

Splits: train 00-07, 09, 10; val 08; test 11-21 (no labels: test frames get all-255 volumes).
Frame ids are the 6-digit stems of voxels/*.bin (the labelled frames; `list_frames`).

SSCBench-KITTI-360 (`KITTI_360`): data_root/data_2d_raw/<seq>/image_00/data_rect/<frame>.png
(1408 x 376) and data_root/data_2d_raw/<seq>/voxels/<frame>.bin, labels as above with 19 classes,
depth_root/<seq>/<frame>.npy (no "sequences" folder); one fixed calibration for every sequence
(the perspective P of image_00 and calib_cam_to_velo, stored below); splits train 0000, 0002-0005,
0007, 0010; val 0006; test 0009 (labelled). Sequences are 2013_05_28_drive_<NNNN>_sync.

Geometry (both): the grid lives in the LiDAR (velodyne) frame, x forward, y left, z up; voxel
(0, 0, 0) has its min corner at VOXEL_ORIGIN = (0, -25.6, -2) m; 0.2 m voxels, 256 x 256 x 32
= 51.2 x 51.2 x 6.4 m (the grid is symmetric about y = 0). The camera: K = P2[:, :3] (integer
pixel centres; records add half a pixel) and world-to-camera = Tr (velodyne to rectified camera 0),
so camera_to_world = inv(Tr), as Symphonies / MonoScene / VoxFormer project. That ignores the 6 cm
offset of camera 2 from camera 0 that P2's last column holds (K t); `camera_from_calibration(...,
exact=True)` includes it.

Image crop: Symphonies keeps the top-left 370 x 1220 pixels of SemanticKITTI images (KITTI-360:
376 x 1408, the full image) and uses that size for the field-of-view test; the top-left crop
leaves K unchanged. `crop_window` clips the crop to smaller images.

A shrunken grid (tiny copies, tests) keeps the 51.2 x 51.2 x 6.4 m scene with larger voxels
(`voxel_size_for`): e.g. (64, 64, 8) voxels of 0.8 m.

Writing: `write_calibration` writes a calib.txt; recon_trainer/data/ssc/synthetic_streets.py writes
tiny synthetic copies of the whole layout.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from recon_trainer.data.depth.image_files import read_rgb
from recon_trainer.data.depth.kitti import read_calibration as read_key_values
from recon_trainer.data.records import IGNORE_LABEL, ViewRecord, VoxelRecord, image_tensor, intrinsics_centre_to_corner
from recon_trainer.errors import DataFileError

VOXEL_ORIGIN = (0.0, -25.6, -2.0)  # metres, LiDAR frame: min corner of voxel (0, 0, 0)
VOXEL_SIZE = 0.2  # metres
SCENE_SIZE = (51.2, 51.2, 6.4)  # metres
GRID_SHAPE = (256, 256, 32)  # voxels (x forward, y left, z up)
COARSE_FACTOR = 8  # _1_8 labels
CROP_HW = (370, 1220)  # SemanticKITTI: top-left crop Symphonies keeps
KITTI360_IMAGE_HW = (376, 1408)
FREQUENCY_EPSILON = 1e-6  # class weight = 1 / log(frequency + 1e-6)

CLASS_NAMES = ("empty", "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
               "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation",
               "trunk", "terrain", "pole", "traffic-sign")
# voxel counts per class over the training set (MonoScene / Symphonies)
CLASS_FREQUENCIES = (5.41773033e09, 1.57835390e07, 1.25136000e05, 1.18809000e05, 6.46799000e05, 8.21951000e05,
                     2.62978000e05, 2.83696000e05, 2.04750000e05, 6.16887030e07, 4.50296100e06, 4.48836500e07,
                     2.26992300e06, 5.68402180e07, 1.57196520e07, 1.58442623e08, 2.06162300e06, 3.69705220e07,
                     1.15198800e06, 3.34146000e05)
CLASS_WEIGHTS = tuple(1.0 / math.log(f + FREQUENCY_EPSILON) for f in CLASS_FREQUENCIES)

KITTI360_CLASS_NAMES = ("empty", "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "road",
                        "parking", "sidewalk", "other-ground", "building", "fence", "vegetation", "terrain", "pole",
                        "traffic-sign", "other-structure", "other-object")
KITTI360_CLASS_FREQUENCIES = (2264087502, 20098728, 104972, 96297, 1149426, 4051087, 125103, 105540713, 16292249,
                              45297267, 14454132, 110397082, 6766219, 295883213, 50037503, 1561069, 406330,
                              30516166, 1950115)
KITTI360_CLASS_WEIGHTS = tuple(1.0 / math.log(f + FREQUENCY_EPSILON) for f in KITTI360_CLASS_FREQUENCIES)
# SSCBench-KITTI-360's one calibration: image_00's rectified perspective P (3 x 4) and camera-to-velodyne (3 x 4)
KITTI360_P = ((552.554261, 0.0, 682.049453, 0.0), (0.0, 552.554261, 238.769549, 0.0), (0.0, 0.0, 1.0, 0.0))
KITTI360_CAM_TO_VELO = ((0.04307104361, -0.08829286498, 0.995162929, 0.8043914418),
                        (-0.999004371, 0.007784614041, 0.04392796942, 0.2993489574),
                        (-0.01162548558, -0.9960641394, -0.08786966659, -0.1770225824))
KITTI360_DRIVE = "2013_05_28_drive_{:04d}_sync"


@dataclasses.dataclass(frozen=True)
class SSCLayout:
    """One dataset's folder layout and constants (module doc). Paths are templates in
    {sequence} and {frame}: image, voxels and calibration under data_root ("" calibration: the
    fixed `calibration`), depth under depth_root, labels under label_root."""

    name: str
    class_names: Tuple[str, ...]
    class_frequencies: Tuple[float, ...]
    splits: Mapping[str, Tuple[str, ...]]
    unlabelled_splits: Tuple[str, ...]
    crop_hw: Tuple[int, int]
    image: str
    voxels: str
    calibration_file: str
    depth: str
    labels: str = "{sequence}/{frame}_1_1.npy"
    coarse_labels: str = "{sequence}/{frame}_1_8.npy"
    calibration: Optional[Tuple[Tuple[float, ...], ...]] = None  # fixed (P (3x4) rows..., Tr (3x4) rows...)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_weights(self) -> torch.Tensor:
        """(C,) float32 1 / log(frequency + 1e-6)."""
        return (1.0 / torch.log(torch.tensor(self.class_frequencies, dtype=torch.float64) + FREQUENCY_EPSILON)).float()


SEMANTIC_KITTI = SSCLayout(
    name="SemanticKITTI",
    class_names=CLASS_NAMES,
    class_frequencies=CLASS_FREQUENCIES,
    splits={"train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"), "val": ("08",),
            "test": tuple(f"{s:02d}" for s in range(11, 22))},
    unlabelled_splits=("test",),
    crop_hw=CROP_HW,
    image="dataset/sequences/{sequence}/image_2/{frame}.png",
    voxels="dataset/sequences/{sequence}/voxels/{frame}.bin",
    calibration_file="dataset/sequences/{sequence}/calib.txt",
    depth="sequences/{sequence}/{frame}.npy",
)


def _kitti360_calibration() -> Tuple[Tuple[float, ...], ...]:
    cam_to_velo = np.vstack([np.array(KITTI360_CAM_TO_VELO), [0.0, 0.0, 0.0, 1.0]])
    velo_to_cam = np.linalg.inv(cam_to_velo)[:3]
    return tuple(tuple(row) for row in KITTI360_P) + tuple(tuple(float(v) for v in row) for row in velo_to_cam)


KITTI_360 = SSCLayout(
    name="KITTI360",
    class_names=KITTI360_CLASS_NAMES,
    class_frequencies=KITTI360_CLASS_FREQUENCIES,
    splits={"train": tuple(KITTI360_DRIVE.format(i) for i in (4, 0, 10, 2, 3, 5, 7)),
            "val": (KITTI360_DRIVE.format(6),), "test": (KITTI360_DRIVE.format(9),)},
    unlabelled_splits=(),
    crop_hw=KITTI360_IMAGE_HW,
    image="data_2d_raw/{sequence}/image_00/data_rect/{frame}.png",
    voxels="data_2d_raw/{sequence}/voxels/{frame}.bin",
    calibration_file="",
    depth="{sequence}/{frame}.npy",
    calibration=_kitti360_calibration(),
)
LAYOUTS = {layout.name: layout for layout in (SEMANTIC_KITTI, KITTI_360)}


# ------------------------------------------------------------------------------------ paths and listing


def frame_paths(layout: SSCLayout, data_root: str, label_root: str, depth_root: str, sequence: str, frame: str
                ) -> Dict[str, str]:
    """The files of one frame: image, voxels, calibration ("" when fixed), labels (_1_1), coarse
    labels (_1_8) and depth ("" without depth_root)."""
    keys = {"sequence": sequence, "frame": frame}
    return {
        "image": os.path.join(data_root, layout.image.format(**keys)),
        "voxels": os.path.join(data_root, layout.voxels.format(**keys)),
        "calibration": os.path.join(data_root, layout.calibration_file.format(**keys)) if layout.calibration_file
        else "",
        "labels": os.path.join(label_root, layout.labels.format(**keys)),
        "coarse_labels": os.path.join(label_root, layout.coarse_labels.format(**keys)),
        "depth": os.path.join(depth_root, layout.depth.format(**keys)) if depth_root else "",
    }


def list_frames(layout: SSCLayout, data_root: str, sequence: str, source: str = "voxels") -> List[str]:
    """Sorted frame ids of a sequence: the stems of its voxels/*.bin (source "voxels": the frames
    with voxel data, as the original lists them) or of its images (source "images");
    DataFileError naming the folder when it cannot be listed."""
    template = layout.voxels if source == "voxels" else layout.image
    folder = os.path.dirname(os.path.join(data_root, template.format(sequence=sequence, frame="x")))
    extension = os.path.splitext(template)[1]
    try:
        names = os.listdir(folder)
    except OSError as error:
        raise DataFileError(f"{folder}: cannot list the {layout.name} {source} of sequence {sequence}: "
                            f"{error.strerror or error}") from None
    return sorted(name[: -len(extension)] for name in names if name.endswith(extension))


def crop_window(image_hw: Tuple[int, int], crop_hw: Tuple[int, int]) -> Tuple[int, int]:
    """(H, W) kept by the top-left crop: crop_hw clipped to the image (a smaller image stays whole)."""
    return min(int(image_hw[0]), int(crop_hw[0])), min(int(image_hw[1]), int(crop_hw[1]))


def voxel_size_for(grid_shape: Sequence[int]) -> float:
    """Metres per voxel of a grid spanning SCENE_SIZE: 0.2 for (256, 256, 32); ValueError when the
    grid's voxels would not be cubes."""
    sizes = [extent / int(n) for extent, n in zip(SCENE_SIZE, grid_shape)]
    if len(sizes) != 3 or max(sizes) - min(sizes) > 1e-9 * max(sizes):
        raise ValueError(f"grid_shape {tuple(grid_shape)} does not divide the {SCENE_SIZE} m scene into cubes "
                         f"(expected X = Y = 8 Z, e.g. (256, 256, 32) or (64, 64, 8))")
    return float(sizes[0])


# ------------------------------------------------------------------------------------ calibration


def read_calibration(path: str) -> Dict[str, np.ndarray]:
    """P2 (3, 4) and Tr (4, 4) float64 of a SemanticKITTI calib.txt ("key: 12 numbers" lines;
    P0..P3, Tr); DataFileError naming the file and key when one is missing or malformed."""
    try:
        entries = read_key_values(path)
    except OSError as error:
        raise DataFileError(f"{path}: cannot read the calibration: {error.strerror or error}") from None
    matrices = {}
    for key in ("P2", "Tr"):
        if key not in entries:
            raise DataFileError(f"{path}: no {key} line (expected 'P2: ...' and 'Tr: ...', 12 numbers each)")
        try:
            values = np.array([float(v) for v in entries[key].split()], dtype=np.float64)
        except ValueError:
            values = np.zeros(0)
        if values.size != 12 or not np.isfinite(values).all():
            raise DataFileError(f"{path}: {key}: expected 12 finite numbers, got {entries[key].strip()!r}")
        matrices[key] = values.reshape(3, 4)
    tr = np.eye(4)
    tr[:3] = matrices["Tr"]
    return {"P2": matrices["P2"], "Tr": tr}


def layout_calibration(layout: SSCLayout, path: str) -> Dict[str, np.ndarray]:
    """P2 (3, 4) and Tr (4, 4): read from `path` (SemanticKITTI), or the layout's fixed one."""
    if layout.calibration is None:
        return read_calibration(path)
    rows = np.array(layout.calibration, dtype=np.float64)
    tr = np.eye(4)
    tr[:3] = rows[3:]
    return {"P2": rows[:3], "Tr": tr}


def camera_from_calibration(p2: np.ndarray, tr: np.ndarray, exact: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(K (3, 3) with integer pixel centres, world_to_camera (4, 4)) float64 of camera 2: K = P2's
    left 3x3 and world_to_camera = Tr (the originals' projection); with `exact`, camera 2's offset
    from camera 0, t = K^-1 P2[:, 3], is applied after Tr (P2 = K [I | t])."""
    intrinsics = np.array(p2[:, :3], dtype=np.float64)
    world_to_camera = np.array(tr, dtype=np.float64)
    if exact:
        shift = np.eye(4)
        shift[:3, 3] = np.linalg.solve(intrinsics, np.asarray(p2[:, 3], dtype=np.float64))
        world_to_camera = shift @ world_to_camera
    return intrinsics, world_to_camera


# ------------------------------------------------------------------------------------ labels and depth


def read_labels(path: str, grid_shape: Sequence[int], num_classes: int) -> np.ndarray:
    """(X, Y, Z) uint8 labels of a _1_1 / _1_8 .npy (uint8, or MonoScene's float32 when integral);
    DataFileError naming the file when it is unreadable, of another shape, or holds values other
    than 0..num_classes-1 and 255."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataFileError(f"{path}: cannot read the label volume: {error}") from None
    if tuple(array.shape) != tuple(int(n) for n in grid_shape):
        raise DataFileError(f"{path}: labels have shape {tuple(array.shape)}, expected {tuple(grid_shape)}")
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
            raise DataFileError(f"{path}: float labels must be whole numbers (class ids and 255)")
    elif array.dtype.kind not in "iu":
        raise DataFileError(f"{path}: labels of dtype {array.dtype}, expected uint8 (or integral float32)")
    bad = (array != IGNORE_LABEL) & ((array < 0) | (array >= num_classes))
    if bad.any():
        raise DataFileError(f"{path}: labels hold {np.unique(array[bad])[:5].tolist()}, expected 0..{num_classes - 1} "
                            f"or {IGNORE_LABEL}")
    return array.astype(np.uint8)


def read_depth(path: str) -> np.ndarray:
    """(H, W) float32 metres of a depth .npy; DataFileError naming the file otherwise."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataFileError(f"{path}: cannot read the depth map: {error}") from None
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise DataFileError(f"{path}: depth of shape {array.shape} and dtype {array.dtype}, expected (H, W) float")
    return array.astype(np.float32)


def unpack_voxel_bits(packed: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """(X, Y, Z) bool of a SemanticKITTI bit-packed volume (.bin / .invalid / .occluded: 8 voxels
    per byte, most significant bit first, x-major order)."""
    count = int(np.prod(grid_shape))
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8))
    if bits.size < count:
        raise ValueError(f"{packed.size} bytes hold {bits.size} voxels, expected {count}")
    return bits[:count].reshape(tuple(grid_shape)).astype(bool)


def pack_voxel_bits(volume: np.ndarray) -> np.ndarray:
    """The inverse of `unpack_voxel_bits`: (X, Y, Z) bool to uint8 bytes."""
    return np.packbits(np.asarray(volume, dtype=bool).reshape(-1))


def read_voxel_bits(path: str, grid_shape: Sequence[int] = GRID_SHAPE) -> np.ndarray:
    """(X, Y, Z) bool of a .bin / .invalid / .occluded file; DataFileError naming it when short."""
    try:
        return unpack_voxel_bits(np.fromfile(path, dtype=np.uint8), grid_shape)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the packed voxels: {error}") from None


def downsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """MonoScene's label downsampling (its _1_8 files): each factor^3 block becomes 0 or 255 when
    more than 95 % of it is empty or unknown (0 if empty voxels outnumber unknown ones, else 255),
    otherwise its most frequent class among 1..254 (ties: the smallest id). (X, Y, Z) -> (X/f, Y/f, Z/f)."""
    if factor == 1:
        return np.asarray(labels, dtype=np.uint8).copy()
    x, y, z = (int(n) // factor for n in labels.shape)
    blocks = np.asarray(labels, dtype=np.int64)[: x * factor, : y * factor, : z * factor]
    blocks = blocks.reshape(x, factor, y, factor, z, factor).transpose(0, 2, 4, 1, 3, 5).reshape(-1, factor ** 3)
    offsets = np.arange(len(blocks))[:, None] * 256
    counts = np.bincount((blocks + offsets).reshape(-1), minlength=len(blocks) * 256).reshape(-1, 256)
    empty, unknown = counts[:, 0], counts[:, IGNORE_LABEL]
    classes = counts.copy()
    classes[:, 0] = classes[:, IGNORE_LABEL] = -1
    out = np.where(empty + unknown > 0.95 * factor ** 3, np.where(empty > unknown, 0, IGNORE_LABEL),
                   classes.argmax(1))
    return out.reshape(x, y, z).astype(np.uint8)


# ------------------------------------------------------------------------------------ one frame


def read_frame(
    layout: SSCLayout,
    data_root: str,
    label_root: str,
    depth_root: str,
    sequence: str,
    frame: str,
    calibration: Mapping[str, np.ndarray],
    *,
    crop_hw: Optional[Tuple[int, int]] = None,
    grid_shape: Sequence[int] = GRID_SHAPE,
    labels: str = "required",
    with_coarse: bool = True,
    exact_camera: bool = False,
    dataset: str = "",
) -> ViewRecord:
    """One frame as a ViewRecord: image (3, H, W) and depth (H, W) metres (None without depth_root)
    cropped top-left to crop_hw (default: the layout's; clipped to the image), K (records'
    convention) and camera_to_world (world = LiDAR frame) from `calibration` ({"P2", "Tr"}),
    sequence "<seq>/<frame>", frame = int(frame); extras["voxels"]: VoxelRecord of the _1_1
    labels (grid_shape) with extras class_weights (C,) float32 and, with with_coarse, target_1_8
    (a VoxelRecord of the _1_8 labels, 8x larger voxels, same origin).

    labels: "required" (a missing file is a DataFileError), "optional" (a missing file gives an
    all-255 volume) or "none" (all 255: unlabelled test frames).
    """
    paths = frame_paths(layout, data_root, label_root, depth_root, sequence, frame)
    rgb = read_rgb(paths["image"])
    h, w = crop_window(rgb.shape[:2], crop_hw or layout.crop_hw)
    depth = None
    if paths["depth"]:
        full = read_depth(paths["depth"])
        if full.shape[0] < h or full.shape[1] < w:
            raise DataFileError(f"{paths['depth']}: depth is {full.shape}, smaller than the {(h, w)} crop of "
                                f"its image {paths['image']}")
        depth = torch.from_numpy(np.ascontiguousarray(full[:h, :w]))
    voxel_size = voxel_size_for(grid_shape)
    coarse_shape = tuple(int(n) // COARSE_FACTOR for n in grid_shape)
    fine = _labels_or_unknown(paths["labels"], labels, grid_shape, layout.num_classes)
    origin = torch.tensor(VOXEL_ORIGIN, dtype=torch.float32)
    extras: Dict[str, Any] = {"class_weights": layout.class_weights()}
    if with_coarse:
        coarse = _labels_or_unknown(paths["coarse_labels"], labels, coarse_shape, layout.num_classes)
        extras["target_1_8"] = VoxelRecord(torch.from_numpy(coarse), voxel_size * COARSE_FACTOR, origin.clone())
    intrinsics, world_to_camera = camera_from_calibration(calibration["P2"], calibration["Tr"], exact_camera)
    return ViewRecord(
        image=image_tensor(rgb[:h, :w]),
        depth=depth,
        depth_kind="metric",
        intrinsics=intrinsics_centre_to_corner(torch.from_numpy(intrinsics)).float(),
        camera_to_world=torch.from_numpy(np.linalg.inv(world_to_camera)).float(),
        sequence=f"{sequence}/{frame}",
        frame=int(frame) if frame.isdigit() else 0,
        dataset=dataset,
        label_type="stereo" if depth is not None else "",
        path=paths["image"],
        extras={"voxels": VoxelRecord(torch.from_numpy(fine), voxel_size, origin, extras)},
    )


def _labels_or_unknown(path: str, mode: str, grid_shape: Sequence[int], num_classes: int) -> np.ndarray:
    if mode == "none" or (mode == "optional" and not os.path.exists(path)):
        return np.full(tuple(int(n) for n in grid_shape), IGNORE_LABEL, dtype=np.uint8)
    if mode not in ("required", "optional"):
        raise ValueError(f"labels={mode!r}: expected required, optional or none")
    return read_labels(path, grid_shape, num_classes)


def write_calibration(path: str, p2: np.ndarray, tr: np.ndarray) -> None:
    """Write a SemanticKITTI calib.txt: P0..P3 (P0 = K [I | 0], P1 and P3 with the stereo
    baselines of the real rig, P2 as given) and Tr (3 x 4 rows of the (4, 4) or (3, 4) matrix)."""
    p2 = np.asarray(p2, dtype=np.float64)
    k = p2[:, :3]
    lines = []
    for name, offset in (("P0", 0.0), ("P1", -0.54), ("P2", None), ("P3", -0.47)):
        matrix = p2 if offset is None else k @ np.hstack([np.eye(3), [[offset], [0.0], [0.0]]])
        lines.append(f"{name}: " + " ".join(f"{v:.12e}" for v in matrix.reshape(-1)))
    lines.append("Tr: " + " ".join(f"{v:.12e}" for v in np.asarray(tr, dtype=np.float64)[:3].reshape(-1)))
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
