"""JsonIndexDataset: the frames of CO3D-layout annotation files, loaded lazily from disk.

Construction reads the annotation files (format: annotations.py), applies the filters in
Implicitron's order (empty masks, subsets, categories, picked / excluded sequences, the first
limit_sequences_to sequences, n_frames_per_sequence random frames per sequence, the first
limit_to frames) and resolves `eval_batch_index` into `eval_batches`. Indexing loads one frame:
image, foreground mask, depth and depth mask, box-cropped around the mask (crop.py) and resized
into image_height x image_width with zero padding at the bottom / right (`mask_crop` marks the
image pixels), and its camera with the intrinsics adjusted to the output pixels.

`read_record` reads a frame as a ViewRecord (data/records.py); the FrameData items are made from it
(frame_data.view_frame_data). The record: image (3, H, W) (times the mask with mask_images); mask_fg: the
soft foreground probability (with load_masks); depth: the depth (times the mask with mask_depths)
where the depth mask is set, 0 (unknown) elsewhere, depth_kind "relative" (the SfM reconstruction's
scale, one per sequence); mask_valid: the image pixels (not the padding); intrinsics in output
pixels and the OpenCV camera_to_world of the annotated viewpoint (None without one); sequence,
frame = frame_number, path = the image file, label type "sfm"; extras: "frame_timestamp" (float,
seconds), "category", "frame_type", "depth_mask" ((H, W) bool, the depth-mask PNG's or the image
pixels; with depth) and the FrameData meta keys (META_KEYS). The image is always read for the record;
load_images=False leaves it out of the FrameData item.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import os
import random
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple, Union

import torch

from recon_trainer.config import ReplaceableBase, registry
from recon_trainer.data import crop
from recon_trainer.data.datasets import FrameDataset
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.frame_data import FrameData, view_frame_data
from recon_trainer.data.providers.co3d import blobs
from recon_trainer.data.providers.co3d.annotations import (
    Co3dFormatError,
    FrameAnnotation,
    FrameRef,
    SequenceAnnotation,
    load_frame_annotations,
    load_sequence_annotations,
    load_set_lists,
)
from recon_trainer.data.providers.co3d.viewpoints import camera_from_viewpoint
from recon_trainer.data.records import ViewRecord, opencv_view_from_cameras

# Record extras that are the FrameData items' meta (as Implicitron's loader fills it).
META_KEYS = ("image_size_hw_original", "bbox_xywh", "crop_bbox_xywh", "sequence_point_cloud")


@functools.lru_cache(maxsize=8)
def _cached(loader, path: str, mtime_ns: int) -> tuple:
    return tuple(loader(path))


def _load_cached(loader, path: str) -> list:
    """Parsed annotation records, shared between datasets reading the same unchanged file."""
    if not os.path.isfile(path):
        raise Co3dFormatError(f"CO3D annotation file {path} not found")
    return list(_cached(loader, path, os.stat(path).st_mtime_ns))


def _sequence_seed(sequence_name: str) -> int:
    return int(hashlib.sha1(sequence_name.encode("utf-8")).hexdigest(), 16)


@registry.register
class JsonIndexDataset(FrameDataset, ReplaceableBase):
    """CO3D-layout frames (module doc); items are single-frame FrameData, frame_type from the set list."""

    frame_annotations_file: str = ""  # path of frame_annotations.jgz
    sequence_annotations_file: str = ""  # path of sequence_annotations.jgz
    subset_lists_file: str = ""  # path of a v1 set_lists.json ("" = no frame types from a set list)
    subsets: Optional[List[str]] = None  # keep only frames of these set lists (e.g. ["train_known"])
    limit_to: int = 0  # keep the first limit_to frames after the other filters (0 = all)
    limit_sequences_to: int = 0  # keep the first limit_sequences_to sequences (0 = all)
    pick_sequence: Tuple[str, ...] = ()  # keep only these sequences (empty = all)
    exclude_sequence: Tuple[str, ...] = ()  # drop these sequences
    limit_category_to: Tuple[str, ...] = ()  # keep only sequences of these categories (empty = all)
    dataset_root: str = ""  # folder the paths inside the annotation files are relative to
    load_images: bool = True  # put image_rgb in the items (the image is read for the record either way)
    load_depths: bool = True  # load depth_map
    load_depth_masks: bool = True  # load depth_mask from the depth-mask PNGs (else 1 on the image pixels)
    load_masks: bool = True  # load fg_probability
    load_point_clouds: bool = False  # load the sequence's point cloud into meta["sequence_point_cloud"] (P, 3)
    max_points: int = 0  # random subset of at most this many points (0 = all)
    mask_images: bool = False  # multiply image_rgb by fg_probability (black background)
    mask_depths: bool = False  # multiply depth_map by fg_probability
    image_height: Optional[int] = 800  # output height in pixels; null (with image_width) = no resizing
    image_width: Optional[int] = 800  # output width in pixels; the aspect ratio is kept, the rest is padding
    box_crop: bool = True  # crop around the foreground mask's bounding box before resizing
    box_crop_mask_thr: float = 0.4  # mask threshold of the bounding box (lowered when nothing passes)
    box_crop_context: float = 0.3  # the crop box grows by this fraction of the bounding box size
    remove_empty_masks: bool = True  # drop frames without a mask or with mask mass <= 1 pixel
    n_frames_per_sequence: int = -1  # keep at most this many random frames per sequence (-1 = all)
    seed: int = 0  # seeds the n_frames_per_sequence choice (with a hash of the sequence name)
    sort_frames: bool = False  # order frames by sequence name, then timestamp
    eval_batches: Any = None  # test batches as dataset indices (set by the provider)
    eval_batch_index: Any = None  # test batches as [sequence_name, frame_number(, image_path)] lists

    def __post_init__(self) -> None:
        if (self.image_height is None) != (self.image_width is None):
            raise ValueError("JsonIndexDataset: set both image_height and image_width, or neither")
        frames = _load_cached(load_frame_annotations, self.frame_annotations_file)
        sequences = _load_cached(load_sequence_annotations, self.sequence_annotations_file)
        self._sequences: Dict[str, SequenceAnnotation] = {s.sequence_name: s for s in sequences}
        for i, frame in enumerate(frames):
            if frame.sequence_name not in self._sequences:
                raise Co3dFormatError(
                    f"{self.frame_annotations_file}: entry {i} (sequence {frame.sequence_name!r}, frame "
                    f"{frame.frame_number}): the sequence is not in {self.sequence_annotations_file}"
                )
        if self.sort_frames:
            frames = sorted(frames, key=lambda f: (f.sequence_name, f.frame_timestamp))
        self._frames: List[FrameAnnotation] = frames
        self._types: List[Optional[str]] = self._subset_types(frames)
        self._filter()
        if self.eval_batch_index is not None:
            if self.eval_batches is not None:
                raise ValueError("JsonIndexDataset: set eval_batch_index or eval_batches, not both")
            self.eval_batches = self.frame_refs_to_indices(self.eval_batch_index)

    # --- index ----------------------------------------------------------------------------

    def _subset_types(self, frames: Sequence[FrameAnnotation]) -> List[Optional[str]]:
        if not self.subset_lists_file:
            return [None] * len(frames)
        sets = load_set_lists(self.subset_lists_file, ())
        by_frame = {}
        for name, refs in sets.items():
            for sequence_name, frame_number, path in refs:
                by_frame[(sequence_name, frame_number)] = (name, path)
        types = []
        for frame in frames:
            name, path = by_frame.get((frame.sequence_name, frame.frame_number), (None, None))
            if path is not None and os.path.normpath(path) != os.path.normpath(frame.image.path):
                raise Co3dFormatError(
                    f"{self.subset_lists_file}: sequence {frame.sequence_name!r} frame {frame.frame_number} has "
                    f"image path {path!r}, but {self.frame_annotations_file} says {frame.image.path!r}"
                )
            types.append(name)
        return types

    def _keep(self, keep: Sequence[bool]) -> None:
        self._frames = [f for f, k in zip(self._frames, keep) if k]
        self._types = [t for t, k in zip(self._types, keep) if k]

    def _filter(self) -> None:
        if self.remove_empty_masks:
            for frame in self._frames:
                if frame.mask is not None and frame.mask.mass is None:
                    raise Co3dFormatError(
                        f"{self.frame_annotations_file}: sequence {frame.sequence_name!r} frame "
                        f"{frame.frame_number}: remove_empty_masks needs 'mask.mass' on every frame"
                    )
            self._keep([f.mask is not None and f.mask.mass > 1.0 for f in self._frames])
        if self.subsets:
            if not self.subset_lists_file:
                raise ValueError("JsonIndexDataset: subsets are given but subset_lists_file is empty")
            self._keep([t in self.subsets for t in self._types])
            if not self._frames:
                raise ValueError(f"JsonIndexDataset: no frames in the subsets {list(self.subsets)}")
        names = list(dict.fromkeys(f.sequence_name for f in self._frames))
        if self.limit_category_to:
            names = [n for n in names if self._sequences[n].category in self.limit_category_to]
        if self.pick_sequence:
            names = [n for n in names if n in self.pick_sequence]
        names = [n for n in names if n not in self.exclude_sequence]
        if self.limit_sequences_to > 0:
            names = names[: self.limit_sequences_to]
        kept = set(names)
        self._keep([f.sequence_name in kept for f in self._frames])
        if self.n_frames_per_sequence > 0:
            chosen = set()
            for name, indices in self._sequence_indices().items():
                rng = random.Random(_sequence_seed(name) + self.seed)
                chosen.update(rng.sample(indices, min(len(indices), self.n_frames_per_sequence)))
            self._keep([i in chosen for i in range(len(self._frames))])
        if 0 < self.limit_to < len(self._frames):
            self._keep([i < self.limit_to for i in range(len(self._frames))])

    def _sequence_indices(self) -> Dict[str, List[int]]:
        indices: Dict[str, List[int]] = {}
        for i, frame in enumerate(self._frames):
            indices.setdefault(frame.sequence_name, []).append(i)
        return indices

    def frame_refs_to_indices(
        self, batches: Sequence[Sequence[Sequence[Any]]], remove_missing: bool = False
    ) -> List[List[int]]:
        """Dataset indices of batches of [sequence_name, frame_number(, image_path)] entries.

        A frame not in the dataset is an error, or with remove_missing it is dropped (and so is
        a batch left empty).
        """
        index = {(f.sequence_name, f.frame_number): i for i, f in enumerate(self._frames)}
        out = []
        for b, batch in enumerate(batches):
            indices = []
            for entry in batch:
                found = index.get((entry[0], entry[1]))
                if found is None and not remove_missing:
                    raise Co3dFormatError(
                        f"eval batch {b}: sequence {entry[0]!r} frame {entry[1]} is not in this dataset "
                        f"({len(self)} frames of {len(self._sequence_indices())} sequences after filtering)"
                    )
                if found is not None:
                    indices.append(found)
            if indices:
                out.append(indices)
        return out

    def subset_from_frame_index(
        self, frame_refs: Sequence[FrameRef], frame_type: Union[str, Sequence[str]]
    ) -> "JsonIndexDataset":
        """A dataset of the listed frames that this one holds (others are skipped), in list order.

        Each frame's type is its annotation's meta["frame_type"] if set, else `frame_type` (one
        for all, or one per entry of frame_refs).
        """
        types = [frame_type] * len(frame_refs) if isinstance(frame_type, str) else list(frame_type)
        index = {(f.sequence_name, f.frame_number): i for i, f in enumerate(self._frames)}
        picked = [(index[(r[0], r[1])], t) for r, t in zip(frame_refs, types) if (r[0], r[1]) in index]
        subset = copy.copy(self)
        subset._frames = [self._frames[i] for i, _ in picked]
        subset._types = [(self._frames[i].meta or {}).get("frame_type", t) for i, t in picked]
        subset.eval_batches = None
        subset.eval_batch_index = None
        return subset

    def join(self, others: Sequence["JsonIndexDataset"]) -> "JsonIndexDataset":
        """A dataset of this one's frames followed by the others' (eval batches re-indexed)."""
        joined = copy.copy(self)
        joined._frames, joined._types = list(self._frames), list(self._types)
        joined._sequences = dict(self._sequences)
        has_batches = [d.eval_batches is not None for d in [self, *others]]
        if any(has_batches) and not all(has_batches):
            raise ValueError("JsonIndexDataset.join: either all or none of the datasets must have eval_batches")
        batches = None if self.eval_batches is None else [list(b) for b in self.eval_batches]
        for other in others:
            offset = len(joined._frames)
            joined._frames += other._frames
            joined._types += other._types
            joined._sequences.update(other._sequences)
            if batches is not None:
                batches += [[offset + i for i in b] for b in other.eval_batches]
        joined.eval_batches = batches
        return joined

    # --- FrameDataset ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._frames)

    def sequence_names(self) -> List[str]:
        return [f.sequence_name for f in self._frames]

    def frame_types(self) -> List[str]:
        return [t or "" for t in self._types]

    def item_files(self, index: int) -> Tuple[DataFile, ...]:
        """The files frame `index` reads (CheckableDataset)."""
        return tuple(DataFile(path) for path in self._paths(self._frames[index]).values())

    def drop_items(self, indices: Collection[int]) -> None:
        """Remove these frames (CheckableDataset); eval batches are re-indexed, those whose target
        is dropped are removed and dropped source frames leave their batches."""
        dropped = set(indices)
        kept = [i not in dropped for i in range(len(self._frames))]
        new_index = {old: new for new, old in enumerate(i for i, keep in enumerate(kept) if keep)}
        self._keep(kept)
        if self.eval_batches is not None:
            self.eval_batches = [[new_index[i] for i in batch if i in new_index]
                                 for batch in self.eval_batches if batch[0] in new_index]

    def frame_annotation(self, index: int) -> FrameAnnotation:
        """The annotation record of frame `index` (no file is read)."""
        return self._frames[index]

    def sequence_annotation(self, sequence_name: str) -> SequenceAnnotation:
        return self._sequences[sequence_name]

    def __getitem__(self, index: int) -> FrameData:
        view = self.read_record(index)
        extras = view.extras
        fields: Dict[str, Any] = {}
        if not self.load_images:
            fields["image_rgb"] = None
        if view.depth is not None:
            fields["depth_mask"] = extras["depth_mask"].float()[None]
        return view_frame_data(
            view,
            extras["frame_type"],
            frame_number=torch.tensor(view.frame, dtype=torch.long),
            frame_timestamp=torch.tensor(extras["frame_timestamp"], dtype=torch.float32),
            sequence_category=extras["category"],
            meta={key: extras[key] for key in META_KEYS if key in extras},
            **fields,
        )

    def read_record(self, index: int) -> ViewRecord:
        """Frame `index` as a ViewRecord (module doc), cropped and resized as the items are."""
        if not 0 <= index < len(self._frames):
            raise IndexError(f"JsonIndexDataset: index {index} out of range 0..{len(self._frames) - 1}")
        entry = self._frames[index]
        paths = self._paths(entry)
        size_hw = tuple(entry.image.size)
        out_hw = None if self.image_height is None else (self.image_height, self.image_width)
        extras: Dict[str, Any] = {
            "frame_timestamp": float(entry.frame_timestamp),
            "category": self._sequences[entry.sequence_name].category,
            "frame_type": self._types[index] or "",
            "image_size_hw_original": list(size_hw),
        }

        mask = None
        if "mask" in paths:
            mask = self._load_checked(blobs.load_mask, paths["mask"], size_hw, entry)
        box = None
        if self.box_crop and mask is not None:
            bbox = crop.bbox_from_mask(mask[0], self.box_crop_mask_thr)
            if bbox is None:
                bbox = (0, 0, size_hw[1], size_hw[0])
            box = crop.crop_box_with_context(bbox, self.box_crop_context, size_hw)
            extras["bbox_xywh"] = list(bbox)
            extras["crop_bbox_xywh"] = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
        cropped_hw = size_hw if box is None else (box[3] - box[1], box[2] - box[0])

        def prepare(image: torch.Tensor, mode: str) -> torch.Tensor:
            if box is not None:
                image = crop.crop_image(image, crop.scale_box(box, size_hw, tuple(image.shape[-2:])))
            if tuple(image.shape[-2:]) != cropped_hw and mode == "nearest":  # e.g. depth at another resolution
                image = torch.nn.functional.interpolate(image[None], size=cropped_hw, mode="nearest-exact")[0]
            return crop.resize_and_pad(image, out_hw, mode)[0]

        mask_crop = crop.resize_and_pad(torch.ones(1, *cropped_hw), out_hw, "nearest")[1]
        fg = prepare(mask, "nearest") if mask is not None and self.load_masks else None
        image = self._load_checked(blobs.load_image, paths["image"], size_hw, entry)
        image = prepare(image, "bilinear") * (self._fg_for("mask_images", fg, entry))
        depth = None
        if "depth" in paths:
            depth = prepare(blobs.load_depth(paths["depth"], entry.depth.scale_adjustment), "nearest")
            depth = depth * self._fg_for("mask_depths", fg, entry)
            if "depth_mask" in paths:
                depth_mask = prepare(blobs.load_depth_mask(paths["depth_mask"]), "nearest")[0] > 0.5
            else:
                depth_mask = mask_crop[0] > 0.5
            extras["depth_mask"] = depth_mask
            depth = torch.where(depth_mask, depth[0], torch.zeros_like(depth[0]))
        intrinsics = camera_to_world = None
        if entry.viewpoint is not None:
            camera = crop.crop_resize_camera(camera_from_viewpoint(entry.viewpoint, size_hw), size_hw, box, out_hw)
            intrinsics, camera_to_world = (t[0] for t in opencv_view_from_cameras(camera))
        if "point_cloud" in paths:
            extras["sequence_point_cloud"] = self._point_cloud(paths["point_cloud"])
        return ViewRecord(
            image=image,
            depth=depth,
            depth_kind="relative",
            intrinsics=intrinsics,
            camera_to_world=camera_to_world,
            mask_fg=None if fg is None else fg[0],
            mask_valid=mask_crop[0] > 0.5,
            sequence=entry.sequence_name,
            frame=entry.frame_number,
            label_type="sfm",
            path=os.path.join(self.dataset_root, entry.image.path),
            extras=extras,
        )

    def _paths(self, entry: FrameAnnotation) -> Dict[str, str]:
        """The files indexing reads for a frame, under dataset_root, by kind: image, mask (loaded
        for fg_probability or the box crop), depth, depth_mask, point_cloud (the sequence's PLY)."""
        depth = entry.depth if self.load_depths else None
        point_cloud = self._sequences[entry.sequence_name].point_cloud if self.load_point_clouds else None
        relative = {
            "image": entry.image.path,
            "mask": entry.mask.path if entry.mask is not None and (self.load_masks or self.box_crop) else None,
            "depth": None if depth is None else depth.path,
            "depth_mask": depth.mask_path if depth is not None and self.load_depth_masks else None,
            "point_cloud": None if point_cloud is None else point_cloud.path,
        }
        return {kind: os.path.join(self.dataset_root, path) for kind, path in relative.items() if path is not None}

    def _fg_for(self, flag: str, fg: Optional[torch.Tensor], entry: FrameAnnotation) -> Any:
        """fg_probability when the `flag` field is set (it needs masks), else 1."""
        if not getattr(self, flag):
            return 1.0
        if fg is None:
            raise ValueError(
                f"JsonIndexDataset.{flag} needs foreground masks (load_masks=True and a mask annotation); "
                f"sequence {entry.sequence_name!r} frame {entry.frame_number} has none"
            )
        return fg

    def _load_checked(self, loader, path: str, size_hw: Tuple[int, int], entry: FrameAnnotation):
        image = loader(path)
        if tuple(image.shape[-2:]) != tuple(size_hw):
            raise Co3dFormatError(
                f"{path}: size {tuple(image.shape[-2:])} differs from the annotated image.size {tuple(size_hw)} "
                f"(sequence {entry.sequence_name!r}, frame {entry.frame_number})"
            )
        return image

    def _point_cloud(self, path: str) -> torch.Tensor:
        """(P, 3) points of a sequence's PLY file, at most max_points of them (seeded subset)."""
        import trimesh  # imported here: slow to import and only needed for point clouds

        try:
            points = torch.from_numpy(trimesh.load(path).vertices).float()
        except Exception as error:  # trimesh raises many types (KeyError, ValueError, ...) for a bad file
            raise Co3dFormatError(f"cannot read point cloud {path}: {type(error).__name__}: {error}") from error
        if 0 < self.max_points < len(points):
            generator = torch.Generator().manual_seed(self.seed)
            points = points[torch.randperm(len(points), generator=generator)[: self.max_points]]
        return points

