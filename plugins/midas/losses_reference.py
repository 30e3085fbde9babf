"""Brute-force NumPy versions of the MiDaS losses in `losses.py`, for the parity tests.

Written for clarity, not speed: per-image least squares by numpy.linalg.lstsq, explicit sorting for
medians and trimming, pixel loops for the gradient term. Arrays (B, H, W); masks bool; float64 math.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def lstsq_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> Tuple[float, float]:
    """(scale, shift) minimising Σ_mask (scale * pred + shift - target)² for one image, by lstsq."""
    p = pred[mask].astype(np.float64)
    design = np.stack([p, np.ones_like(p)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, target[mask].astype(np.float64), rcond=None)
    return float(scale), float(shift)


def ssi_lsq_loss(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> Tuple[float, np.ndarray]:
    """(Σ r² / (2 M), r) with r the per-image lstsq-aligned prediction minus the target on the mask."""
    residual = np.zeros(pred.shape, dtype=np.float64)
    for n in range(pred.shape[0]):
        scale, shift = lstsq_scale_shift(pred[n], target[n], mask[n])
        residual[n][mask[n]] = scale * pred[n][mask[n]] + shift - target[n][mask[n]]
    return float((residual**2).sum() / (2 * mask.sum())), residual


def normalise(values: np.ndarray) -> np.ndarray:
    """(values - lower median) / mean absolute deviation, for the valid values of one image."""
    ordered = sorted(values.tolist())
    median = ordered[(len(ordered) - 1) // 2]
    deviation = sum(abs(v - median) for v in ordered) / len(ordered)
    return (values - median) / max(deviation, 1e-8)


def ssi_trimmed_loss(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray, trim: float = 0.2
) -> Tuple[float, np.ndarray]:
    """(Σ over the smallest floor((1 - trim) n) |r| per image / (2 M), r), r of normalised maps."""
    residual = np.zeros(pred.shape, dtype=np.float64)
    total = 0.0
    for n in range(pred.shape[0]):
        valid = mask[n]
        r = normalise(pred[n][valid].astype(np.float64)) - normalise(target[n][valid].astype(np.float64))
        residual[n][valid] = r
        kept = math.floor((1.0 - trim) * len(r) + 1e-9)
        total += sum(sorted(abs(v) for v in r.tolist())[:kept])
    return total / (2 * mask.sum()), residual


def gradient_matching_loss(residual: np.ndarray, mask: np.ndarray, scales: int = 4) -> float:
    """Σ_k (Σ |horizontal and vertical differences of valid neighbours| / valid pixels) at step 2^k."""
    total = 0.0
    for k in range(scales):
        step = 2**k
        r, m = residual[:, ::step, ::step], mask[:, ::step, ::step]
        grad = 0.0
        for n in range(r.shape[0]):
            for y in range(r.shape[1]):
                for x in range(r.shape[2]):
                    if x + 1 < r.shape[2] and m[n, y, x] and m[n, y, x + 1]:
                        grad += abs(r[n, y, x + 1] - r[n, y, x])
                    if y + 1 < r.shape[1] and m[n, y, x] and m[n, y + 1, x]:
                        grad += abs(r[n, y + 1, x] - r[n, y, x])
        if m.sum() > 0:
            total += grad / m.sum()
    return total
