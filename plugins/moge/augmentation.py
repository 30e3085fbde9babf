"""MoGe's training views: a random perspective crop of each image, warped image, depth and normals,
a horizontal flip and colour augmentations; and the centred crop of its evaluation loader.

Everything works on numpy arrays and draws from an explicit `numpy.random.Generator`, so a view is
reproducible from its seed. Conventions: image (H, W, 3) uint8 RGB; depth (H, W) float32 camera z,
NaN unknown, +inf infinitely far (sky); normals (H, W, 3) unit vectors in OpenCV camera axes, NaN
unknown; intrinsics (3, 3) NORMALISED (fx, cx per image width, fy, cy per height). Pixel (i, j)
has its centre at ((j + 0.5) / W, (i + 0.5) / H) in normalised image coordinates.

Perspective crop (`sample_perspective`): the target camera turns by a rotation R about the source
camera's centre and has its own intrinsics K_t (principal point at the centre), so a source pixel
p_s (homogeneous normalised coordinates) lands at p_t ~ K_t R K_s^-1 p_s (`homography`). Pixel
maps are resampled backwards through that homography:

- image: Lanczos (8 x 8 taps, borders replicated); where the warp shrinks the image below 0.8 of
  its size, the source is first resized with PIL's antialiasing Lanczos to 1.25 times the target
  pixel density;
- depth: the nearest source pixel everywhere (the source first reduced by a mask-aware nearest
  resize where the warp shrinks it, so that sparse depth keeps its points), replaced by bilinear
  interpolation of DISPARITY where all contributing source pixels are known and off depth edges
  (`depth_edges`, MoGe's depth_map_edge with ltol 0.01 over 5 x 5): disparity is affine across a
  plane, so planes stay planar. The warped value is the source z; the target z is that divided by
  the third coordinate of K_s R^T K_t^-1 [u_t, v_t, 1] (the point re-projected along the new ray);
- normals: bilinear (unknown where a contributing pixel is unknown), rotated by R;
- labels and masks: nearest.
"""
from __future__ import annotations

import dataclasses
import io
import math
import warnings
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

AUGMENTATIONS = ("jittering", "jpeg_loss", "blurring", "shot_noise", "dof")
EDGE_KERNEL = 5  # window of the depth-edge detector before the disparity interpolation (MoGe: 5)
EDGE_LTOL = 0.01  # relative disparity-laplacian tolerance of that detector (MoGe: 0.01)
NORMAL_EDGE_DEGREES = 88.0  # normals from depth: triangles seen at a grazing angle beyond this are dropped
MIN_FINITE_FRACTION = 0.001  # a training view with less finite depth than this is labelled invalid
LANCZOS_TAPS = 4  # Lanczos window half-width (cv2's INTER_LANCZOS4)


# --------------------------------------------------------------------------------- camera sampling


def focal_to_fov(focal: float) -> float:
    """Field of view (radians) of a normalised focal length (image extent 1)."""
    return 2.0 * math.atan(0.5 / focal)


def fov_to_focal(fov: float) -> float:
    """Normalised focal length (image extent 1) of a field of view in radians."""
    return 0.5 / math.tan(fov / 2.0)


