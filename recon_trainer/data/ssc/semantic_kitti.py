"""SemanticKITTI and SSCBench-KITTI-360 semantic scene completion datasets (registered
`SemanticKITTI` and `KITTI360`), reading the layouts of data/formats/semantic_kitti.py.

    SemanticKITTI(data_root='kitti', label_root='kitti/labels', depth_root='kitti/depth', split='train')

Items are ViewRecords (data/records.py): the image cropped top-left to 370 x 1220 (KITTI-360:
376 x 1408) as Symphonies crops it, metric depth from depth_root cropped alike (None when
depth_root is ""), K from P2 (half a pixel added), camera_to_world = inv(Tr) (world = the LiDAR
frame the voxels live in; `exact_camera` adds camera 2's offset from camera 0), sequence
"<seq>/<frame>"; extras["voxels"] a VoxelRecord of the _1_1 labels (origin (0, -25.6, -2), 0.2 m)
whose extras hold class_weights (C,) and target_1_8 (the _1_8 VoxelRecord), and extras["flipped"].
SemanticKITTI's test frames (no labels) carry all-255 volumes.

Frames: the stems of voxels/*.bin of the split's sequences (list_from="images": every image;
then frames without a label file get all-255 volumes), every frame_stride-th, at most max_frames.

Horizontal flip (flip=True, train split only, probability 1/2 per item, as the original). The
original flips the image columns, the depth columns and the labels along grid axis 1 (LiDAR y,
the lateral axis; the grid is symmetric about y = 0) and keeps K and Tr, so the voxel-to-pixel
projection of a flipped item is only approximately consistent with its pixels (it would be exact
for a camera centred on y = 0 looking along x with cx = W / 2; KITTI's is off by a few pixels).
It also flips the image before the crop and the depth after it, which misaligns them by
W - 1220 columns on images wider than 1220 pixels. Here the crop comes first for both, and
flip_geometry chooses the camera of the flipped item:

- "mirror" (default): the flipped item is an exact mirror image of the scene. With
  F = diag(-1, 1, 1, 1) (camera x) and M the reflection y -> 2 c - y about the grid's centre plane
  (c = 0 for KITTI): camera_to_world' = M @ camera_to_world @ F, K' = K with cx' = W - cx
  (records' convention). A voxel and its mirrored voxel then project to pixels u and W - u.
- "original": K and camera_to_world unchanged, as Symphonies.

Randomness: under a mixing expression's combinators the item gets (index, epoch_seed, draw) and
draws its flip from a generator seeded by them (the same in every DataLoader worker); indexed
with a plain int, it draws from the global torch generator.
"""
from __future__ import annotations

from typing import ClassVar, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import check_choices, choice_field
from recon_trainer.data.file_check import DataFile, FileItems
from recon_trainer.data.formats import semantic_kitti as layout_module
from recon_trainer.data.formats.semantic_kitti import KITTI_360, SEMANTIC_KITTI, SSCLayout
from recon_trainer.data.mixing.base import ListedDataset
from recon_trainer.data.mixing.combinators import split_draw
from recon_trainer.data.records import ViewRecord, VoxelRecord
from recon_trainer.data.sampling.sequences import item_generator

SPLIT_NAMES = ("train", "val", "test")
FLIP_GEOMETRIES = ("mirror", "original")
LIST_SOURCES = ("voxels", "images")

Frame = Tuple[str, str]  # (sequence, frame id)


def mirror_voxels(voxels: VoxelRecord, axis: int = 1) -> VoxelRecord:
    """A VoxelRecord with its labels reversed along grid `axis` (same origin and size), and the
    same done to every VoxelRecord among its extras (e.g. target_1_8)."""
    extras = {key: mirror_voxels(value, axis) if isinstance(value, VoxelRecord) else value
              for key, value in voxels.extras.items()}
    return VoxelRecord(voxels.labels.flip(axis), voxels.voxel_size, voxels.voxel_origin.clone(), extras)


