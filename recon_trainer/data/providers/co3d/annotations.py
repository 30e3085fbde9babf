"""CO3D annotation files: the frame and sequence records, set lists and eval batches, with validation.

Files of one category folder `<dataset_root>/<category>/` (paths inside them are relative to
dataset_root, e.g. "apple/110_13051_23361/images/frame000001.jpg"):

- `frame_annotations.jgz`: gzip-compressed JSON list of frame records:
    {"sequence_name": str, "frame_number": int (0-based within the sequence),
     "frame_timestamp": float (seconds from the video start),
     "image": {"path": str (JPEG), "size": [H, W]},
     "depth": {"path": str (PNG), "scale_adjustment": float, "mask_path": str or null} or null,
     "mask": {"path": str (PNG), "mass": float (soft foreground pixel count) or null} or null,
     "viewpoint": {"R": 3x3, "T": [3], "focal_length": [2], "principal_point": [2],
                   "intrinsics_format": "ndc_norm_image_bounds" (v1, the default) or "ndc_isotropic" (v2)}
                  or null,
     "meta": object or null, "camera_name": str or null (optional)}
  R and T are pytorch3d's (row vectors: X_view = X_world @ R + T). With "ndc_norm_image_bounds"
  the image spans [-1, 1] along both axes (so x and y scale differently); with "ndc_isotropic" the
  shorter side spans [-1, 1] (pytorch3d >= 0.5 NDC).
- `sequence_annotations.jgz`: gzip JSON list of {"sequence_name": str, "category": str,
  "video": {"path", "length"} or null, "point_cloud": {"path", "quality_score", "n_points"} or null,
  "viewpoint_quality_score": float or null}.
- v1 `set_lists.json`: {"train_known": [[sequence_name, frame_number, image_path], ...],
  "train_unseen": [...], "test_known": [...], "test_unseen": [...]}.
- v2 `set_lists/set_lists_<subset>.json`: {"train": [...], "val": [...], "test": [...]}, same entries.
- v1 `eval_batches_<task>.json` / v2 `eval_batches/eval_batches_<subset>.json`: a list of batches,
  each a list of [sequence_name, frame_number, image_path] (or [sequence_name, frame_number]);
  the first entry is the target, the others are known source views.

Blobs: images are JPEGs; masks are 8-bit PNGs holding P(foreground) * 255; depths are 16-bit PNGs
whose uint16 values are the bits of float16 numbers, depth = value * scale_adjustment (non-finite
-> 0); depth masks are PNGs, nonzero = valid depth.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from recon_trainer.errors import DataFileError

INTRINSICS_FORMATS = ("ndc_norm_image_bounds", "ndc_isotropic")
V1_SET_NAMES = ("train_known", "train_unseen", "test_known", "test_unseen")
V2_SET_NAMES = ("train", "val", "test")

# A frame of a set list or eval batch: (sequence_name, frame_number, image_path or None).
FrameRef = Tuple[str, int, Optional[str]]


class Co3dFormatError(DataFileError):
    """A CO3D-layout file is missing or malformed; the message names the file, entry and field."""


@dataclasses.dataclass
class ImageAnnotation:
    path: str  # JPEG path relative to dataset_root
    size: Tuple[int, int]  # (H, W) in pixels


@dataclasses.dataclass
class DepthAnnotation:
    path: str  # 16-bit PNG of float16 bits, relative to dataset_root
    scale_adjustment: float  # depth = png value * scale_adjustment
    mask_path: Optional[str] = None  # PNG of the valid-depth mask, relative to dataset_root


@dataclasses.dataclass
class MaskAnnotation:
    path: str  # PNG of P(foreground) * 255, relative to dataset_root
    mass: Optional[float] = None  # sum of P(foreground) over the pixels


@dataclasses.dataclass
class ViewpointAnnotation:
    R: Tuple[Tuple[float, float, float], ...]  # 3x3, X_view = X_world @ R + T
    T: Tuple[float, float, float]
    focal_length: Tuple[float, float]  # (fx, fy) in the NDC of intrinsics_format
    principal_point: Tuple[float, float]  # (px, py) in the NDC of intrinsics_format
    intrinsics_format: str = "ndc_norm_image_bounds"  # or "ndc_isotropic"


@dataclasses.dataclass
class FrameAnnotation:
    sequence_name: str
    frame_number: int  # 0-based within the sequence
    frame_timestamp: float  # seconds from the video start
    image: ImageAnnotation
    depth: Optional[DepthAnnotation] = None
    mask: Optional[MaskAnnotation] = None
    viewpoint: Optional[ViewpointAnnotation] = None
    meta: Optional[Dict[str, Any]] = None
    camera_name: Optional[str] = None


@dataclasses.dataclass
class VideoAnnotation:
    path: str
    length: float  # seconds


@dataclasses.dataclass
class PointCloudAnnotation:
    path: str  # PLY of points, relative to dataset_root
    quality_score: float  # larger is better
    n_points: Optional[int] = None


@dataclasses.dataclass
class SequenceAnnotation:
    sequence_name: str
    category: str
    video: Optional[VideoAnnotation] = None
    point_cloud: Optional[PointCloudAnnotation] = None
    viewpoint_quality_score: Optional[float] = None  # larger is better


class _Checker:
    """Reads typed values from one JSON object; errors name the file, the entry and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, expected: str, value: Any) -> Co3dFormatError:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return Co3dFormatError(f"{self.where}: field '{field}' must be {expected}, got {shown}")

    def obj(self, value: Any, field: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, "an object", value)
        return value

    def get(self, record: Dict[str, Any], key: str, prefix: str, required: bool = True) -> Any:
        if key not in record or (required and record[key] is None):
            if required:
                raise Co3dFormatError(f"{self.where}: field '{prefix}{key}' is missing")
            return None
        return record[key]

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, "a non-empty string", value)
        return value

    def integer(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, "an integer", value)
        return value

    def number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(field, "a finite number", value)
        return float(value)

    def numbers(self, value: Any, field: str, n: int) -> Tuple[float, ...]:
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise self.fail(field, f"a list of {n} numbers", value)
        return tuple(self.number(v, f"{field}[{i}]") for i, v in enumerate(value))


