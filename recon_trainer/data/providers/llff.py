"""LLFF's forward-facing scenes (NeRF's "nerf_llff_data"): reading, writing, and the dataset map provider.

Layout of `base_dir`, as LLFF's `imgs2poses.py` writes it:

    poses_bounds.npy   float (N, 17), one row per image in sorted file-name order: a 3x5 matrix
                       flattened row by row, then the near and far depth of the scene content the
                       image sees. Columns 0-2 of the 3x5 matrix are the camera axes in world
                       coordinates in LLFF's order [down, right, backwards]; column 3 is the camera
                       centre; column 4 is [height, width, focal length] in pixels of the images/ size.
    images/            the images (.png, .jpg, .jpeg in any case), one per row
    images_<k>/        optional copies downscaled by k (the LLFF release ships images_4 and images_8)

Reading follows NeRF's `load_llff_data` with its defaults (as Implicitron's LlffDatasetMapProvider):
- images_<downscale_factor>/ when it exists, else images/ downscaled here by area averaging (a line
  is printed); the focal length is divided by the factor, the principal point is the image centre.
- Axes: [down, right, back] -> OpenGL [right, up, back] -> pytorch3d cameras (`cameras_from_opengl_c2w`).
- bd_factor: the world is scaled by 1 / (bd_factor * smallest near bound), so the nearest content is
  1 / bd_factor (1.33 by default) from its camera; the bounds scale with it. None keeps the units.
- recenter: the world moves rigidly so that the mean camera pose becomes the identity: mean centre at
  the origin, mean viewing direction -Z, mean up +Y.
- Split: image i is a test image (and a val image: val = test) when i % llffhold == 0, else train.
  Train frames are "train_known", val and test frames "test_unseen"; frame_number is i.
- No masks or depth: fg_probability and depth_map are None, mask_crop is all ones.
  `meta["depth_bounds"]` is the frame's (near, far) in the (rescaled) world units.
Not done: NeRF's NDC ray space for forward-facing scenes (our rays stay in world space) and spherify.

Each image is read as a ViewRecord (`read_llff_view`: K in pixels, the OpenCV camera-to-world of
the normalised scene, the bounds in extras["depth_bounds"]) and the provider's FrameData is made
from it (frame_data.view_frame_data). In mixing expressions, `LLFF(root=..., split=...)` gives the records
of a split (train, test or all) and `LLFFSequences(...)` SequenceRecords of N views of the scene.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.cameras import PerspectiveCameras, look_at_cameras, opengl_c2w_from_cameras
from recon_trainer.data.dataset_map_provider import DatasetMapProviderBase
from recon_trainer.data.file_check import DataFile, FileItems
from recon_trainer.data.mixing.base import ListedDataset, MixableDataset
from recon_trainer.data.providers.blender import OPENGL_TO_OPENCV, area_downscale, single_scene_dataset_map
from recon_trainer.data.records import ViewRecord
from recon_trainer.data.sampling.sequences import SequenceDataset, SequenceEntry
from recon_trainer.data.splits import DatasetMap
from recon_trainer.errors import DataFileError
from recon_trainer.data.frame_data import view_frame_data

POSES_BOUNDS_FILE = "poses_bounds.npy"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class LlffFormatError(DataFileError):
    """An LLFF-layout file is missing or malformed; the message names the file."""


def read_poses_bounds(base_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """poses (N, 3, 5) and bounds (N, 2), float64, from `<base_dir>/poses_bounds.npy`."""
    path = os.path.join(base_dir, POSES_BOUNDS_FILE)
    if not os.path.isfile(path):
        raise LlffFormatError(f"LLFF dataset: {path} not found; base_dir={base_dir!r} must hold {POSES_BOUNDS_FILE}"
                              " and images/ (LLFF layout)")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise LlffFormatError(f"{path}: cannot read it as a NumPy array: {error}") from error
    if array.ndim != 2 or array.shape[1] != 17 or len(array) == 0 or not np.isfinite(array).all():
        raise LlffFormatError(f"{path}: expected a finite (N, 17) array (3x5 pose + near, far per image), "
                              f"got shape {array.shape}")
    poses, bounds = array[:, :15].reshape(-1, 3, 5).astype(np.float64), array[:, 15:].astype(np.float64)
    bad = np.nonzero((poses[:, :, 4] <= 0).any(axis=1) | (bounds[:, 0] <= 0) | (bounds[:, 1] < bounds[:, 0]))[0]
    if len(bad):
        raise LlffFormatError(f"{path}: row {bad[0]}: expected positive height, width, focal and 0 < near <= far, "
                              f"got hwf {poses[bad[0], :, 4].tolist()} and bounds {bounds[bad[0]].tolist()}")
    return poses, bounds


def llff_to_opengl_c2w(poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) OpenGL camera-to-world matrices (axes right, up, back) of LLFF poses (N, 3, 5)."""
    c2w = np.tile(np.eye(4), (len(poses), 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1] = poses[:, :, 1], -poses[:, :, 0]  # right = LLFF's right, up = -down
    c2w[:, :3, 2:4] = poses[:, :, 2:4]  # back and the centre are the same
    return c2w


def opengl_c2w_to_llff(c2w: np.ndarray) -> np.ndarray:
    """(N, 3, 4) LLFF [down, right, back | centre] of OpenGL camera-to-world matrices (N, 4, 4)."""
    return np.concatenate([-c2w[:, :3, 1:2], c2w[:, :3, 0:1], c2w[:, :3, 2:4]], axis=2)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """(4, 4) OpenGL camera-to-world of the mean pose of c2w (N, 4, 4).

    Centre: the mean centre; back axis: the normalised sum of the back axes; right axis: orthogonal
    to it and to the sum of the up axes; up completes the right-handed frame.
    """
    back = _normalize(c2w[:, :3, 2].sum(axis=0))
    right = _normalize(np.cross(c2w[:, :3, 1].sum(axis=0), back))
    mean = np.eye(4)
    mean[:3, 0], mean[:3, 1], mean[:3, 2] = right, np.cross(back, right), back
    mean[:3, 3] = c2w[:, :3, 3].mean(axis=0)
    return mean


def normalize_scene(
    c2w: np.ndarray, bounds: np.ndarray, bd_factor: Optional[float], recenter: bool
) -> Tuple[np.ndarray, np.ndarray]:
    """c2w (N, 4, 4) and bounds (N, 2) after NeRF's rescaling by the bounds and recentring (module doc)."""
    c2w, bounds = c2w.copy(), bounds.copy()
    if bd_factor is not None:
        scale = 1.0 / (bounds.min() * bd_factor)
        c2w[:, :3, 3] *= scale
        bounds *= scale
    if recenter:
        c2w = np.linalg.inv(average_pose(c2w))[None] @ c2w
    return c2w, bounds


@dataclasses.dataclass
class LlffListing:
    """An LLFF folder before its images are read (the data check's view of it).

    poses (N, 3, 5) and bounds (N, 2) of every row of poses_bounds.npy, float64; paths: the N
    images of `folder`, which is images_<factor>/, or images/ downscaled by `factor` here when
    `resize`; train and test: the image indices of each split, each item reading its image.
    """

    poses: np.ndarray
    bounds: np.ndarray
    factor: int
    folder: str
    resize: bool
    paths: List[str]
    train: FileItems[int]
    test: FileItems[int]


def read_llff_dataset_map(
    base_dir: str,
    *,
    sequence_name: str,
    downscale_factor: int = 4,
    llffhold: int = 8,
    bd_factor: Optional[float] = 0.75,
    recenter: bool = True,
    n_known_frames_for_test: Optional[int] = None,
) -> DatasetMap:
    """Train, val (= test) and test SingleSceneDatasets of an LLFF-layout folder (module doc).

    n_known_frames_for_test: see `blender.single_scene_dataset_map`.
    """
    return load_llff_dataset_map(
        list_llff_dataset(base_dir, downscale_factor, llffhold),
        sequence_name=sequence_name,
        bd_factor=bd_factor,
        recenter=recenter,
        n_known_frames_for_test=n_known_frames_for_test,
    )


def list_llff_dataset(base_dir: str, downscale_factor: int = 4, llffhold: int = 8) -> LlffListing:
    """poses_bounds.npy and the image names, checked; image i is held out when i % llffhold == 0."""
    if downscale_factor < 1:
        raise ValueError(f"downscale_factor must be an integer >= 1, got {downscale_factor}")
    if llffhold < 2:
        raise ValueError(f"llffhold must be >= 2 (every llffhold-th image is held out), got {llffhold}")
    poses, bounds = read_poses_bounds(base_dir)
    folder = os.path.join(base_dir, "images" if downscale_factor == 1 else f"images_{downscale_factor}")
    resize = not os.path.isdir(folder)
    if resize:
        print(f"LLFF: {folder} not found; downscaling {os.path.join(base_dir, 'images')} by {downscale_factor} "
              "in memory", flush=True)
        folder = os.path.join(base_dir, "images")
    if not os.path.isdir(folder):
        raise LlffFormatError(f"LLFF dataset: image folder {folder} not found (LLFF layout: images/, images_<k>/)")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    if len(names) != len(poses):
        raise LlffFormatError(
            f"{folder}: {len(names)} images but {os.path.join(base_dir, POSES_BOUNDS_FILE)} has {len(poses)} rows; "
            "expected one image per row"
        )
    paths = [os.path.join(folder, name) for name in names]
    splits = {}
    for split in ("train", "test"):
        indices = [i for i in range(len(paths)) if (i % llffhold == 0) == (split == "test")]
        splits[split] = FileItems(indices, [(DataFile(paths[i]),) for i in indices])
    return LlffListing(poses, bounds, downscale_factor, folder, resize, paths, splits["train"], splits["test"])


def load_llff_dataset_map(
    listing: LlffListing,
    *,
    sequence_name: str,
    bd_factor: Optional[float] = 0.75,
    recenter: bool = True,
    n_known_frames_for_test: Optional[int] = None,
) -> DatasetMap:
    """The SingleSceneDatasets of the images a listing keeps (the data check may have dropped some),
    each frame a FrameData made from its ViewRecord (`read_llff_view`); the scene is normalised with
    every row of poses_bounds.npy, those of dropped images included."""
    c2w, bounds = llff_scene(listing, bd_factor, recenter)
    indices = sorted(set(listing.train.items) | set(listing.test.items))
    views = {i: read_llff_view(listing, i, c2w, bounds, sequence_name, check_size=False) for i in indices}
    sizes = {view.image_size_hw for view in views.values()}
    if len(sizes) > 1:
        raise LlffFormatError(f"{listing.folder}: the images have different sizes {sorted(sizes)}; expected one size")
    h, w = sizes.pop()
    _check_image_size(listing, indices[0], (h, w))
    mask_crop = torch.ones(1, h, w)  # nothing is cropped; one tensor shared by every frame
    splits = {
        split: [view_frame_data(views[i], "test_unseen" if split == "test" else "train_known", mask_crop,
                                meta={"depth_bounds": views[i].extras["depth_bounds"]})
                for i in getattr(listing, split).items]
        for split in ("train", "test")
    }
    return single_scene_dataset_map(
        splits["train"], splits["test"], splits["test"], n_known_frames_for_test=n_known_frames_for_test
    )


def llff_scene(listing: LlffListing, bd_factor: Optional[float] = 0.75, recenter: bool = True
               ) -> Tuple[np.ndarray, np.ndarray]:
    """The normalised OpenGL camera-to-world matrices (N, 4, 4) and bounds (N, 2) of every row of
    the listing's poses_bounds.npy (module doc), float64."""
    if bd_factor is not None and bd_factor <= 0:
        raise ValueError(f"bd_factor must be > 0 or None, got {bd_factor}")
    return normalize_scene(llff_to_opengl_c2w(listing.poses), listing.bounds, bd_factor, recenter)


def read_llff_view(
    listing: LlffListing, index: int, c2w: np.ndarray, bounds: np.ndarray, sequence_name: str,
    check_size: bool = True,
) -> ViewRecord:
    """Image `index` of the listing as a ViewRecord, with the scene's normalised poses c2w (N, 4, 4)
    (OpenGL) and bounds (N, 2) of `llff_scene`. check_size: the image must be the size its
    poses_bounds.npy row gives, divided by the factor (LlffFormatError otherwise).

    image (3, h, w) at 1 / factor of the poses' size; intrinsics: focal = hwf focal / factor, the
    principal point at the image centre; camera_to_world: c2w[index] with the camera's y and z axes
    flipped (OpenGL to OpenCV); no depth or mask; extras["depth_bounds"]: (2,) float32 near and far
    in the normalised units; label type "sfm" (COLMAP poses); frame: the index.
    """
    image = _read_image(listing, index)
    h, w = image.shape[:2]
    if check_size:
        _check_image_size(listing, index, (h, w))
    focal = listing.poses[index, 2, 4] / listing.factor
    intrinsics = torch.tensor([[focal, 0.0, w / 2.0], [0.0, focal, h / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return ViewRecord(
        image=torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        intrinsics=intrinsics.float(),
        camera_to_world=(torch.from_numpy(c2w[index]) @ OPENGL_TO_OPENCV).float(),
        sequence=sequence_name,
        frame=index,
        label_type="sfm",
        path=listing.paths[index],
        extras={"depth_bounds": torch.from_numpy(bounds[index]).float()},
    )


def _read_image(listing: LlffListing, index: int) -> np.ndarray:
    """(h, w, 3) float32 RGB in [0, 1] of image `index`, at 1 / factor of the poses' size."""
    path = listing.paths[index]
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as error:
        raise LlffFormatError(f"{path}: cannot read the image: {error}") from error
    return area_downscale(rgb, listing.factor) if listing.resize else rgb


def _check_image_size(listing: LlffListing, index: int, size_hw: Tuple[int, int]) -> None:
    """LlffFormatError unless an image of size_hw matches row `index` of poses_bounds.npy / factor (+-1 pixel)."""
    h, w = size_hw
    factor = listing.factor
    expected = listing.poses[index, :2, 4] / factor
    if abs(h - expected[0]) > 1 or abs(w - expected[1]) > 1:
        raise LlffFormatError(
            f"{listing.folder}: images are {h}x{w} but {POSES_BOUNDS_FILE} gives {listing.poses[index, 0, 4]:g}x"
            f"{listing.poses[index, 1, 4]:g} pixels, i.e. {expected[0]:g}x{expected[1]:g} at downscale factor {factor}"
        )


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@registry.register
class LlffDatasetMapProvider(DatasetMapProviderBase):
    """A forward-facing scene in LLFF's layout: poses_bounds.npy and images/ (format: this module's doc).

    Every llffhold-th image is held out (val = test); the rest are train.
    With `base_dir` left empty, ReconDataSource trains on the built-in scene instead.
    """

    base_dir: str = ""  # folder holding poses_bounds.npy and images/, e.g. nerf_llff_data/fern
    object_name: str = ""  # sequence name of the frames; "" = the name of base_dir's folder
    downscale_factor: int = 4  # reads images_<factor>/ (else downscales images/); 4: 4032x3024 -> 1008x756
    llffhold: int = 8  # images 0, llffhold, 2 * llffhold, ... are held out as val and test
    bd_factor: Optional[float] = 0.75  # scale so the nearest bound is 1 / bd_factor (NeRF); None keeps the units
    recenter: bool = True  # move the world so that the mean camera pose is the identity (NeRF)
    n_known_frames_for_test: Optional[int] = None  # k: each test batch is a test frame + k random train frames

    def __post_init__(self) -> None:
        self._listing: Optional[LlffListing] = None

    def data_path(self) -> Optional[str]:
        return self.base_dir or None

    def listing(self) -> LlffListing:
        """The folder listed (poses_bounds.npy and image names read), once."""
        if self._listing is None:
            if not self.base_dir:
                raise ValueError("LlffDatasetMapProvider.base_dir is empty: set it to an LLFF-layout folder")
            self._listing = list_llff_dataset(self.base_dir, self.downscale_factor, self.llffhold)
        return self._listing

    def file_map(self) -> DatasetMap:
        """The held-out images are val and test (one FileItems), the others train."""

        listing = self.listing()
        return DatasetMap(train=listing.train, val=listing.test, test=listing.test)

    def get_dataset_map(self) -> DatasetMap:
        return load_llff_dataset_map(
            self.listing(),
            sequence_name=self.object_name or os.path.basename(os.path.normpath(self.base_dir)),
            bd_factor=self.bd_factor,
            recenter=self.recenter,
            n_known_frames_for_test=self.n_known_frames_for_test,
        )


# Reading in mixing expressions: the frames (LLFF) or sequences of N views (LLFFSequences) of a scene.

LLFF_SPLITS = ("train", "test", "all")


class LlffSource(MixableDataset):
    """The fields and reading shared by LLFF and LLFFSequences (not registered itself)."""

    PATH_FIELDS = ("root",)

    root: str = ""  # folder holding poses_bounds.npy and images/, e.g. nerf_llff_data/fern
    split: str = choice_field("train", LLFF_SPLITS)  # train, test (every llffhold-th image) or all
    scene: str = ""  # sequence name of the records; "": the name of root's folder
    downscale_factor: int = 4  # reads images_<factor>/ (else downscales images/); 4: 4032x3024 -> 1008x756
    llffhold: int = 8  # images 0, llffhold, 2 * llffhold, ... are the test split
    bd_factor: Optional[float] = 0.75  # scale so the nearest bound is 1 / bd_factor (NeRF); None keeps the units
    recenter: bool = True  # move the world so that the mean camera pose is the identity (NeRF)

    def list_frames(self) -> FileItems[int]:
        """The split's image indices (and files); the scene's normalised poses are kept for reading."""
        check_choices(self)
        if not self.root:
            raise ConfigError(f"{type(self).__name__}.root is empty: set it to an LLFF-layout folder")
        self._llff = list_llff_dataset(self.root, self.downscale_factor, self.llffhold)
        self._scene_poses = llff_scene(self._llff, self.bd_factor, self.recenter)
        if self.split != "all":
            return getattr(self._llff, self.split)
        train, test = self._llff.train, self._llff.test
        both = sorted(zip(train.items + test.items, train.files + test.files))
        return FileItems([i for i, _ in both], [files for _, files in both])

    def read_frame(self, index: int) -> ViewRecord:
        """Image `index` of the scene as a ViewRecord (`read_llff_view`) labelled with this dataset."""
        name = self.scene or os.path.basename(os.path.normpath(self.root))
        view = read_llff_view(self._llff, index, *self._scene_poses, name)
        view.dataset = self.label()
        return view


@registry.register
class LLFF(ListedDataset, LlffSource):
    """A forward-facing LLFF scene's images of one split, as ViewRecords read one at a time
    (`read_llff_view`), e.g. `LLFF(root='nerf_llff_data/fern', split='train')`."""

    def list_items(self) -> FileItems[int]:
        return self.list_frames()

    def read_item(self, index: int) -> ViewRecord:
        return self.read_frame(self._listing.items[index])


@registry.register
class LLFFSequences(SequenceDataset, LlffSource):
    """An LLFF scene as one sequence (the split's images in file order) whose items are
    SequenceRecords of num_views sampled views (data/sampling/sequences.py)."""

    def __post_init__(self) -> None:
        self._frames = self.list_frames()
        super().__post_init__()

    def list_sequences(self) -> List[SequenceEntry]:
        name = self.scene or os.path.basename(os.path.normpath(self.root))
        return [SequenceEntry(name, tuple(self._frames.items))]

    def load_frame(self, sequence: SequenceEntry, frame: int) -> ViewRecord:
        return self.read_frame(frame)

    def frame_files(self, sequence: SequenceEntry, frame: int) -> Sequence[DataFile]:
        return (DataFile(self._llff.paths[frame]),)


# Writing: a tiny LLFF-layout scene rendered from a mesh (tools/make_llff_dataset.py).


def forward_facing_cameras(
    grid: int, spacing: float, distance: float, fov_degrees: float, image_size_hw: Tuple[int, int]
) -> PerspectiveCameras:
    """grid x grid cameras on the plane z = distance, `spacing` apart, all looking at the origin.

    Row-major from the top-left (seen from the cameras); world +Y is up; fov_degrees spans the
    image's shorter side.
    """
    offsets = spacing * (np.arange(grid) - (grid - 1) / 2.0)
    eye = torch.tensor([[x, -y, distance] for y in offsets for x in offsets], dtype=torch.float32)
    n = len(eye)
    return look_at_cameras(
        eye,
        torch.zeros(n, 3),
        torch.tensor([[0.0, 1.0, 0.0]]).expand(n, 3),
        focal_length=1.0 / math.tan(math.radians(fov_degrees) / 2.0),
        image_size_hw=image_size_hw,
    )


def llff_poses_bounds(cameras: PerspectiveCameras, image_size_hw: Tuple[int, int], bounds: np.ndarray) -> np.ndarray:
    """The (N, 17) poses_bounds.npy rows of N cameras (fx = fy, centred principal point), bounds (N, 2)."""
    focal, principal = cameras.focal_length.double(), cameras.principal_point.double()
    if not torch.allclose(focal[:, 0], focal[:, 1]) or not torch.allclose(principal, torch.zeros_like(principal)):
        raise ValueError("the LLFF layout needs fx = fy and the principal point at the image centre")
    h, w = image_size_hw
    hwf = np.stack([np.full(len(cameras), h), np.full(len(cameras), w), focal[:, 0].numpy() * min(h, w) / 2.0], 1)
    c2w = opengl_c2w_from_cameras(cameras.to("cpu")).double().numpy()
    poses = np.concatenate([opengl_c2w_to_llff(c2w), hwf[:, :, None]], axis=2)
    return np.concatenate([poses.reshape(-1, 15), np.asarray(bounds, dtype=np.float64)], axis=1)


def write_llff_dataset(
    out_dir: str, cameras: PerspectiveCameras, rgb: torch.Tensor, bounds: np.ndarray, factors: Sequence[int] = ()
) -> None:
    """Write poses_bounds.npy, images/image_<k>.png and images_<f>/ (area-downscaled) for f in factors.

    rgb: (N, H, W, 3) in [0, 1]; bounds: (N, 2) near and far depth of each view.
    """
    n, h, w = rgb.shape[:3]
    images = torch.round(rgb.clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
    for factor in (1, *factors):
        folder = os.path.join(out_dir, "images" if factor == 1 else f"images_{factor}")
        os.makedirs(folder)
        for k in range(n):
            image = images[k] if factor == 1 else area_downscale(images[k].astype(np.float64) / 255.0, factor)
            if factor != 1:
                image = np.round(image * 255.0).astype(np.uint8)
            Image.fromarray(image).save(os.path.join(folder, f"image_{k:03d}.png"))
    np.save(os.path.join(out_dir, POSES_BOUNDS_FILE), llff_poses_bounds(cameras, (h, w), bounds))


def render_llff_dataset(
    out_dir: str,
    *,
    scene: str = "builtin",
    grid: int = 3,
    spacing: float = 0.5,
    distance: float = 3.0,
    fov_degrees: float = 50.0,
    image_size_hw: Tuple[int, int] = (48, 64),
    factors: Sequence[int] = (2,),
) -> str:
    """Render `scene` ("builtin" or a mesh file) from `forward_facing_cameras` into a new LLFF folder.

    Each view's bounds are the smallest and largest depth of the mesh it sees (exact, from the
    renderer). Returns the absolute folder path.
    """
    from recon_trainer.data import scene_rendering  # imported here: trimesh is slow to import
    from recon_trainer.data.providers.scene_meshes import load_scene_mesh

    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder")
    cameras = forward_facing_cameras(grid, spacing, distance, fov_degrees, image_size_hw)
    rendering = scene_rendering.render_mesh(load_scene_mesh(scene), cameras, image_size_hw)
    hit = rendering.mask > 0
    if not hit.flatten(1).any(dim=1).all():
        raise ValueError(f"render_llff_dataset: some views of {scene!r} see nothing; move the cameras closer")
    depth = rendering.depth
    bounds = np.stack(
        [depth.masked_fill(~hit, math.inf).flatten(1).min(1).values.numpy(),
         depth.masked_fill(~hit, -math.inf).flatten(1).max(1).values.numpy()], axis=1
    )
    os.makedirs(out_dir, exist_ok=True)
    write_llff_dataset(out_dir, cameras, rendering.rgb, bounds, factors)
    return os.path.abspath(out_dir)
