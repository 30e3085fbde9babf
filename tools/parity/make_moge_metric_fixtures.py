"""Make the parity fixture of MoGe's evaluation metrics: tests/fixtures/moge/metrics.pt.

Runs the ORIGINAL `moge.test.metrics.compute_metrics` (imported from --moge_repo) on four fixed
synthetic prediction / ground-truth pairs and stores, per case, its inputs and its metrics
flattened to "kind/metric" keys. Not run by the test suite; run it as

    PYTHONPATH=/work/ref/MoGe:/work/ref/utils3d:/work/ref/deps python tools/parity/make_moge_metric_fixtures.py \
        --moge_repo /work/ref/MoGe --out tests/fixtures/moge

The cases (ground truth: a slanted wall with two boxes in front, sky (+inf depth) in the top half
and unknown pixels (NaN); depth_mask = finite depth; predictions are noisy transforms of the scene with
the boxes shifted by a pixel):
  v1_segments   24x32, relative GT, segmentation: points/depth_scale_invariant + intrinsics (MoGe-1)
  v2_sharp      24x32, metric GT, segmentation, sharp boundary: points/depth_metric + intrinsics (MoGe-2)
  affine_sharp  24x32, relative GT, sharp boundary: points/depth_affine_invariant + disparity
  disparity_only 68x72 (larger than the 64x64 subsample), sharp boundary: disparity only. Its GT
                point map is not read by MoGe (no point prediction) and is not stored: pass zeros.

The pinned utils3d (3fab839) lacks `utils3d.pt.sliding_window_2d`, which MoGe's boundary_f1 calls;
it is supplied here as the unpadded `utils3d.pt.sliding_window` over the two given dims (windows as
trailing dims), the function it was renamed to.
"""
import os
from typing import Dict, Tuple

import numpy as np
import torch
from reference import reference_args

SEGMENT_LABELS = {"wall": 1, "box": 2, "cup": 3, "speck": 4}  # "speck" has < 10 subsampled pixels