def _frame_from_json(record: Any, check: _Checker) -> FrameAnnotation:
    record = check.obj(record, "<entry>")
    image = check.obj(check.get(record, "image", ""), "image")
    size = check.get(image, "size", "image.")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise check.fail("image.size", "[H, W], two positive integers", size)
    frame = FrameAnnotation(
        sequence_name=check.string(check.get(record, "sequence_name", ""), "sequence_name"),
        frame_number=check.integer(check.get(record, "frame_number", ""), "frame_number"),
        frame_timestamp=check.number(check.get(record, "frame_timestamp", ""), "frame_timestamp"),
        image=ImageAnnotation(check.string(check.get(image, "path", "image."), "image.path"), (size[0], size[1])),
    )
    depth = check.get(record, "depth", "", required=False)
    if depth is not None:
        depth = check.obj(depth, "depth")
        mask_path = check.get(depth, "mask_path", "depth.", required=False)
        frame.depth = DepthAnnotation(
            path=check.string(check.get(depth, "path", "depth."), "depth.path"),
            scale_adjustment=check.number(check.get(depth, "scale_adjustment", "depth."), "depth.scale_adjustment"),
            mask_path=None if mask_path is None else check.string(mask_path, "depth.mask_path"),
        )
    mask = check.get(record, "mask", "", required=False)
    if mask is not None:
        mask = check.obj(mask, "mask")
        mass = check.get(mask, "mass", "mask.", required=False)
        frame.mask = MaskAnnotation(
            path=check.string(check.get(mask, "path", "mask."), "mask.path"),
            mass=None if mass is None else check.number(mass, "mask.mass"),
        )
    viewpoint = check.get(record, "viewpoint", "", required=False)
    if viewpoint is not None:
        frame.viewpoint = _viewpoint_from_json(check.obj(viewpoint, "viewpoint"), check)
    meta = check.get(record, "meta", "", required=False)
    frame.meta = None if meta is None else check.obj(meta, "meta")
    camera_name = check.get(record, "camera_name", "", required=False)
    frame.camera_name = None if camera_name is None else check.string(camera_name, "camera_name")
    return frame


def _viewpoint_from_json(viewpoint: Dict[str, Any], check: _Checker) -> ViewpointAnnotation:
    R = check.get(viewpoint, "R", "viewpoint.")
    if not isinstance(R, (list, tuple)) or len(R) != 3:
        raise check.fail("viewpoint.R", "a 3x3 list of numbers", R)
    intrinsics_format = viewpoint.get("intrinsics_format", "ndc_norm_image_bounds")
    if intrinsics_format not in INTRINSICS_FORMATS:
        raise check.fail("viewpoint.intrinsics_format", f"one of {list(INTRINSICS_FORMATS)}", intrinsics_format)
    focal = check.numbers(check.get(viewpoint, "focal_length", "viewpoint."), "viewpoint.focal_length", 2)
    if min(focal) <= 0.0:
        raise check.fail("viewpoint.focal_length", "two positive numbers", list(focal))
    return ViewpointAnnotation(
        R=tuple(check.numbers(row, f"viewpoint.R[{i}]", 3) for i, row in enumerate(R)),
        T=check.numbers(check.get(viewpoint, "T", "viewpoint."), "viewpoint.T", 3),
        focal_length=focal,
        principal_point=check.numbers(
            check.get(viewpoint, "principal_point", "viewpoint."), "viewpoint.principal_point", 2
        ),
        intrinsics_format=intrinsics_format,
    )