def flip_view(view: ViewRecord, geometry: str = "mirror", axis: int = 1) -> ViewRecord:
    """A single view flipped left-right with its extras["voxels"] mirrored along grid `axis`
    (module doc). geometry "mirror": the camera mirrored too, so that the item is an exact mirror
    image of the scene about the grid's centre plane normal to `axis`; "original": K and pose kept."""
    if geometry not in FLIP_GEOMETRIES:
        raise ValueError(f"flip_view: geometry {geometry!r}, expected one of {FLIP_GEOMETRIES}")
    voxels = view.extras["voxels"]
    intrinsics, camera_to_world = view.intrinsics, view.camera_to_world
    if geometry == "mirror":
        width = view.image_size_hw[1]
        intrinsics = intrinsics.clone()
        intrinsics[0, 2] = width * intrinsics[2, 2] - intrinsics[0, 2]
        size = float(voxels.voxel_size_xyz()[axis])
        centre = float(voxels.voxel_origin[axis]) + 0.5 * voxels.grid_shape[axis] * size
        reflect = torch.eye(4, dtype=torch.float64)
        reflect[axis, axis], reflect[axis, 3] = -1.0, 2.0 * centre
        camera_flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
        camera_to_world = (reflect @ camera_to_world.double() @ camera_flip).to(camera_to_world.dtype)
    extras = dict(view.extras)
    extras["voxels"] = mirror_voxels(voxels, axis)
    return ViewRecord(
        image=view.image.flip(-1),
        depth=None if view.depth is None else view.depth.flip(-1),
        depth_kind=view.depth_kind,
        intrinsics=intrinsics,
        camera_to_world=camera_to_world,
        mask_fg=None if view.mask_fg is None else view.mask_fg.flip(-1),
        mask_valid=None if view.mask_valid is None else view.mask_valid.flip(-1),
        sequence=view.sequence,
        frame=view.frame,
        dataset=view.dataset,
        label_type=view.label_type,
        path=view.path,
        extras=extras,
    )


