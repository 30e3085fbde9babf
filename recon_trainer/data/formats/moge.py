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

Optional files of an instance (MoGe's io helpers write them; its training loader reads none of them,
a dataset may read each one an instance has):
- `segmentation.png`: 8- or 16-bit grey label ids, the label names in the PNG text field "labels"
  as compact JSON {name: id} (write_segmentation / read_segmentation). Exact.
- `normal.png`: unit normals (OpenCV camera axes) as a 16-bit RGB PNG, the file's R, G, B holding
  x, y, z as `floor(clip(n * (0.5, -0.5, -0.5) + 0.5, 0, 1) * 65535)`; all three codes 0 means
  unknown (write_normal / read_normal). Truncation to a code costs each component less than
  2 / 65535 = 3.1e-5 before renormalising, the direction less than 6e-5 rad.
- `mask.png`: 8-bit grey, 255 inside and 0 outside (write_mask / read_mask: any value > 0, the
  first channel of a colour PNG). Exact.
"""
from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from recon_trainer.data.records import ViewRecord, image_tensor, intrinsics_from_normalized
from recon_trainer.errors import DataFileError

INDEX_FILE = ".index.txt"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


def write_segmentation(path: str, labels_map: np.ndarray, labels: Optional[Dict[str, int]] = None,
                       compression_level: int = 7) -> None:
    """Write (H, W) uint8 or uint16 label ids as a grey PNG, `labels` {name: id} as compact JSON
    in its "labels" text field (module doc); None writes no field."""
    labels_map = np.asarray(labels_map)
    if labels_map.ndim != 2 or labels_map.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_segmentation: expected (H, W) uint8 or uint16 ids, got {labels_map.dtype} "
                         f"{labels_map.shape}")
    info = PngImagePlugin.PngInfo()
    if labels is not None:
        info.add_text("labels", json.dumps({str(k): int(v) for k, v in labels.items()}, ensure_ascii=True,
                                           separators=(",", ":")))
    Image.fromarray(labels_map).save(path, pnginfo=info, compress_level=compression_level)


def read_segmentation(path: str) -> Tuple[np.ndarray, Optional[Dict[str, int]]]:
    """(label ids (H, W) uint8 or uint16, {name: id} or None when the PNG has no "labels" field).
    DataFileError naming the file when it is not a grey PNG or its labels are not a JSON object."""
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or {})
            ids = np.array(image)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the segmentation PNG: {error}") from None
    if ids.dtype.kind in "iu" and ids.dtype != np.uint8 and ids.size and 0 <= int(ids.min()) and int(ids.max()) < 2**16:
        ids = ids.astype(np.uint16)  # PIL may open 16-bit grey as int32 ("I")
    if ids.ndim != 2 or ids.dtype not in (np.uint8, np.uint16):
        raise DataFileError(f"{path}: expected an 8- or 16-bit grey segmentation PNG, got {ids.dtype} {ids.shape}")
    if "labels" not in text:
        return ids, None
    try:
        labels = json.loads(text["labels"])
        labels = {str(name): int(value) for name, value in labels.items()}
    except (ValueError, TypeError, AttributeError):
        raise DataFileError(f"{path}: the 'labels' text field is not a JSON object of label ids: "
                            f"{text['labels']!r:.200}") from None
    return ids, labels


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rgb16_png(rgb: np.ndarray, compression_level: int) -> bytes:
    """A 16-bit RGB PNG of (H, W, 3) uint16 (PIL cannot write 16 bits per channel): rows
    unfiltered, big-endian samples."""
    height, width = rgb.shape[:2]
    rows = np.ascontiguousarray(rgb, dtype=">u2").view(np.uint8).reshape(height, width * 6)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw, compression_level))
            + _png_chunk(b"IEND", b""))


def write_normal(path: str, normal: np.ndarray, compression_level: int = 7) -> None:
    """Write (H, W, 3) unit normals (OpenCV camera axes; NaN where unknown) as MoGe's 16-bit RGB
    normal PNG (module doc)."""
    normal = np.asarray(normal, dtype=np.float64)
    if normal.ndim != 3 or normal.shape[-1] != 3:
        raise ValueError(f"write_normal: expected (H, W, 3) normals, got {normal.shape}")
    unknown = np.isnan(normal).any(axis=-1)
    scaled = np.clip(np.nan_to_num(normal) * np.array([0.5, -0.5, -0.5]) + 0.5, 0.0, 1.0) * 65535
    codes = np.where(unknown[..., None], 0, np.floor(scaled)).astype(np.uint16)
    with open(path, "wb") as file:
        file.write(_rgb16_png(codes, compression_level))


def read_normal(path: str) -> np.ndarray:
    """(H, W, 3) float32 unit normals of a MoGe normal PNG, NaN where unknown (module doc).
    DataFileError naming the file when it is not a 16-bit RGB PNG."""
    from torchvision.io import ImageReadMode, decode_png  # PIL reads 16-bit RGB as 8 bits

    try:
        with open(path, "rb") as file:
            data = file.read()
        with warnings.catch_warnings():  # torchvision 0.29 announces TorchCodec for its image decoders
            warnings.simplefilter("ignore", DeprecationWarning)
            codes = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    except (OSError, RuntimeError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the normal PNG: {error}") from None
    if codes.dtype != torch.uint16 or codes.shape[0] != 3:
        raise DataFileError(f"{path}: expected a 16-bit RGB normal PNG, got {codes.dtype} with {codes.shape[0]} "
                            f"channels")
    codes = codes.permute(1, 2, 0).to(torch.int32).numpy()
    unknown = (codes == 0).all(axis=-1)
    normal = (codes / 65535.0 - 0.5) * np.array([2.0, -2.0, -2.0])
    normal = normal / (np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12)
    normal[unknown] = np.nan
    return normal.astype(np.float32)


def write_mask(path: str, mask: np.ndarray, compression_level: int = 7) -> None:
    """Write an (H, W) bool mask as an 8-bit grey PNG, 255 inside, 0 outside."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"write_mask: expected an (H, W) bool mask, got {mask.dtype} {mask.shape}")
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, compress_level=compression_level)


def read_mask(path: str) -> np.ndarray:
    """(H, W) bool: pixel value > 0 (the first channel of a colour PNG). DataFileError naming the
    file when it cannot be read."""
    try:
        with Image.open(path) as image:
            values = np.array(image)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read the mask PNG: {error}") from None
    if values.ndim == 3:
        values = values[..., 0]
    if values.ndim != 2:
        raise DataFileError(f"{path}: expected a grey or colour mask PNG, got shape {values.shape}")
    return values > 0


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
        image=image_tensor(rgb),
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