def _sequence_from_json(record: Any, check: _Checker) -> SequenceAnnotation:
    record = check.obj(record, "<entry>")
    sequence = SequenceAnnotation(
        sequence_name=check.string(check.get(record, "sequence_name", ""), "sequence_name"),
        category=check.string(check.get(record, "category", ""), "category"),
    )
    video = check.get(record, "video", "", required=False)
    if video is not None:
        video = check.obj(video, "video")
        sequence.video = VideoAnnotation(
            path=check.string(check.get(video, "path", "video."), "video.path"),
            length=check.number(check.get(video, "length", "video."), "video.length"),
        )
    cloud = check.get(record, "point_cloud", "", required=False)
    if cloud is not None:
        cloud = check.obj(cloud, "point_cloud")
        n_points = check.get(cloud, "n_points", "point_cloud.", required=False)
        sequence.point_cloud = PointCloudAnnotation(
            path=check.string(check.get(cloud, "path", "point_cloud."), "point_cloud.path"),
            quality_score=check.number(check.get(cloud, "quality_score", "point_cloud."), "point_cloud.quality_score"),
            n_points=None if n_points is None else check.integer(n_points, "point_cloud.n_points"),
        )
    score = check.get(record, "viewpoint_quality_score", "", required=False)
    sequence.viewpoint_quality_score = None if score is None else check.number(score, "viewpoint_quality_score")
    return sequence


def _entry_label(record: Any) -> str:
    """' (sequence 'x', frame 3)' from whatever the raw record has, for error messages."""
    if not isinstance(record, dict):
        return ""
    parts = []
    if isinstance(record.get("sequence_name"), str):
        parts.append(f"sequence {record['sequence_name']!r}")
    if isinstance(record.get("frame_number"), int):
        parts.append(f"frame {record['frame_number']}")
    return f" ({', '.join(parts)})" if parts else ""


def _read_json(path: str, gzipped: bool) -> Any:
    if not os.path.isfile(path):
        raise Co3dFormatError(f"CO3D file {path} not found; is dataset_root the folder holding the category folders?")
    try:
        if gzipped:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return json.load(f)
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as error:
        kind = "gzip-compressed JSON" if gzipped else "JSON"
        raise Co3dFormatError(f"{path}: not valid {kind}: {error}") from error


def _parse_list(path: str, parse) -> list:
    records = _read_json(path, gzipped=True)
    if not isinstance(records, list) or not records:
        raise Co3dFormatError(f"{path}: expected a non-empty JSON list of records, got {type(records).__name__}")
    return [parse(record, _Checker(f"{path}: entry {i}{_entry_label(record)}")) for i, record in enumerate(records)]


def load_frame_annotations(path: str) -> List[FrameAnnotation]:
    """The frame records of a `frame_annotations.jgz` file (see the module doc)."""
    return _parse_list(path, _frame_from_json)


def load_sequence_annotations(path: str) -> List[SequenceAnnotation]:
    """The sequence records of a `sequence_annotations.jgz` file (see the module doc)."""
    return _parse_list(path, _sequence_from_json)


def _frame_ref(entry: Any, where: str) -> FrameRef:
    ok = isinstance(entry, (list, tuple)) and len(entry) in (2, 3)
    ok = ok and isinstance(entry[0], str) and isinstance(entry[1], int) and not isinstance(entry[1], bool)
    ok = ok and (len(entry) == 2 or isinstance(entry[2], str))
    if not ok:
        raise Co3dFormatError(f"{where}: expected [sequence_name, frame_number, image_path], got {entry!r}")
    return entry[0], entry[1], entry[2] if len(entry) == 3 else None


def load_set_lists(path: str, set_names: Sequence[str]) -> Dict[str, List[FrameRef]]:
    """{set name: frames} of a set-list file; every name of `set_names` must be present."""
    data = _read_json(path, gzipped=False)
    if not isinstance(data, dict):
        raise Co3dFormatError(f"{path}: expected an object mapping set names {list(set_names)} to frame lists")
    missing = [name for name in set_names if name not in data]
    if missing:
        raise Co3dFormatError(f"{path}: set list(s) {missing} missing; expected keys {list(set_names)}")
    sets = {}
    for name, frames in data.items():
        if not isinstance(frames, list):
            raise Co3dFormatError(f"{path}: '{name}' must be a list of [sequence_name, frame_number, image_path]")
        sets[name] = [_frame_ref(entry, f"{path}: '{name}' entry {i}") for i, entry in enumerate(frames)]
    return sets


def load_eval_batches(path: str) -> List[List[FrameRef]]:
    """The batches of an eval-batches file: target first, then the source views."""
    data = _read_json(path, gzipped=False)
    if not isinstance(data, list):
        raise Co3dFormatError(f"{path}: expected a list of batches, each a list of [sequence_name, frame_number, path]")
    batches = []
    for b, batch in enumerate(data):
        if not isinstance(batch, list) or not batch:
            raise Co3dFormatError(f"{path}: batch {b} must be a non-empty list of frames, got {batch!r}")
        batches.append([_frame_ref(entry, f"{path}: batch {b} entry {i}") for i, entry in enumerate(batch)])
    return batches


def to_json(annotation: Any) -> Any:
    """A frame / sequence annotation (or a list of them) as plain JSON values."""
    if isinstance(annotation, list):
        return [to_json(a) for a in annotation]
    record = dataclasses.asdict(annotation)
    if isinstance(annotation, FrameAnnotation) and annotation.camera_name is None:
        del record["camera_name"]  # the released files have no such key
    return record


def write_jgz(path: str, records: Any) -> None:
    """Write JSON values gzip-compressed (the `.jgz` files)."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(records, f)