def scene(height: int, width: int, shift_px: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Clean depth (H, W) of a slanted wall at 4..6 with two boxes at 1.5 and 2.5 (moved `shift_px`
    to the right) and a segmentation (H, W) with SEGMENT_LABELS ids."""
    v, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    depth = 4.0 + 2.0 * v + 0.5 * u
    segmentation = np.ones((height, width), dtype=np.int64)
    boxes = [(0.55, 0.95, 0.1, 0.45, 1.5, 2), (0.6, 0.9, 0.55, 0.9, 2.5, 3)]  # v0, v1, u0, u1, depth, id
    for v0, v1, u0, u1, box_depth, segment_id in boxes:
        rows = slice(int(v0 * height), int(v1 * height))
        cols = slice(int(u0 * width) + shift_px, int(u1 * width) + shift_px)
        depth[rows, cols] = box_depth + 0.3 * u[rows, cols]
        segmentation[rows, cols] = segment_id
    segmentation[int(0.55 * height), width // 2] = 4
    return depth, segmentation


def unproject(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera points of a depth map with normalised intrinsics, pixel centres."""
    height, width = depth.shape
    v, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    x = (u - intrinsics[0, 2]) / intrinsics[0, 0]
    y = (v - intrinsics[1, 2]) / intrinsics[1, 1]
    return np.stack([x * depth, y * depth, depth], axis=-1)


def ground_truth(height: int, width: int, rng: np.random.Generator, *, is_metric: bool, sharp: bool,
                 segments: bool, points: bool = True) -> Tuple[Dict, np.ndarray]:
    """MoGe's eval sample dict (torch tensors) and the normalised intrinsics."""
    fx = 0.7
    intrinsics = np.array([[fx, 0, 0.5], [0, fx * width / height, 0.5], [0, 0, 1]], dtype=np.float32)
    clean, segmentation = scene(height, width)
    depth = clean.copy()
    depth[: height // 2] = np.inf  # sky (it also keeps MoGe's alignments, quadratic in the valid pixels, quick)
    depth[rng.random((height, width)) < 0.08] = np.nan  # unknown
    mask = np.isfinite(depth)
    gt = {
        "depth": torch.from_numpy(depth.astype(np.float32)),
        "depth_mask": torch.from_numpy(mask),
        "intrinsics": torch.from_numpy(intrinsics),
        "is_metric": is_metric,
        "has_sharp_boundary": sharp,
    }
    if points:
        gt["points"] = torch.from_numpy(unproject(depth, intrinsics).astype(np.float32))
    if segments:
        gt["segmentation_mask"] = torch.from_numpy(segmentation)
        gt["segmentation_labels"] = dict(SEGMENT_LABELS)
    return gt, intrinsics


def noisy(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.03) -> np.ndarray:
    """x times log-normal noise, with 2 % of the pixels off by up to +-40 %."""
    factor = np.exp(rng.normal(0.0, sigma, x.shape[:2]))
    outliers = rng.random(x.shape[:2]) < 0.02
    factor[outliers] *= rng.uniform(0.6, 1.4, outliers.sum())
    return x * (factor[..., None] if x.ndim == 3 else factor)


def predicted_scene(
    height: int, width: int, rng: np.random.Generator, intrinsics: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Noisy depth and points of the scene with the boxes moved by one pixel."""
    shifted, _ = scene(height, width, shift_px=1)
    depth = noisy(shifted, rng)
    return depth, unproject(depth, intrinsics)


def tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def make_cases(rng: np.random.Generator):
    cases = []

    gt, intrinsics = ground_truth(24, 32, rng, is_metric=False, sharp=False, segments=True)
    depth, points = predicted_scene(24, 32, rng, intrinsics)
    pred_intrinsics = intrinsics.copy()
    pred_intrinsics[:2, :2] *= 1.1
    pred = {"points_scale_invariant": tensor(0.5 * points), "depth_scale_invariant": tensor(0.5 * depth),
            "intrinsics": tensor(pred_intrinsics)}
    cases.append(("v1_segments", pred, gt))

    gt, intrinsics = ground_truth(24, 32, rng, is_metric=True, sharp=True, segments=True)
    depth, points = predicted_scene(24, 32, rng, intrinsics)
    points = 1.05 * points + np.array([0.02, -0.01, 0.05])
    pred_intrinsics = intrinsics.copy()
    pred_intrinsics[:2, :2] *= 0.93
    pred = {"points_metric": tensor(points), "depth_metric": tensor(points[..., 2]),
            "intrinsics": tensor(pred_intrinsics)}
    cases.append(("v2_sharp", pred, gt))

    gt, intrinsics = ground_truth(24, 32, rng, is_metric=False, sharp=True, segments=False)
    depth, points = predicted_scene(24, 32, rng, intrinsics)
    pred = {
        "points_affine_invariant": tensor(2.0 * points + np.array([0.3, -0.2, 1.0])),
        "depth_affine_invariant": tensor(2.0 * depth + 1.0),
        "disparity_affine_invariant": tensor(3.0 / noisy(depth, rng) + 0.1),
    }
    cases.append(("affine_sharp", pred, gt))

    gt, intrinsics = ground_truth(68, 72, rng, is_metric=False, sharp=True, segments=False, points=False)
    depth, _ = predicted_scene(68, 72, rng, intrinsics)
    pred = {"disparity_affine_invariant": tensor(0.7 / depth - 0.02)}
    cases.append(("disparity_only", pred, gt))
    return cases


def flatten(nested: Dict, prefix: str = "") -> Dict[str, float]:
    flat = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = float(value)
    return flat


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "metrics.pt")
    import utils3d
    from moge.test.metrics import compute_metrics

    if not hasattr(utils3d.pt, "sliding_window_2d"):
        utils3d.pt.sliding_window_2d = lambda x, window_size, stride, dim: utils3d.pt.sliding_window(
            x, window_size=window_size, stride=stride, dim=dim)

    rng = np.random.default_rng(20250713)
    stored = []
    for name, pred, gt in make_cases(rng):
        inputs = dict(gt)
        if "points" not in inputs:
            height, width = gt["depth"].shape
            inputs["points"] = torch.zeros(height, width, 3)
        metrics, _ = compute_metrics(pred, inputs)
        stored.append({"name": name, "pred": pred, "gt": gt, "metrics": flatten(metrics)})
        print(name, flatten(metrics))
    path = os.path.join(args.out, "metrics.pt")
    torch.save({"cases": stored, "source": "moge/test/metrics.py compute_metrics (MoGe 0744441)"}, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