def rotation_to_z(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rotation R with R @ direction along +z (the shortest turn; Rodrigues' formula)."""
    a = np.asarray(direction, dtype=np.float64)
    a = a / np.linalg.norm(a)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(a, z)
    sin, cos = np.linalg.norm(axis), float(a @ z)
    if sin < 1e-12:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sin
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sin * cross + (1.0 - cos) * cross @ cross


def homography(src_intrinsics: np.ndarray, rotation: np.ndarray, tgt_intrinsics: np.ndarray) -> np.ndarray:
    """(3, 3) K_t R K_s^-1: normalised source coordinates to normalised target coordinates."""
    return tgt_intrinsics @ rotation @ np.linalg.inv(src_intrinsics)


def _fit_inside(src_intrinsics: np.ndarray, rotation: np.ndarray, aspect: float, horizontal: float,
                vertical: float) -> Tuple[float, float]:
    """Shrink a target view of extents (horizontal, vertical) on the plane z = 1 of the rotated
    camera, centred on its axis, until it lies inside the source image seen from that camera: the
    source's corners are rotated onto the plane, and the view's corners (along the diagonals
    (+-aspect, +-1)) stop at the nearest edge line of that (convex) quadrilateral."""
    corners = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    corners = corners @ (rotation @ np.linalg.inv(src_intrinsics)).T
    corners = corners[:, :2] / corners[:, 2:3]
    limit_h, limit_v = math.inf, math.inf
    for i in range(4):
        start, edge = corners[i - 1], corners[i] - corners[i - 1]
        for diagonal in (np.array([aspect, 1.0]), np.array([aspect, -1.0])):
            denominator = diagonal[0] * edge[1] - diagonal[1] * edge[0]
            if abs(denominator) < 1e-12:
                continue  # parallel: no crossing
            s = (start[0] * edge[1] - start[1] * edge[0]) / denominator
            limit_h = min(limit_h, 2.0 * abs(s * diagonal[0]))
            limit_v = min(limit_v, 2.0 * abs(s * diagonal[1]))
    return min(horizontal, limit_h), min(vertical, limit_v)


def _view_intrinsics(horizontal: float, vertical: float) -> np.ndarray:
    """Normalised K of a view of extents (horizontal, vertical) at z = 1, centred principal point."""
    return np.array([[1.0 / horizontal, 0.0, 0.5], [0.0, 1.0 / vertical, 0.5], [0.0, 0.0, 1.0]])


def sample_perspective(
    src_intrinsics: np.ndarray,
    tgt_aspect: float,
    center_augmentation: float,
    fov_range_absolute: Tuple[float, float],
    fov_range_relative: Tuple[float, float],
    rng: np.random.Generator,
) -> Tuple[np.ndarray, np.ndarray]:
    """A random target camera for a source image of normalised intrinsics K_s (3, 3):
    (K_t (3, 3) normalised, R (3, 3) source-to-target rotation).

    1. The horizontal FOV is drawn uniformly from the intersection of `fov_range_relative` (times
       the source's horizontal FOV, and times its vertical FOV carried over to the target aspect
       W / H = tgt_aspect) and `fov_range_absolute` (degrees); an empty range gives its upper end.
    2. The view direction turns from the source's centre by center_augmentation * U(-0.5, 0.5)
       times the FOV left over (source minus target), horizontally and vertically.
    3. R turns that direction onto +z. 4. The view shrinks to stay inside the source image
       (`_fit_inside`). 5. K_t has that view's focal lengths and its principal point at 0.5.
    """
    raw_fov_x = focal_to_fov(float(src_intrinsics[0, 0]))
    raw_fov_y = focal_to_fov(float(src_intrinsics[1, 1]))
    relative_low, relative_high = (float(v) for v in fov_range_relative)

    def relative_limit(factor: float) -> float:  # the smaller of the source FOVs scaled, horizontally
        from_vertical = focal_to_fov(fov_to_focal(factor * raw_fov_y) / tgt_aspect)
        return min(factor * raw_fov_x, from_vertical)

    low = max(math.radians(float(fov_range_absolute[0])), relative_limit(relative_low))
    high = min(math.radians(float(fov_range_absolute[1])), relative_limit(relative_high))
    fov_x = float(rng.uniform(min(low, high), high))
    fov_y = focal_to_fov(fov_to_focal(fov_x) * tgt_aspect)

    turn_x = center_augmentation * rng.uniform(-0.5, 0.5) * (raw_fov_x - fov_x)
    turn_y = center_augmentation * rng.uniform(-0.5, 0.5) * (raw_fov_y - fov_y)
    cu = 0.5 + 0.5 * math.tan(turn_x) / math.tan(raw_fov_x / 2)
    cv = 0.5 + 0.5 * math.tan(turn_y) / math.tan(raw_fov_y / 2)
    rotation = rotation_to_z(np.linalg.inv(src_intrinsics) @ np.array([cu, cv, 1.0]))

    horizontal, vertical = _fit_inside(src_intrinsics, rotation, tgt_aspect, 2 * math.tan(fov_x / 2),
                                       2 * math.tan(fov_y / 2))
    return _view_intrinsics(horizontal, vertical), rotation


def centred_perspective(src_intrinsics: np.ndarray, tgt_aspect: float) -> Tuple[np.ndarray, np.ndarray]:
    """MoGe's evaluation crop: the largest view of aspect tgt_aspect around the direction of the
    image centre that stays inside the image (its FOV kept, no randomness): (K_t, R)."""
    raw_horizontal, raw_vertical = 1.0 / abs(src_intrinsics[0, 0]), 1.0 / abs(src_intrinsics[1, 1])
    horizontal = min(raw_horizontal, raw_vertical * tgt_aspect)
    rotation = rotation_to_z(np.linalg.inv(src_intrinsics) @ np.array([0.5, 0.5, 1.0]))
    horizontal, vertical = _fit_inside(src_intrinsics, rotation, tgt_aspect, horizontal, horizontal / tgt_aspect)
    return _view_intrinsics(horizontal, vertical), rotation


# ------------------------------------------------------------------------------------ resampling


def _index_to_uv(height: int, width: int) -> np.ndarray:
    """Pixel index coordinates (centre of pixel j at x = j) to normalised coordinates."""
    return np.array([[1.0 / width, 0.0, 0.5 / width], [0.0, 1.0 / height, 0.5 / height], [0.0, 0.0, 1.0]])


def pixel_homography(transform: np.ndarray, src_hw: Tuple[int, int], tgt_hw: Tuple[int, int]) -> np.ndarray:
    """(3, 3) the normalised homography `transform` between pixel index coordinates (source to target)."""
    return np.linalg.inv(_index_to_uv(*tgt_hw)) @ transform @ _index_to_uv(*src_hw)


def source_coordinates(transform: np.ndarray, src_hw: Tuple[int, int],
                       tgt_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y), each (Ht, Wt): the source pixel index coordinates that every target pixel centre
    comes from (pixel j's centre at x = j)."""
    inverse = np.linalg.inv(pixel_homography(transform, src_hw, tgt_hw))
    rows, cols = np.meshgrid(np.arange(tgt_hw[0], dtype=np.float64), np.arange(tgt_hw[1], dtype=np.float64),
                             indexing="ij")
    points = np.stack([cols, rows, np.ones_like(rows)], axis=-1) @ inverse.T
    return points[..., 0] / points[..., 2], points[..., 1] / points[..., 2]


def warp_scale(transform: np.ndarray, src_hw: Tuple[int, int], tgt_hw: Tuple[int, int]) -> Tuple[float, float]:
    """(sx, sy): target pixels per source pixel near the target centre (< 1: the warp shrinks)."""
    forward = pixel_homography(transform, src_hw, tgt_hw)
    centre = np.array([tgt_hw[1] / 2, tgt_hw[0] / 2, 1.0])
    w = float(np.linalg.inv(forward)[2] @ centre)
    sx, sy = w * np.linalg.norm(forward[:2, :2], axis=0)
    return float(sx), float(sy)


def _sample_nearest(source: np.ndarray, x: np.ndarray, y: np.ndarray, fill) -> np.ndarray:
    """source (H, W[, C]) at the nearest pixels of (x, y); `fill` outside the image."""
    height, width = source.shape[:2]
    cols, rows = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    values = source[np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)]
    mask = inside.reshape(inside.shape + (1,) * (values.ndim - inside.ndim))
    return np.where(mask, values, np.asarray(fill, dtype=values.dtype))


def _sample_bilinear(source: np.ndarray, x: np.ndarray, y: np.ndarray,
                     valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation of source (H, W[, C]) float at (x, y), and where it is defined: every
    source pixel with a non-zero weight is inside the image and `valid` (H, W). Pixels with zero
    weight do not count, so a map sampled exactly at pixel centres is defined up to its border."""
    height, width = source.shape[:2]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    total = np.zeros(x.shape + source.shape[2:], dtype=np.float64)
    defined = np.ones(x.shape, dtype=bool)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            weight = wy * wx
            rows, cols = y0 + dy, x0 + dx
            needed = weight > 0
            inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
            rows, cols = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
            usable = inside & valid[rows, cols]
            defined &= usable | ~needed
            values = np.where((usable & needed).reshape(needed.shape + (1,) * (source.ndim - 2)),
                              source[rows, cols], 0.0)
            total += values * weight.reshape(weight.shape + (1,) * (source.ndim - 2))
    return total, defined


def _lanczos_weights(offset: np.ndarray) -> np.ndarray:
    """Lanczos-4 kernel sinc(t) sinc(t / 4) for |t| < 4 (0 outside)."""
    return np.where(np.abs(offset) < LANCZOS_TAPS, np.sinc(offset) * np.sinc(offset / LANCZOS_TAPS), 0.0)


def _sample_lanczos(source: np.ndarray, x: np.ndarray, y: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    """source (H, W, C) at (x, y) with the 8 x 8 Lanczos-4 kernel, weights normalised to sum 1,
    image borders replicated; float32, `chunk` target pixels at a time (bounded memory)."""
    height, width = source.shape[:2]
    flat = source.reshape(height * width, -1).astype(np.float32)
    xs, ys = x.ravel(), y.ravel()
    out = np.empty((xs.size, flat.shape[1]), dtype=np.float32)
    taps = np.arange(1 - LANCZOS_TAPS, LANCZOS_TAPS + 1)
    for start in range(0, xs.size, chunk):
        cx, cy = xs[start:start + chunk], ys[start:start + chunk]
        x0, y0 = np.floor(cx).astype(np.int64)[:, None], np.floor(cy).astype(np.int64)[:, None]
        weights_x = _lanczos_weights(cx[:, None] - (x0 + taps)).astype(np.float32)
        weights_y = _lanczos_weights(cy[:, None] - (y0 + taps)).astype(np.float32)
        weights_x /= weights_x.sum(axis=1, keepdims=True)
        weights_y /= weights_y.sum(axis=1, keepdims=True)
        cols = np.clip(x0 + taps, 0, width - 1)
        rows = np.clip(y0 + taps, 0, height - 1) * width
        block = flat[rows[:, :, None] + cols[:, None, :]]  # (n, 8, 8, C)
        out[start:start + chunk] = np.einsum("nijc,ni,nj->nc", block, weights_y, weights_x, optimize=True)
    return out.reshape(x.shape + (flat.shape[1],))


def masked_nearest_resize(values: np.ndarray, valid: np.ndarray,
                          size_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Shrink values (H, W[, C]) to size_hw keeping measurements: each output pixel takes, among the
    valid input pixels of its ceil(H/h) x ceil(W/w) footprint, the one whose centre is nearest to
    its own. Returns (values, defined (h, w)); undefined pixels hold a placeholder value."""
    height, width = valid.shape
    out_h, out_w = size_hw
    fh, fw = max(1.0, height / out_h), max(1.0, width / out_w)
    centre_y = (np.arange(out_h) + 0.5) * height / out_h  # in input pixels, corners at integers
    centre_x = (np.arange(out_w) + 0.5) * width / out_w
    first_row, first_col = np.round(centre_y - fh / 2).astype(np.int64), np.round(centre_x - fw / 2).astype(np.int64)
    best = np.full((out_h, out_w), np.inf)
    best_rows = np.zeros((out_h, out_w), dtype=np.int64)
    best_cols = np.zeros((out_h, out_w), dtype=np.int64)
    for dr in range(math.ceil(fh)):
        rows = first_row + dr
        for dc in range(math.ceil(fw)):
            cols = first_col + dc
            inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
            r, c = np.clip(rows, 0, height - 1)[:, None], np.clip(cols, 0, width - 1)[None, :]
            distance = ((rows + 0.5 - centre_y) ** 2)[:, None] + ((cols + 0.5 - centre_x) ** 2)[None, :]
            better = inside & valid[r, c] & (distance < best)
            best = np.where(better, distance, best)
            best_rows = np.where(better, r, best_rows)
            best_cols = np.where(better, c, best_cols)
    return values[best_rows, best_cols], np.isfinite(best)


def warp_image(
    image: np.ndarray, transform: np.ndarray, tgt_hw: Tuple[int, int], interpolation: str = "lanczos",
    antialias_below: float = 0.8, antialias_oversample: float = 1.25,
) -> np.ndarray:
    """image (H, W, 3) uint8 warped by the normalised homography `transform` to tgt_hw (module doc).
    interpolation: "lanczos" (training) or "bilinear"; where the warp shrinks the image below
    `antialias_below`, the source is resized first (PIL Lanczos, antialiased) to
    `antialias_oversample` times the target pixel density (at least 16 pixels a side)."""
    src_hw = image.shape[:2]
    sx, sy = warp_scale(transform, src_hw, tgt_hw)
    if sx < antialias_below or sy < antialias_below:
        size_wh = (max(round(src_hw[1] * sx * antialias_oversample), 16),
                   max(round(src_hw[0] * sy * antialias_oversample), 16))
        image = np.asarray(Image.fromarray(image).resize(size_wh, Image.Resampling.LANCZOS))
    x, y = source_coordinates(transform, image.shape[:2], tgt_hw)
    source = image.astype(np.float64)
    if interpolation == "lanczos":
        warped = _sample_lanczos(source, x, y)
    elif interpolation == "bilinear":
        inside = np.ones(image.shape[:2], dtype=bool)
        warped, _ = _sample_bilinear(source, np.clip(x, 0, image.shape[1] - 1), np.clip(y, 0, image.shape[0] - 1),
                                     inside)
    else:
        raise ValueError(f"warp_image: interpolation must be 'lanczos' or 'bilinear', got {interpolation!r}")
    return np.clip(np.round(warped), 0, 255).astype(np.uint8)


def _windows(values: np.ndarray, kernel_size: int, pad_mode: str, pad_value: float = 0.0) -> np.ndarray:
    """(k * k, H, W) the k x k neighbourhood of every pixel of values (H, W), padded by `pad_mode`."""
    pad = kernel_size // 2
    kwargs = {"constant_values": pad_value} if pad_mode == "constant" else {}
    padded = np.pad(values, pad, mode=pad_mode, **kwargs)
    height, width = values.shape
    return np.stack([padded[r:r + height, c:c + width] for r in range(kernel_size) for c in range(kernel_size)])


def depth_edges(
    depth: np.ndarray, mask: Optional[np.ndarray] = None, kernel_size: int = 3, atol: Optional[float] = None,
    rtol: Optional[float] = None, ltol: Optional[float] = None,
) -> np.ndarray:
    """(H, W) bool depth edges (MoGe's dependency utils3d's depth_map_edge), pixels outside `mask`
    ignored (treated as NaN): with atol / rtol, where the depth range of the k x k window exceeds
    atol / rtol times the depth; with ltol, where the window holds both a disparity laplacian above
    ltol and one below -ltol (laplacian = (disparity - its window mean) / disparity, the mean
    ignoring unknown pixels over an edge-replicated border)."""
    depth = np.asarray(depth, dtype=np.float64)
    if mask is not None:
        depth = np.where(mask, depth, np.nan)
    edge = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-unknown window is simply no edge
        if atol is not None or rtol is not None:
            spread = (np.nanmax(_windows(depth, kernel_size, "constant", -np.inf), axis=0)
                      - np.nanmin(_windows(depth, kernel_size, "constant", np.inf), axis=0))
            if atol is not None:
                edge |= spread > atol
            if rtol is not None:
                edge |= spread / depth > rtol
        if ltol is not None:
            disparity = 1.0 / depth
            known = _windows(~np.isnan(disparity), kernel_size, "edge").sum(axis=0)
            mean = _windows(np.nan_to_num(disparity, nan=0.0), kernel_size, "edge").sum(axis=0) / known
            laplacian = (disparity - mean) / disparity
            high = np.nanmax(_windows(laplacian, kernel_size, "constant", -np.inf), axis=0)
            low = np.nanmin(_windows(laplacian, kernel_size, "constant", np.inf), axis=0)
            edge |= (high > ltol) & (low < -ltol)
    return edge


def _target_ray_z(transform: np.ndarray, tgt_hw: Tuple[int, int]) -> np.ndarray:
    """(Ht, Wt) third coordinate of transform^-1 [u_t, v_t, 1] at the target pixel centres: a
    source z divided by it is the target z of the point re-projected along the target ray."""
    height, width = tgt_hw
    v, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    row = np.linalg.inv(transform)[2]
    return row[0] * u + row[1] * v + row[2]


def warp_depth(depth: np.ndarray, transform: np.ndarray, tgt_hw: Tuple[int, int],
               interpolation: str = "bilinear") -> np.ndarray:
    """depth (H, W) (NaN unknown, +inf sky) warped to tgt_hw by the normalised homography of a
    rotation and new intrinsics (module doc); the result is the target camera's z. interpolation:
    "bilinear" (nearest, with disparity interpolation off edges: training) or "nearest" (evaluation)."""
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"warp_depth: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    depth = np.asarray(depth, dtype=np.float64)
    src_hw = depth.shape
    source, known = depth, ~np.isnan(depth)
    sx, sy = warp_scale(transform, src_hw, tgt_hw)
    if sx < 1 or sy < 1:
        reduced_hw = (max(round(src_hw[0] * sy), 16), max(round(src_hw[1] * sx), 16))
        source, defined = masked_nearest_resize(depth, known, reduced_hw)
        source = np.where(defined, source, np.nan)
    x, y = source_coordinates(transform, source.shape, tgt_hw)
    warped = _sample_nearest(source, x, y, np.nan)
    if interpolation == "bilinear":
        finite = np.isfinite(depth)
        smooth = finite & ~depth_edges(depth, finite, kernel_size=EDGE_KERNEL, ltol=EDGE_LTOL)
        x, y = source_coordinates(transform, src_hw, tgt_hw)
        with np.errstate(divide="ignore"):
            disparity, defined = _sample_bilinear(np.where(smooth, 1.0 / depth, 0.0), x, y, smooth)
            warped = np.where(defined, 1.0 / disparity, warped)
    return (warped / _target_ray_z(transform, tgt_hw)).astype(np.float32)


def warp_normal(normal: np.ndarray, transform: np.ndarray, rotation: np.ndarray,
                tgt_hw: Tuple[int, int]) -> np.ndarray:
    """normals (H, W, 3) (NaN unknown) warped bilinearly to tgt_hw and rotated into the target
    camera (n' = R n), renormalised; unknown where a contributing source normal is unknown."""
    known = np.isfinite(normal).all(axis=-1)
    x, y = source_coordinates(transform, normal.shape[:2], tgt_hw)
    warped, defined = _sample_bilinear(np.where(known[..., None], normal, 0.0), x, y, known)
    warped = warped @ np.asarray(rotation, dtype=np.float64).T
    length = np.linalg.norm(warped, axis=-1, keepdims=True)
    defined &= length[..., 0] > 1e-6
    return np.where(defined[..., None], warped / np.maximum(length, 1e-12), np.nan).astype(np.float32)


def warp_labels(labels: np.ndarray, transform: np.ndarray, tgt_hw: Tuple[int, int], fill) -> np.ndarray:
    """Labels or a mask (H, W) warped to tgt_hw by nearest sampling; `fill` outside the source."""
    x, y = source_coordinates(transform, labels.shape[:2], tgt_hw)
    return _sample_nearest(labels, x, y, fill)


# ----------------------------------------------------------------------------- normals from depth


def normals_from_depth(depth: np.ndarray, intrinsics: np.ndarray,
                       edge_degrees: float = NORMAL_EDGE_DEGREES) -> np.ndarray:
    """(H, W, 3) unit normals (OpenCV axes, facing the camera) of a depth map with normalised
    intrinsics, NaN where undefined: the normalised sum of the normals of the up-to-four triangles
    a pixel forms with pairs of its 4-neighbours (up-left, left-down, down-right, right-up) whose
    points are finite and which are not seen at a grazing angle (> edge_degrees between the view
    ray and the normal): MoGe's training loader's normals (utils3d depth_map_to_normal_map)."""
    height, width = depth.shape
    finite = np.isfinite(depth)
    v, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(intrinsics).T
    points = np.zeros((height + 2, width + 2, 3))
    points[1:-1, 1:-1] = np.where(finite[..., None], rays * np.where(finite, depth, 0.0)[..., None], 0.0)
    valid = np.zeros((height + 2, width + 2), dtype=bool)
    valid[1:-1, 1:-1] = finite
    centre = points[1:-1, 1:-1]
    offsets = ((-1, 0), (0, -1), (1, 0), (0, 1))  # up, left, down, right
    edges = [points[1 + r:1 + r + height, 1 + c:1 + c + width] - centre for r, c in offsets]
    edge_valid = [valid[1 + r:1 + r + height, 1 + c:1 + c + width] for r, c in offsets]
    total = np.zeros((height, width, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(4):
            face = np.cross(edges[k], edges[(k + 1) % 4])
            face = face / (np.linalg.norm(face, axis=-1, keepdims=True) + 1e-12)
            cosine = np.abs((face * centre).sum(axis=-1)) / (np.linalg.norm(centre, axis=-1) + 1e-12)
            grazing = np.arccos(np.clip(cosine, 0.0, 1.0)) >= math.radians(edge_degrees)
            use = finite & edge_valid[k] & edge_valid[(k + 1) % 4] & ~grazing
            total += face * use[..., None]
    length = np.linalg.norm(total, axis=-1, keepdims=True)
    return np.where(length > 1e-12, total / np.maximum(length, 1e-12), np.nan).astype(np.float32)


# ---------------------------------------------------------------------------------- colour


def color_augmentation(image: np.ndarray, augmentations: Sequence[str], rng: np.random.Generator,
                       depth: Optional[np.ndarray] = None) -> np.ndarray:
    """image (H, W, 3) uint8 with the named augmentations, in this order (MoGe's):

    - jittering: brightness, contrast, saturation and gamma each times U(0.9, 1.1), hue + U(-0.05, 0.05);
    - dof (p 1/2, needs depth): depth of field of radius up to U{0..11} px focused at a disparity
      drawn between the nearest and farthest finite depth (`depth_of_field`);
    - shot_noise (p 1/2): Poisson noise of k = logU(100, 10000) / 255 photons per level;
    - blurring (p 1/2): box-shrunk by U(0.25, 1) and enlarged back (bilinear, bicubic or Lanczos);
    - jpeg_loss (p 1/2): a JPEG round trip at quality U{20..99}.
    """
    unknown = sorted(set(augmentations) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"color_augmentation: unknown augmentations {unknown}; choices: {', '.join(AUGMENTATIONS)}")
    height, width = image.shape[:2]
    if "jittering" in augmentations:
        import torchvision.transforms.v2.functional as TF

        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        tensor = TF.adjust_brightness(tensor, float(rng.uniform(0.9, 1.1)))
        tensor = TF.adjust_contrast(tensor, float(rng.uniform(0.9, 1.1)))
        tensor = TF.adjust_saturation(tensor, float(rng.uniform(0.9, 1.1)))
        tensor = TF.adjust_hue(tensor, float(rng.uniform(-0.05, 0.05)))
        tensor = TF.adjust_gamma(tensor, float(rng.uniform(0.9, 1.1)))
        image = tensor.permute(1, 2, 0).numpy()
    if "dof" in augmentations:
        if depth is None:
            raise ValueError("color_augmentation: 'dof' needs the depth map")
        if rng.uniform() < 0.5:
            image = _random_depth_of_field(image, depth, rng)
    if "shot_noise" in augmentations and rng.uniform() < 0.5:
        k = math.exp(rng.uniform(math.log(100), math.log(10000))) / 255
        image = np.clip(rng.poisson(image * k) / k, 0, 255).astype(np.uint8)
    if "blurring" in augmentations and rng.uniform() < 0.5:
        ratio = rng.uniform(0.25, 1)
        small = Image.fromarray(image).resize((max(1, int(width * ratio)), max(1, int(height * ratio))),
                                              Image.Resampling.BOX)
        filters = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
        image = np.asarray(small.resize((width, height), filters[int(rng.integers(len(filters)))]))
    if "jpeg_loss" in augmentations and rng.uniform() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(20, 100)))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            image = np.asarray(decoded.convert("RGB"))
    return np.ascontiguousarray(image, dtype=np.uint8)


def _random_depth_of_field(image: np.ndarray, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 'dof' augmentation: disparity (sky 0, unknown filled from the nearest known pixel),
    a focus drawn between the smallest and largest finite disparity, radius up to U{0..11}."""
    from scipy import ndimage

    strength = int(rng.integers(12))
    finite = np.isfinite(depth)
    if not finite.any():
        return image
    with np.errstate(divide="ignore"):
        disparity = 1.0 / depth.astype(np.float64)  # +inf -> 0, NaN stays NaN
    low, high = disparity[finite].min(), disparity[finite].max()
    unknown = np.isnan(disparity)
    if unknown.any():
        nearest = ndimage.distance_transform_edt(unknown, return_distances=False, return_indices=True)
        disparity = disparity[tuple(nearest)]
    focus = rng.uniform(low, high)
    return depth_of_field(image, np.clip(disparity, 0.0, high), focus, strength)


def _disk(radius: int) -> np.ndarray:
    """(2r + 1, 2r + 1) bool disk x^2 + y^2 <= r^2."""
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2


def depth_of_field(image: np.ndarray, disparity: np.ndarray, focus: float, max_radius: int) -> np.ndarray:
    """image (H, W, 3) uint8 blurred by a disk whose radius grows with |disparity - focus|
    (disparity scaled to a maximum of 1; radius max_radius at a difference of 1). Nearer (larger
    disparity) blurred pixels spread over farther ones: a pixel takes the larger radius of a
    nearer neighbour within that radius. The radius map is box-smoothed over 5 x 5, each radius's
    disk blur computed once (FFT) and composited."""
    from scipy import ndimage, signal

    top = float(disparity.max())
    if max_radius < 1 or top <= 0:
        return image
    disparity, focus = disparity / top, focus / top
    radii = np.clip(np.abs(disparity - focus) * max_radius, 0, max_radius).astype(np.int64)
    for radius in range(max_radius + 1):
        dilated = ndimage.grey_dilation(disparity, footprint=_disk(radius), mode="nearest")
        spread = np.clip(np.abs(dilated - focus) * max_radius, 0, max_radius).astype(np.int64)
        wider = (spread >= radius) & (spread >= radii) & (dilated > disparity)
        radii[wider] = spread[wider]
    radii = np.round(ndimage.uniform_filter(radii.astype(np.float64), size=5, mode="reflect")).astype(np.int64)
    radii = np.clip(radii, 0, max_radius)
    output = np.zeros(image.shape, dtype=np.float64)
    for radius in np.unique(radii):
        if radius == 0:
            blurred = image.astype(np.float64)
        else:
            kernel = _disk(int(radius)).astype(np.float64)
            kernel /= kernel.sum()
            blurred = np.stack([signal.fftconvolve(image[..., c].astype(np.float64), kernel, mode="same")
                                for c in range(image.shape[2])], axis=-1)
        where = radii == radius
        output[where] = blurred[where]
    return np.clip(np.round(output), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------- views


@dataclasses.dataclass
class ViewArrays:
    """One view as arrays (module doc for the conventions).

    image: (H, W, 3) uint8. depth: (H, W) float32. intrinsics: (3, 3) normalised.
    normal: (H, W, 3) float32 or None. segmentation: (H, W) int64 (-1: no segment) or None.
    invalid: the view kept too little finite depth (its depth is then all 1).
    """

    image: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    normal: Optional[np.ndarray] = None
    segmentation: Optional[np.ndarray] = None
    invalid: bool = False


@dataclasses.dataclass(frozen=True)
class AugmentationSettings:
    """MoGe's augmentation keys for one view (the builder's, overridden per dataset)."""

    center_augmentation: float = 0.5
    fov_range_absolute: Tuple[float, float] = (1.0, 179.0)
    fov_range_relative: Tuple[float, float] = (0.01, 1.0)
    image_augmentation: Tuple[str, ...] = ("jittering", "jpeg_loss", "blurring")
    flip: bool = True


def _warp_view(view: ViewArrays, tgt_intrinsics: np.ndarray, rotation: np.ndarray, tgt_hw: Tuple[int, int],
               training: bool) -> ViewArrays:
    transform = homography(view.intrinsics, rotation, tgt_intrinsics)
    if training:
        image = warp_image(view.image, transform, tgt_hw)
    else:  # MoGe's evaluation loader: antialiased resize to the target pixel size, then bilinear
        image = warp_image(view.image, transform, tgt_hw, "bilinear", antialias_below=1.0, antialias_oversample=1.0)
    return ViewArrays(
        image=image,
        depth=warp_depth(view.depth, transform, tgt_hw, "bilinear" if training else "nearest"),
        intrinsics=tgt_intrinsics.astype(np.float32),
        normal=None if view.normal is None else warp_normal(view.normal, transform, rotation, tgt_hw),
        segmentation=None if view.segmentation is None else warp_labels(view.segmentation, transform, tgt_hw, -1),
    )


def flip_horizontally(view: ViewArrays) -> ViewArrays:
    """The view mirrored left-right: maps flipped, normals' x negated, cx -> 1 - cx."""
    intrinsics = view.intrinsics.copy()
    intrinsics[0, 2] = 1.0 - intrinsics[0, 2]
    normal = None
    if view.normal is not None:
        normal = view.normal[:, ::-1] * np.array([-1.0, 1.0, 1.0], dtype=view.normal.dtype)
    return dataclasses.replace(
        view,
        image=np.ascontiguousarray(view.image[:, ::-1]),
        depth=np.ascontiguousarray(view.depth[:, ::-1]),
        intrinsics=intrinsics,
        normal=None if normal is None else np.ascontiguousarray(normal),
        segmentation=None if view.segmentation is None else np.ascontiguousarray(view.segmentation[:, ::-1]),
    )


def _mark_invalid(view: ViewArrays, min_fraction: float) -> ViewArrays:
    """A view with at most min_fraction finite depth becomes invalid (depth 1 everywhere, as MoGe)."""
    if np.isfinite(view.depth).mean() > min_fraction:
        return view
    return dataclasses.replace(view, depth=np.ones_like(view.depth), invalid=True)


def training_view(view: ViewArrays, tgt_hw: Tuple[int, int], settings: AugmentationSettings,
                  rng: np.random.Generator) -> ViewArrays:
    """MoGe's training view of size tgt_hw (H, W): a random perspective crop (sample_perspective),
    invalid when less than 0.1 % of it has finite depth, a horizontal flip with probability 1/2 (when
    settings.flip) and the colour augmentations; draws from `rng` in that order."""
    tgt_intrinsics, rotation = sample_perspective(
        view.intrinsics.astype(np.float64), tgt_hw[1] / tgt_hw[0], settings.center_augmentation,
        settings.fov_range_absolute, settings.fov_range_relative, rng,
    )
    out = _mark_invalid(_warp_view(view, tgt_intrinsics, rotation, tgt_hw, training=True), MIN_FINITE_FRACTION)
    if settings.flip and rng.uniform() < 0.5:
        out = flip_horizontally(out)
    image = color_augmentation(out.image, settings.image_augmentation, rng, depth=out.depth)
    return dataclasses.replace(out, image=image)


def evaluation_view(view: ViewArrays, tgt_hw: Tuple[int, int]) -> ViewArrays:
    """MoGe's evaluation view of size tgt_hw: the centred crop of that aspect (centred_perspective),
    nearest depth; invalid when no depth at all is finite. Deterministic."""
    tgt_intrinsics, rotation = centred_perspective(view.intrinsics.astype(np.float64), tgt_hw[1] / tgt_hw[0])
    return _mark_invalid(_warp_view(view, tgt_intrinsics, rotation, tgt_hw, training=False), 0.0)


def depth_targets(depth: np.ndarray, clamp_max_depth: float, only_known: bool,
                  drop_far: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth, mask_fin, mask_inf) of a view's depth: finite depth beyond clamp_max_depth times its
    1 % quantile is clamped to that (training) or, with drop_far, made unknown (NaN; MoGe's
    evaluation); mask_inf is +inf (sky); mask_fin is every other pixel, or only the finite ones
    with only_known (MoGe's finite_depth_mask "only_known"; unknown pixels then count as neither)."""
    depth = depth.astype(np.float32)
    finite = np.isfinite(depth)
    if finite.any():
        limit = np.quantile(depth[finite], 0.01) * clamp_max_depth
        if drop_far:
            depth = np.where(finite & (depth > limit), np.float32(np.nan), depth)
        else:
            depth = np.where(finite, np.minimum(depth, limit), depth).astype(np.float32)
    mask_inf = np.isposinf(depth)
    mask_fin = np.isfinite(depth) if only_known else ~mask_inf
    return depth, mask_fin, mask_inf
