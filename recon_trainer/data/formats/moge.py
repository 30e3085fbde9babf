"""MoGe's training-data layout and its log-encoded 16-bit depth PNG.

Layout: `<dataset>/.index.txt` lists instance folders (one relative path a line); each instance
holds `image.jpg` (RGB), `depth.png` (below) and `meta.json` with `{"intrinsics": 3x3}` in
normalised units (fx, cx per image width; fy, cy per image height; cx, cy ~ 0.5).

Depth PNG (MoGe's write_depth / read_depth): uint16 codes with the range in the PNG's text chunks
"near" and "far" (str(float)). Finite depth d is clipped to [near, far] and stored as
`code = 1 + round(clip(log(d / near) / log(far / near), 0, 1) * 65533)` (1..65534); NaN
(unknown) is 0 and +inf (infinitely far, sky) is 65535. `near = max(min finite depth, 1e-5)`,
`far = max(near * 1.1, min(max finite depth, near * max_range))`. Decoding inverts it:
`d = near ** (1 - t) * far ** t`, t = (code - 1) / 65533, times the legacy "unit" text field when
present. One code step is a factor (far / near) ** (1 / 65533): a relative error below 1.8e-5
at far / near = 10, 8.8e-5 at the largest range 1e5.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from recon_trainer.data.records import ViewRecord, intrinsics_from_normalized
from recon_trainer.errors import DataFileError

INDEX_FILE = ".index.txt"
MAX_CODE = 65535  # +inf
_STEPS = 65533  # codes 1..65534 hold finite depth


def write_depth(path: str, depth: np.ndarray, max_range: float = 1e5, compression_level: int = 7) -> None:
    """Write (H, W) depth (finite > 0, NaN unknown, +inf infinitely far) as MoGe's log-encoded
    16-bit PNG (module doc). A map without finite depth stores near = 1e-5."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"write_depth: depth must be (H, W), got {depth.shape}")
    finite = depth[np.isfinite(depth)]
    near = max(float(finite.min()) if finite.size else 1e-5, 1e-5)
    far = max(near * 1.1, min(float(finite.max()) if finite.size else near, near * max_range))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(np.clip(depth, near, far) / near) / np.log(far / near)
    codes = 1 + np.round(np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0) * _STEPS)
    codes = np.where(np.isnan(depth), 0, np.where(np.isposinf(depth), MAX_CODE, codes)).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text("near", str(near))
    info.add_text("far", str(far))
    Image.fromarray(codes).save(path, pnginfo=info, compress_level=compression_level)


def read_depth(path: str) -> np.ndarray:
    """(H, W) float32 depth of a MoGe depth PNG: NaN unknown, +inf infinitely far (module doc).
    DataFileError naming the file when it is not a 16-bit PNG with near/far text."""
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or {})
            codes = np.array(image)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the depth PNG: {error}") from None
    if codes.dtype != np.uint16 and codes.dtype.kind in "iu" and codes.size and int(codes.max()) <= MAX_CODE:
        codes = codes.astype(np.uint16)  # PIL may open 16-bit grey as int32 ("I")
    if codes.ndim != 2 or codes.dtype != np.uint16:
        raise DataFileError(f"{path}: expected a 16-bit single-channel depth PNG, got {codes.dtype} {codes.shape}")
    try:
        near, far = float(text["near"]), float(text["far"])
    except (KeyError, ValueError):
        raise DataFileError(f"{path}: the depth PNG has no numeric 'near' and 'far' text fields "
                            f"(MoGe's write_depth stores them); found {sorted(text)}") from None
    t = (codes.astype(np.float64) - 1) / _STEPS
    depth = near ** (1 - t) * far ** t
    if "unit" in text:
        depth = depth * float(text["unit"])
    depth = np.where(codes == 0, np.nan, np.where(codes == MAX_CODE, np.inf, depth))
    return depth.astype(np.float32)