class KittiSSCDataset(ListedDataset):
    """Base of SemanticKITTI and KITTI360 (module doc); LAYOUT names the layout. Not registered."""

    LAYOUT: ClassVar[SSCLayout] = SEMANTIC_KITTI
    PATH_FIELDS: ClassVar[Tuple[str, ...]] = ("data_root", "label_root", "depth_root")
    TAKES_EPOCH_SEED: ClassVar[bool] = True

    data_root: str = ""  # the folder holding the layout's images, voxels and calibration
    label_root: str = ""  # the folder of <seq>/<frame>_1_1.npy and _1_8.npy
    depth_root: str = ""  # the folder of the depth .npy maps; "": no depth
    split: str = choice_field("train", SPLIT_NAMES)  # train, val or test (the official sequence lists)
    sequences: Tuple[str, ...] = ()  # these sequences instead of the split's list
    flip: bool = True  # train split: random horizontal flip with probability 1/2
    flip_geometry: str = choice_field("mirror", FLIP_GEOMETRIES)  # mirror (exact) or original (K, pose kept)
    exact_camera: bool = False  # camera 2's pose with its offset from camera 0 (P2's last column)
    list_from: str = choice_field("voxels", LIST_SOURCES)  # frames with voxels/*.bin, or every image
    frame_stride: int = 1  # every n-th listed frame of each sequence
    max_frames: int = 0  # at most this many frames (after the stride); 0: all
    crop_hw: Tuple[int, ...] = ()  # top-left crop (H, W); (): the layout's (370, 1220) / (376, 1408)
    grid_shape: Tuple[int, ...] = layout_module.GRID_SHAPE  # label grid; smaller for tiny synthetic copies
    with_target_1_8: bool = True  # read the _1_8 labels (target_1_8)

    def __post_init__(self) -> None:
        check_choices(self)
        name = self.label()
        if not self.data_root:
            raise ConfigError(f"{name}.data_root is not set: give the folder holding the {self.LAYOUT.name} images")
        if self.frame_stride < 1 or self.max_frames < 0:
            raise ConfigError(f"{name}: frame_stride must be >= 1 and max_frames >= 0")
        if self.crop_hw and (len(self.crop_hw) != 2 or min(self.crop_hw) < 1):
            raise ConfigError(f"{name}.crop_hw={tuple(self.crop_hw)}: expected (height, width) or ()")
        try:
            layout_module.voxel_size_for(self.grid_shape)
        except ValueError as error:
            raise ConfigError(f"{name}.{error}") from None
        if any(int(n) % layout_module.COARSE_FACTOR for n in self.grid_shape) and self.with_target_1_8:
            raise ConfigError(f"{name}.grid_shape={tuple(self.grid_shape)}: every axis must be a multiple of 8 for "
                              f"target_1_8 (or set with_target_1_8=False)")
        self._calibrations: Dict[str, Dict[str, np.ndarray]] = {}
        super().__post_init__()

    @property
    def labelled(self) -> bool:
        """Whether the split's frames have labels (SemanticKITTI's test split has none)."""
        return self.split not in self.LAYOUT.unlabelled_splits

    def sequence_names(self) -> List[str]:
        """The sequences read: `sequences`, or the split's official list."""
        return [str(s) for s in self.sequences] if self.sequences else list(self.LAYOUT.splits[self.split])

    def _paths(self, sequence: str, frame: str) -> Dict[str, str]:
        return layout_module.frame_paths(self.LAYOUT, self.data_root, self.label_root, self.depth_root, sequence,
                                         frame)

    def list_items(self) -> FileItems[Frame]:
        frames: List[Frame] = []
        for sequence in self.sequence_names():
            try:
                names = layout_module.list_frames(self.LAYOUT, self.data_root, sequence, self.list_from)
            except Exception as error:
                raise ConfigError(f"{self.label()}: {error}") from None
            frames += [(sequence, frame) for frame in names[:: self.frame_stride]]
        if self.max_frames:
            frames = frames[: self.max_frames]
        if not frames:
            raise ConfigError(f"{self.label()}: no frames in sequences {self.sequence_names()} under "
                              f"{self.data_root!r} (list_from={self.list_from!r})")
        return FileItems(frames, [tuple(self._frame_files(*frame)) for frame in frames])

    def _frame_files(self, sequence: str, frame: str) -> List[DataFile]:
        paths = self._paths(sequence, frame)
        files = [DataFile(paths["image"])]
        if paths["calibration"]:
            files.append(DataFile(paths["calibration"], "file"))
        if paths["depth"]:
            files.append(DataFile(paths["depth"], "npy"))
        if self.labelled and self.list_from == "voxels":
            files.append(DataFile(paths["labels"], "npy"))
            if self.with_target_1_8:
                files.append(DataFile(paths["coarse_labels"], "npy"))
        return files

    def calibration(self, sequence: str) -> Dict[str, np.ndarray]:
        """P2 (3, 4) and Tr (4, 4) of a sequence, read once."""
        if sequence not in self._calibrations:
            path = self._paths(sequence, "0")["calibration"]
            self._calibrations[sequence] = layout_module.layout_calibration(self.LAYOUT, path)
        return self._calibrations[sequence]

    def read_frame(self, index: int, flip: bool = False) -> ViewRecord:
        """Frame `index` of the listing, flipped (flip_geometry) when `flip`; extras["flipped"]."""
        sequence, frame = self._listing.items[index]
        labels = "none" if not self.labelled else ("required" if self.list_from == "voxels" else "optional")
        view = layout_module.read_frame(
            self.LAYOUT, self.data_root, self.label_root, self.depth_root, sequence, frame, self.calibration(sequence),
            crop_hw=tuple(self.crop_hw) or None, grid_shape=self.grid_shape, labels=labels,
            with_coarse=self.with_target_1_8, exact_camera=self.exact_camera, dataset=self.label())
        if flip:
            view = flip_view(view, self.flip_geometry)
        view.extras["flipped"] = bool(flip)
        return view

    def read_item(self, index: int) -> ViewRecord:
        return self.read_frame(index)

    def __getitem__(self, index: Union[int, Tuple[int, ...]]) -> ViewRecord:
        position, seed, draw = split_draw(index)
        if not 0 <= position < len(self):
            raise IndexError(f"{self.label()}: index {position} out of range [0, {len(self)})")
        flip = False
        if self.flip and self.split == "train":
            generator = item_generator(seed, draw) if isinstance(index, tuple) else None
            flip = bool(torch.rand((), generator=generator) < 0.5)
        return self.read_frame(position, flip)

    def frames(self) -> Sequence[Frame]:
        """(sequence, frame id) of every item."""
        return list(self._listing.items)


@registry.register
class SemanticKITTI(KittiSSCDataset):
    """SemanticKITTI semantic scene completion (module doc), 20 classes."""

    LAYOUT: ClassVar[SSCLayout] = SEMANTIC_KITTI


@registry.register
class KITTI360(KittiSSCDataset):
    """SSCBench-KITTI-360 semantic scene completion (module doc), 19 classes; every split labelled."""

    LAYOUT: ClassVar[SSCLayout] = KITTI_360
    EXPRESSION_ALIASES: ClassVar[Tuple[str, ...]] = ("SSCBenchKITTI360",)

