"""NeRF's Blender ("nerf_synthetic") dataset layout: reading, writing, and its dataset map provider.

Layout of `base_dir`, as in the original NeRF release:

    transforms_train.json, transforms_val.json, transforms_test.json
        {"camera_angle_x": <horizontal field of view, radians>,
         "frames": [{"file_path": "./train/r_0", "rotation": <float, unused>,
                     "transform_matrix": <4x4 camera-to-world, OpenGL axes: x right, y up, looking down -z>}, ...]}
    train/r_0.png, ...   RGBA images (straight alpha) at file_path + ".png"

Optional extra, written by this project's renderer: `<file_path>_depth.npy`, a float32 (H, W) array of
view-space depth (pytorch3d Z, scene units, 0 = no surface) beside each image.

Images: alpha becomes `fg_probability`; `image_rgb` is the colour composited over `bg_color`
(default black, i.e. premultiplied alpha, matching a model that renders on a black background).
The principal point is the image centre, and fx = fy = 0.5 * W / tan(0.5 * camera_angle_x) pixels.

Each frame is read as a ViewRecord (`read_blender_view`: the composited image, the alpha as a soft
mask_fg, depth, K in pixels, the OpenCV camera-to-world) and the provider's FrameData is made from
it (frame_data.view_frame_data). In mixing expressions, `Blender(root=..., split=...)` gives the records of
one split and `BlenderSequences(...)` SequenceRecords of N views of the scene.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.cameras import PerspectiveCameras, opengl_c2w_from_cameras
from recon_trainer.data.dataset_map_provider import DatasetMapProviderBase
from recon_trainer.data.datasets import SingleSceneDataset, with_known_source_views
from recon_trainer.data.file_check import DataFile, FileItems
from recon_trainer.data.frame_data import FrameData, view_frame_data
from recon_trainer.data.mixing.base import ListedDataset, MixableDataset
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceDataset, SequenceEntry
from recon_trainer.data.splits import DatasetMap
from recon_trainer.errors import DataFileError

SPLITS = ("train", "val", "test")
# Frame type of each split: train views are known, val and test views are held out.
SPLIT_FRAME_TYPES = {"train": "train_known", "val": "test_unseen", "test": "test_unseen"}
DEPTH_SUFFIX = "_depth.npy"
# Right-multiplying an OpenGL camera-to-world (camera x right, y up, z back) gives OpenCV's (y down, z forward).
OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


class BlenderFormatError(DataFileError):
    """A Blender-layout dataset file is missing or malformed; the message names the file."""


def transforms_path(base_dir: str, split: str) -> str:
    """The path of `transforms_<split>.json` in base_dir."""
    return os.path.join(base_dir, f"transforms_{split}.json")


class BlenderFrame(NamedTuple):
    """A frame of transforms_<split>.json before its image is read."""

    index: int  # position in the JSON's "frames" list
    frame_number: int  # unique within the sequence
    c2w: torch.Tensor  # (4, 4) float64 camera-to-world, OpenGL axes
    image_path: str


@dataclasses.dataclass
class BlenderSplit(FileItems[BlenderFrame]):
    """One split listed before loading (the data check's view of it): each item's files are its
    image and, when there is one, its depth .npy."""

    split: str = ""
    transforms: str = ""  # path of transforms_<split>.json
    camera_angle_x: float = 0.0  # horizontal field of view, radians


def read_blender_dataset_map(
    base_dir: str,
    *,
    sequence_name: str,
    downscale_factor: int = 1,
    bg_color: Sequence[float] = (0.0, 0.0, 0.0),
    n_known_frames_for_test: Optional[int] = None,
    image_size: Optional[int] = None,
) -> DatasetMap:
    """Train, val and test SingleSceneDatasets of a Blender-layout folder (list, then load)."""
    return load_blender_dataset_map(
        list_blender_dataset(base_dir),
        sequence_name=sequence_name,
        downscale_factor=downscale_factor,
        bg_color=bg_color,
        n_known_frames_for_test=n_known_frames_for_test,
        image_size=image_size,
    )


def list_blender_dataset(base_dir: str) -> DatasetMap:
    """A BlenderSplit per split, reading only the JSON files. Frame numbers run over train, then
    val, then test, so they are unique within the sequence."""

    splits = {}
    frame_number = 0
    for split in SPLITS:
        splits[split] = list_blender_split(base_dir, split, first_frame_number=frame_number)
        frame_number += len(splits[split])
    return DatasetMap(**splits)


def list_blender_split(base_dir: str, split: str, first_frame_number: int = 0) -> BlenderSplit:
    """The frames of `transforms_<split>.json`, checked, with the files each reads."""
    path = transforms_path(base_dir, split)
    meta = _read_transforms(path, base_dir)
    frames, files = [], []
    for index, entry in enumerate(meta["frames"]):
        c2w, image_path = _check_frame(path, index, entry)
        frames.append(BlenderFrame(index, first_frame_number + index, c2w, image_path))
        depth_path = _depth_path(image_path)
        files.append((DataFile(image_path),) + ((DataFile(depth_path),) if os.path.isfile(depth_path) else ()))
    return BlenderSplit(frames, files, split=split, transforms=path, camera_angle_x=float(meta["camera_angle_x"]))


def load_blender_dataset_map(
    listing: DatasetMap,
    *,
    sequence_name: str,
    downscale_factor: int = 1,
    bg_color: Sequence[float] = (0.0, 0.0, 0.0),
    n_known_frames_for_test: Optional[int] = None,
    image_size: Optional[int] = None,
) -> DatasetMap:
    """The SingleSceneDatasets of the BlenderSplits of `list_blender_dataset` (after the data
    check may have dropped items). n_known_frames_for_test: see `single_scene_dataset_map`;
    downscale_factor and image_size: see `read_blender_view`."""
    frames = {
        split: read_blender_split(
            getattr(listing, split), sequence_name=sequence_name, downscale_factor=downscale_factor, bg_color=bg_color,
            image_size=image_size,
        )
        for split in SPLITS
    }
    return single_scene_dataset_map(**frames, n_known_frames_for_test=n_known_frames_for_test)


def single_scene_dataset_map(
    train: Optional[Sequence[FrameData]],
    val: Optional[Sequence[FrameData]],
    test: Optional[Sequence[FrameData]],
    n_known_frames_for_test: Optional[int] = None,
) -> DatasetMap:
    """The DatasetMap of one scene's frames (None for a split the scene does not have).

    With n_known_frames_for_test = k, the test dataset holds the test frames followed by the train
    frames, and its eval_batches pair each test frame with k random train (known) frames, drawn
    with a fixed seed: test batches are [target, k known source views]. None: test frames only.
    """

    test_dataset = None if test is None else SingleSceneDataset(test)
    if n_known_frames_for_test is not None:
        if not test or not train:
            raise ValueError(
                f"n_known_frames_for_test={n_known_frames_for_test} needs train and test frames; this scene has "
                f"{len(train or [])} train and {len(test or [])} test frames"
            )
        test_dataset = with_known_source_views(test, train, n_known_frames_for_test)
    return DatasetMap(
        train=None if train is None else SingleSceneDataset(train),
        val=None if val is None else SingleSceneDataset(val),
        test=test_dataset,
    )


def read_blender_split(
    listing: BlenderSplit,
    *,
    sequence_name: str,
    downscale_factor: int = 1,
    bg_color: Sequence[float] = (0.0, 0.0, 0.0),
    image_size: Optional[int] = None,
) -> List[FrameData]:
    """The frames of a listed split, each a single-frame FrameData made from its ViewRecord
    (`read_blender_view`; see the module doc). When some frames have depth, a frame without a
    depth file gets depth unknown (0) everywhere."""
    views = [read_blender_view(listing, frame, sequence_name=sequence_name, downscale_factor=downscale_factor,
                               bg_color=bg_color, image_size=image_size) for frame in listing.items]
    sizes = {view.image_size_hw for view in views}
    if len(sizes) > 1:
        raise BlenderFormatError(f"{listing.transforms}: the images have different sizes {sorted(sizes)}; "
                                 f"expected one size")
    has_depth = any(view.depth is not None for view in views)
    h, w = sizes.pop()
    mask_crop = torch.ones(1, h, w)  # nothing is cropped; one tensor shared by every frame
    frame_type = SPLIT_FRAME_TYPES.get(listing.split, "test_unseen")
    frames = []
    for view in views:
        if has_depth and view.depth is None:
            view.depth = torch.zeros(h, w)
        frames.append(view_frame_data(view, frame_type, mask_crop))
    return frames


def read_blender_view(
    listing: BlenderSplit,
    frame: BlenderFrame,
    *,
    sequence_name: str,
    downscale_factor: int = 1,
    bg_color: Sequence[float] = (0.0, 0.0, 0.0),
    fg_mask: bool = True,
    image_size: Optional[int] = None,
) -> ViewRecord:
    """One frame of a listed split as a ViewRecord.

    image: the colour composited over bg_color (3, h, w); mask_fg: the alpha (h, w) float32 in
    [0, 1] (None with fg_mask=False); depth: the `_depth.npy` beside the image (scene units,
    depth_kind "metric"; 0 = no surface, unknown) or None; intrinsics: fx = fy = 0.5 * w /
    tan(0.5 * camera_angle_x), principal point at the image centre; camera_to_world: the
    transform_matrix with the camera's y and z axes flipped (OpenGL to OpenCV); label type
    "synthetic"; frame: the frame number. At downscale_factor > 1, then with image_size (the longer
    side of images larger than that, in pixels), smaller by area averaging as `_frame_images`.
    """
    if downscale_factor < 1:
        raise ValueError(f"downscale_factor must be an integer >= 1, got {downscale_factor}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be a number of pixels >= 1 (or None), got {image_size}")
    if len(bg_color) != 3:
        raise ValueError(f"bg_color must be 3 numbers (R, G, B in [0, 1]), got {list(bg_color)}")
    rgba = _read_rgba(listing.transforms, frame.index, frame.image_path)
    depth = _read_depth(listing.transforms, frame.index, frame.image_path, rgba.shape[:2])
    image_rgb, alpha, depth_map, _ = _frame_images(rgba, depth, downscale_factor, bg_color, image_size)
    h, w = image_rgb.shape[1:]
    focal = 0.5 * w / math.tan(0.5 * listing.camera_angle_x)
    intrinsics = torch.tensor([[focal, 0.0, w / 2.0], [0.0, focal, h / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return ViewRecord(
        image=image_rgb,
        depth=None if depth_map is None else depth_map[0],
        depth_kind="metric",
        intrinsics=intrinsics.float(),
        camera_to_world=(frame.c2w @ OPENGL_TO_OPENCV).float(),
        mask_fg=alpha[0] if fg_mask else None,
        sequence=sequence_name,
        frame=frame.frame_number,
        label_type="synthetic",
        path=frame.image_path,
    )


def _read_transforms(path: str, base_dir: str) -> dict:
    if not os.path.isfile(path):
        raise BlenderFormatError(
            f"Blender dataset: {path} not found; base_dir={base_dir!r} must hold "
            f"{', '.join(f'transforms_{s}.json' for s in SPLITS)} (NeRF-synthetic layout)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as error:
        raise BlenderFormatError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise BlenderFormatError(f"{path}: expected a JSON object with 'camera_angle_x' and 'frames'")
    angle = meta.get("camera_angle_x")
    if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not 0.0 < angle < math.pi:
        raise BlenderFormatError(
            f"{path}: 'camera_angle_x' must be the horizontal field of view in radians (0 < angle < pi), got {angle!r}"
        )
    if not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise BlenderFormatError(f"{path}: 'frames' must be a non-empty list of frames, got {meta.get('frames')!r}")
    return meta


def _check_frame(path: str, index: int, entry: object) -> Tuple[torch.Tensor, str]:
    """The (4, 4) float64 camera-to-world matrix and the image path of frames[index]."""
    where = f"{path}: frames[{index}]"
    if not isinstance(entry, dict):
        raise BlenderFormatError(f"{where}: expected an object with 'file_path' and 'transform_matrix', got {entry!r}")
    file_path = entry.get("file_path")
    if not isinstance(file_path, str) or not file_path:
        raise BlenderFormatError(f"{where}: 'file_path' must be a non-empty string, got {file_path!r}")
    try:
        matrix = np.asarray(entry.get("transform_matrix"), dtype=np.float64)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.shape not in ((4, 4), (3, 4)) or not np.isfinite(matrix).all():
        raise BlenderFormatError(
            f"{where}: 'transform_matrix' must be a 4x4 (or 3x4) list of finite numbers, "
            f"got {entry.get('transform_matrix')!r}"
        )
    c2w = np.eye(4)
    c2w[: matrix.shape[0]] = matrix
    image_path = os.path.normpath(os.path.join(os.path.dirname(path), file_path))
    if os.path.splitext(image_path)[1].lower() not in (".png", ".jpg", ".jpeg"):
        image_path += ".png"
    return torch.from_numpy(c2w), image_path


def _read_rgba(path: str, index: int, image_path: str) -> np.ndarray:
    """(H, W, 4) float32 straight-alpha RGBA in [0, 1]; alpha 1 for images without one."""
    if not os.path.isfile(image_path):
        raise BlenderFormatError(f"{path}: frames[{index}]: image {image_path} not found")
    try:
        with Image.open(image_path) as image:
            return np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    except OSError as error:
        raise BlenderFormatError(f"{path}: frames[{index}]: cannot read image {image_path}: {error}") from error


def _depth_path(image_path: str) -> str:
    """`<image stem>_depth.npy`, the optional depth file of an image."""
    return os.path.splitext(image_path)[0] + DEPTH_SUFFIX


def _read_depth(path: str, index: int, image_path: str, size_hw: Tuple[int, int]) -> Optional[np.ndarray]:
    """(H, W) float32 depth from `<image stem>_depth.npy`, or None when there is no such file."""
    depth_path = _depth_path(image_path)
    if not os.path.isfile(depth_path):
        return None
    try:
        depth = np.load(depth_path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BlenderFormatError(f"{path}: frames[{index}]: cannot read depth {depth_path}: {error}") from error
    if depth.shape != tuple(size_hw):
        raise BlenderFormatError(
            f"{path}: frames[{index}]: depth {depth_path} has shape {depth.shape}, "
            f"expected the image size {tuple(size_hw)}"
        )
    return depth.astype(np.float32)


def _frame_images(
    rgba: np.ndarray, depth: Optional[np.ndarray], factor: int, bg_color: Sequence[float],
    image_size: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """image_rgb (3, h, w) over bg_color, fg_probability (1, h, w), depth and depth mask (1, h, w).

    rgba: (H, W, 4) straight alpha; depth: (H, W) or None. At factor > 1 the premultiplied colour and
    the alpha are averaged over factor x factor blocks (sizes that are not multiples of the factor
    lose their last rows / columns); then, when image_size is set and the longer side is larger,
    they are averaged over the areas of an image of that longer side (`area_resize`, aspect kept).
    A depth pixel is valid only where all its area is (depth > 0), and 0 elsewhere. NumPy, not
    torch: torch's thread pool makes these small operations slow.
    """
    size_hw = None if image_size is None else capped_size_hw((rgba.shape[0] // factor, rgba.shape[1] // factor),
                                                              image_size)

    def smaller(image: np.ndarray) -> np.ndarray:
        image = area_downscale(image, factor)
        return image if size_hw is None else area_resize(image, size_hw)

    alpha = smaller(rgba[..., 3:])
    premultiplied = smaller(rgba[..., :3] * rgba[..., 3:])
    background = np.asarray(bg_color, dtype=np.float32)
    image_rgb = np.clip(premultiplied + background * (1.0 - alpha), 0.0, 1.0)
    depth_map = depth_mask = None
    if depth is not None:
        valid = (depth > 0).astype(np.float32)[..., None]
        depth_mask = (smaller(valid) > 1.0 - 1e-6).astype(np.float32)
        depth_map = smaller(depth[..., None] * valid) * depth_mask
    return tuple(None if a is None else torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
                 for a in (image_rgb, alpha, depth_map, depth_mask))


def area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C) -> (H // factor, W // factor, C): the mean of each factor x factor block."""
    if factor == 1:
        return image
    h, w, c = image.shape[0] // factor, image.shape[1] // factor, image.shape[2]
    return image[: h * factor, : w * factor].reshape(h, factor, w, factor, c).mean(axis=(1, 3))


def capped_size_hw(size_hw: Tuple[int, int], longer_side: int) -> Optional[Tuple[int, int]]:
    """(h, w) of an image of size_hw scaled so that its longer side is `longer_side` pixels (aspect
    kept, sides rounded, at least 1); None when the image is not larger than that already."""
    h, w = size_hw
    if max(h, w) <= longer_side:
        return None
    scale = longer_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def area_resize(image: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (h, w, C) with h <= H, w <= W: each output pixel the mean of the input area it
    covers (input pixels that it covers in part count in proportion), as `area_downscale` for
    any ratio; equal to it when the ratios are integers."""
    (H, W, c), (h, w) = image.shape, size_hw
    rows = _area_weights(H, h).astype(np.float32)  # (h, H)
    columns = _area_weights(W, w).astype(np.float32)  # (w, W)
    out = (rows @ image.astype(np.float32).reshape(H, W * c)).reshape(h, W, c)  # rows first
    out = columns @ out.transpose(1, 0, 2).reshape(W, h * c)  # then columns: (w, h * c)
    return np.ascontiguousarray(out.reshape(w, h, c).transpose(1, 0, 2))


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: row i is the share of each input pixel in output pixel i's span
    [i, i + 1) * n_in / n_out; each row sums to 1."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixels = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(ends, pixels + 1) - np.maximum(starts, pixels), 0.0, None)
    return overlap / (n_in / n_out)


def write_blender_split(
    base_dir: str,
    split: str,
    *,
    cameras: PerspectiveCameras,
    rgb: torch.Tensor,
    mask: torch.Tensor,
    depth: Optional[torch.Tensor] = None,
    rotation: float = 0.0,
) -> None:
    """Write N views as `transforms_<split>.json` and `<split>/r_<k>.png` (+ `r_<k>_depth.npy`).

    cameras: N cameras sharing one focal length (fx = fy), principal point at the centre.
    rgb: (N, H, W, 3) in [0, 1], premultiplied; mask: (N, H, W) alpha in [0, 1];
    depth: (N, H, W) view-space Z or None. rotation: the "rotation" value NeRF's files carry (unused).
    Files are written in place: write into a temporary folder and rename it for atomicity.
    """
    n, h, w = mask.shape
    camera_angle_x = blender_camera_angle_x(cameras, (h, w))
    c2w = opengl_c2w_from_cameras(cameras.to("cpu"))
    os.makedirs(os.path.join(base_dir, split), exist_ok=True)
    alpha = mask.clamp(0.0, 1.0)[..., None]
    straight = torch.where(alpha > 0, rgb / alpha.clamp(min=1e-8), torch.zeros_like(rgb)).clamp(0.0, 1.0)
    rgba = torch.round(torch.cat([straight, alpha], dim=-1) * 255.0).to(torch.uint8).cpu().numpy()
    frames = []
    for k in range(n):
        stem = os.path.join(split, f"r_{k}")
        Image.fromarray(rgba[k]).save(os.path.join(base_dir, stem + ".png"))
        if depth is not None:
            np.save(os.path.join(base_dir, stem + DEPTH_SUFFIX), depth[k].cpu().numpy().astype(np.float32))
        frames.append(
            {"file_path": f"./{split}/r_{k}", "rotation": rotation, "transform_matrix": c2w[k].tolist()}
        )
    with open(transforms_path(base_dir, split), "w", encoding="utf-8") as f:
        json.dump({"camera_angle_x": camera_angle_x, "frames": frames}, f, indent=4)


def blender_camera_angle_x(cameras: PerspectiveCameras, image_size_hw: Tuple[int, int]) -> float:
    """The horizontal field of view (radians) of cameras that the Blender layout can express."""
    focal, principal = cameras.focal_length.double(), cameras.principal_point.double()
    if not (torch.allclose(focal, focal[:1].expand_as(focal)) and torch.allclose(focal[:, 0], focal[:, 1])):
        raise ValueError("the Blender layout needs one focal length with fx = fy for every camera")
    if not torch.allclose(principal, torch.zeros_like(principal), atol=1e-6):
        raise ValueError("the Blender layout needs the principal point at the image centre")
    h, w = image_size_hw
    focal_pixels = float(focal[0, 0]) * min(h, w) / 2.0
    return 2.0 * math.atan(0.5 * w / focal_pixels)


@registry.register
class BlenderDatasetMapProvider(DatasetMapProviderBase):
    """A scene in NeRF's Blender layout: transforms_{train,val,test}.json and RGBA PNGs.

    Train frames are train_known, val and test frames test_unseen (format: this module's doc).
    With `base_dir` left empty, ReconDataSource trains on the built-in scene instead.
    """

    base_dir: str = ""  # folder holding transforms_{train,val,test}.json, e.g. nerf_synthetic/lego
    object_name: str = ""  # sequence name of the frames; "" = the name of base_dir's folder
    downscale_factor: int = 1  # integer image downscaling by area averaging (2: 800x800 -> 400x400)
    bg_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB behind transparent pixels; NeRF's white_bkgd is 1,1,1
    n_known_frames_for_test: Optional[int] = None  # k: each test batch is a test frame + k random train frames
    # Longer image side in pixels (after downscale_factor): larger images are area-averaged down to
    # it, aspect kept (64: 800x800 -> 64x64; +preset=quick sets it); None: downscale_factor only.
    image_size: Optional[int] = None

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"BlenderDatasetMapProvider.image_size={self.image_size}: expected a number of pixels "
                              f">= 1, or null to keep the size downscale_factor gives")
        self._files: Optional[DatasetMap] = None

    def data_path(self) -> Optional[str]:
        return self.base_dir or None

    def file_map(self) -> DatasetMap:
        """The BlenderSplits (only the JSON files are read); get_dataset_map loads what they keep."""
        if self._files is None:
            if not self.base_dir:
                raise ValueError("BlenderDatasetMapProvider.base_dir is empty: set it to a Blender-layout folder")
            self._files = list_blender_dataset(self.base_dir)
        return self._files

    def get_dataset_map(self) -> DatasetMap:
        name = self.object_name or os.path.basename(os.path.normpath(self.base_dir))
        return load_blender_dataset_map(
            self.file_map(),
            sequence_name=name,
            downscale_factor=self.downscale_factor,
            bg_color=tuple(self.bg_color),
            n_known_frames_for_test=self.n_known_frames_for_test,
            image_size=self.image_size,
        )



# Reading in mixing expressions: the frames (Blender) or sequences of N views (BlenderSequences) of a scene.


class BlenderSource(MixableDataset):
    """The fields and reading shared by Blender and BlenderSequences (not registered itself)."""

    PATH_FIELDS = ("root",)

    root: str = ""  # folder holding transforms_{train,val,test}.json, e.g. nerf_synthetic/lego
    split: str = choice_field("train", SPLITS)  # which transforms_<split>.json: train, val or test
    scene: str = ""  # sequence name of the records; "": the name of root's folder
    downscale_factor: int = 1  # integer image downscaling by area averaging (2: 800x800 -> 400x400)
    bg_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # RGB behind transparent pixels; NeRF's white_bkgd is 1,1,1
    fg_mask: bool = True  # mask_fg from the alpha channel; False: none (to stack with records that have no mask)

    def list_frames(self) -> BlenderSplit:
        """The split's frames (the JSON files are read, no image), numbered as the provider numbers them."""
        check_choices(self)
        if not self.root:
            raise ConfigError(f"{type(self).__name__}.root is empty: set it to a Blender-layout folder")
        return getattr(list_blender_dataset(self.root), self.split)

    def read_frame(self, listing: BlenderSplit, position: int) -> ViewRecord:
        """The listing's frame `position` as a ViewRecord (`read_blender_view`) labelled with this dataset."""
        view = read_blender_view(
            listing, listing.items[position], sequence_name=self.scene or os.path.basename(os.path.normpath(self.root)),
            downscale_factor=self.downscale_factor, bg_color=tuple(self.bg_color), fg_mask=self.fg_mask,
        )
        view.dataset = self.label()
        return view


@registry.register
class Blender(ListedDataset, BlenderSource):
    """A NeRF-synthetic (Blender-layout) scene's frames of one split, as ViewRecords read one at a
    time (`read_blender_view`), e.g. `Blender(root='nerf_synthetic/lego', split='train')`."""

    def list_items(self) -> BlenderSplit:
        return self.list_frames()

    def read_item(self, index: int) -> ViewRecord:
        return self.read_frame(self._listing, index)


@registry.register
class BlenderSequences(SequenceDataset, BlenderSource):
    """A Blender-layout scene as one sequence (the split's frames in file order: a ring capture's
    neighbours are neighbours here) whose items are SequenceRecords of num_views sampled views
    (data/sampling/sequences.py), e.g. `BlenderSequences(root='lego', num_views=4, min_thresh=1, max_thresh=5)`."""

    def __post_init__(self) -> None:
        self._listing = self.list_frames()
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        name = self.scene or os.path.basename(os.path.normpath(self.root))
        return [SequenceEntry(name, tuple(range(len(self._listing))))]

    def load_frame(self, sequence: SequenceEntry, frame: int) -> ViewRecord:
        return self.read_frame(self._listing, frame)

    def frame_files(self, sequence: SequenceEntry, frame: int) -> Sequence[DataFile]:
        return self._listing.item_files(frame)