def read_meta(path: str) -> Dict[str, Any]:
    """meta.json of an instance; DataFileError naming the file when it is not JSON with a 3x3
    "intrinsics"."""
    try:
        with open(path, encoding="utf-8") as file:
            meta = json.load(file)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read meta.json: {error}") from None
    intrinsics = meta.get("intrinsics") if isinstance(meta, dict) else None
    if intrinsics is None or np.asarray(intrinsics).shape != (3, 3):
        raise DataFileError(f"{path}: expected {{\"intrinsics\": 3x3 normalised}}, got {meta!r:.200}")
    return meta


def read_index(dataset_root: str, index_file: str = INDEX_FILE) -> List[str]:
    """The instance folders listed in `<dataset_root>/<index_file>` (blank lines skipped), as
    paths joined to dataset_root. DataFileError naming the file when it cannot be read."""
    path = os.path.join(dataset_root, index_file)
    try:
        with open(path, encoding="utf-8") as file:
            lines = [line.strip() for line in file]
    except OSError as error:
        raise DataFileError(f"{path}: cannot read the instance index: {error}") from None
    return [os.path.join(dataset_root, line) for line in lines if line]


def read_instance(
    instance: str, depth_file: str = "depth.png", depth_kind: str = "metric", label_type: str = "",
    dataset: str = "",
) -> ViewRecord:
    """One instance folder as a ViewRecord: image (3, H, W) in [0, 1], depth (NaN unknown, +inf
    sky), intrinsics in pixels from meta.json's normalised ones. `depth_kind` and `label_type`
    come from the dataset's config in MoGe (depth_unit given: metric)."""
    image_path = os.path.join(instance, "image.jpg")
    try:
        with Image.open(image_path) as file:
            rgb = np.array(file.convert("RGB"))
    except OSError as error:
        raise DataFileError(f"{image_path}: cannot read the image: {error}") from None
    depth = read_depth(os.path.join(instance, depth_file))
    if depth.shape != rgb.shape[:2]:
        raise DataFileError(f"{os.path.join(instance, depth_file)}: depth is {depth.shape}, the image "
                            f"{rgb.shape[:2]}")
    meta = read_meta(os.path.join(instance, "meta.json"))
    size = rgb.shape[:2]
    intrinsics = intrinsics_from_normalized(torch.tensor(meta["intrinsics"], dtype=torch.float32), size)
    return ViewRecord(
        image=torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0,
        depth=torch.from_numpy(depth),
        depth_kind=depth_kind,
        intrinsics=intrinsics,
        sequence=os.path.basename(os.path.dirname(instance)),
        dataset=dataset,
        label_type=label_type,
        path=image_path,
    )


def write_instance(
    instance: str, image: np.ndarray, depth: np.ndarray, normalized_intrinsics: np.ndarray,
    meta: Optional[Dict[str, Any]] = None,
) -> None:
    """Write an instance folder (tests, tiny synthetic copies): image (H, W, 3) uint8 as JPEG
    q95, depth (H, W) as the MoGe depth PNG, meta.json with the normalised intrinsics (3, 3) and
    any other `meta` keys."""
    os.makedirs(instance, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(os.path.join(instance, "image.jpg"), quality=95)
    write_depth(os.path.join(instance, "depth.png"), depth)
    content = dict(meta or {}, intrinsics=np.asarray(normalized_intrinsics, dtype=float).tolist())
    with open(os.path.join(instance, "meta.json"), "w", encoding="utf-8") as file:
        json.dump(content, file)


def write_index(dataset_root: str, instances: List[str], index_file: str = INDEX_FILE) -> None:
    """Write `<dataset_root>/<index_file>` listing the instance folders (relative to dataset_root)."""
    with open(os.path.join(dataset_root, index_file), "w", encoding="utf-8") as file:
        file.writelines(os.path.relpath(instance, dataset_root) + "\n" for instance in instances)
