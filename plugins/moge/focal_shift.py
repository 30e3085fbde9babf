"""Recover the focal length and the z shift that turn MoGe's affine-invariant point map into a
camera-space one (MoGe's `recover_focal_shift`, same objective, batched on the tensor's device).

For each image, with p_i(s) = xy_i / (z_i + s) the projection of point i under the shift s and
uv_i its pixel's view-plane coordinate (`normalized_view_plane_uv`, half-diagonal units):

    min_s  Σ_i w_i ‖f(s)·p_i(s) − uv_i‖²,   f(s) = Σ w p·uv / Σ w p²  (optimal focal, closed form)

or, when the focal is known, min_s Σ w ‖f·p(s) − uv‖². The maps are first nearest-downsampled
(points, uv and mask alike) to `downsample_size`, as in MoGe.

What this does better than the original (scipy `least_squares(method='lm')` on the CPU, one
image at a time):
- the whole batch is solved at once by a Levenberg–Marquardt iteration on the scalar shift
  with the analytic derivative of the variable-projection residual (f eliminated, its
  derivative included), in float64, on the tensor's device (GPU included); each iteration is
  one pass over the points (power sums, one batched matrix product), no Python loop over images;
- on the GPU a fixed number of iterations and no `.item()`/`.cpu()`: no host synchronisation,
  so it does not stall the stream (on the CPU it stops as soon as all images have converged);
- it converges to the optimum (shift to ~1e-7 of the depth scale) instead of stopping at
  scipy's `ftol=1e-3` (MoGe's results are up to ~1e-3 off the optimum);
- non-finite points are ignored like masked ones, and a step never moves the shift across a
  pole (−z_i of a valid point), so the depths keep the sign they have at shift 0.

One consequence of converging: on a nearly orthographic (ill-posed) noisy map whose objective
keeps decreasing as s -> ∞ (f/s fixed), this follows the descent to a very large shift within
its iterations, while MoGe's early stop leaves it at a moderate one; neither is meaningful.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .geometry import normalized_view_plane_uv

DEFAULT_ITERATIONS = 20


def recover_focal_shift(
    points: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    focal: Optional[torch.Tensor] = None,
    downsample_size: Tuple[int, int] = (64, 64),
    iterations: int = DEFAULT_ITERATIONS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(focal (...), shift (...)) of point maps `points` (..., H, W, 3).

    mask: (..., H, W) bool, the points to fit (default all; non-finite points are always left
    out). focal: (...) known focal lengths relative to the half image diagonal; then only the
    shift is solved and `focal` is returned as given. downsample_size: (height, width) of the
    nearest-downsampled maps the fit uses. Images with fewer than 2 usable points get focal 1
    (or the given one) and shift 0. Not differentiable (the inputs are detached)."""
    batch_shape = points.shape[:-3]
    height, width = points.shape[-3:-1]
    work_dtype = torch.float32 if points.device.type == "mps" else torch.float64
    points = points.detach().reshape(-1, height, width, 3)
    mask = None if mask is None else mask.reshape(-1, height, width).bool()
    rows = _nearest_indices(height, downsample_size[0], points.device)
    cols = _nearest_indices(width, downsample_size[1], points.device)
    uv = normalized_view_plane_uv(width, height, dtype=work_dtype, device=points.device)
    uv_lr = uv[rows][:, cols].reshape(1, -1, 2)
    points_lr = points[:, rows][:, :, cols].reshape(points.shape[0], -1, 3)
    valid = torch.isfinite(points_lr).all(dim=-1)
    if mask is not None:
        valid &= mask[:, rows][:, :, cols].reshape(points.shape[0], -1)
    points_lr = points_lr.to(work_dtype)
    problem = _ShiftProblem(
        xy=torch.where(valid[..., None], points_lr[..., :2], 0.0),
        z=torch.where(valid, points_lr[..., 2], 1.0),
        uv=uv_lr,
        weight=valid.to(work_dtype),
        focal=None if focal is None else focal.detach().reshape(-1).to(work_dtype),
    )
    shift, fitted_focal = problem.solve(iterations)

    enough = valid.sum(dim=-1) >= 2
    shift = torch.where(enough, shift, 0.0).to(points.dtype).reshape(batch_shape)
    if focal is not None:
        return focal.reshape(batch_shape), shift
    fitted_focal = torch.where(enough, fitted_focal, 1.0).to(points.dtype).reshape(batch_shape)
    return fitted_focal, shift


def _nearest_indices(size_in: int, size_out: int, device) -> torch.Tensor:
    """(size_out,) source indices of torch's 'nearest' resampling (the one MoGe uses), taken
    from F.interpolate itself so that they agree to the last rounding."""
    positions = torch.arange(size_in, dtype=torch.float32, device=device).reshape(1, 1, -1)
    picked = F.interpolate(positions, size=size_out, mode="nearest")
    return picked.reshape(-1).long()


class _ShiftProblem:
    """The batched 1-D least-squares problem in the shift s (B,): residuals
    r_i(s) = f(s)·q_i(s)·xy_i − uv_i, q_i = 1/(z_i + s), weights w_i ∈ {0, 1}.

    Everything the solver needs is a combination of the weighted power sums
    S_k = Σ w q^k |xy|² (k = 2..4) and T_k = Σ w q^k xy·uv (k = 1, 2): with f = T_1/S_2 (or the
    known f), f' = (−T_2 + 2 f S_3)/S_2 (0 when known), cost = f² S_2 − 2 f T_1 + Σ w |uv|²,
    and the gradient Σ w r·J and Gauss–Newton hessian Σ w |J|² (J = dr/ds) in `evaluate`; one
    batched matrix product per evaluation computes all the sums.

    xy (B, N, 2), z (B, N), uv (1 or B, N, 2), weight (B, N), focal (B,) known or None."""

    def __init__(self, xy, z, uv, weight, focal):
        valid = weight > 0
        # Invalid points get z = +inf, hence q = 0: they drop out of every sum without a where.
        self.z = torch.where(valid, z, torch.inf)
        # (B, 2, N): w|xy|², w xy·uv.
        self.moments = torch.stack([(xy * xy).sum(-1), (xy * uv).sum(-1)], dim=1) * weight[:, None]
        self.uv_energy = (weight * (uv * uv).sum(-1)).sum(-1)
        # Cost changes below this are rounding (the cost is a difference of terms ~ uv_energy):
        # a degenerate image whose cost is ~0 at s = 0 stays there, as in MoGe.
        self.cost_resolution = 1e-15 * self.uv_energy
        # Typical depth magnitude, the scale of the convergence test on the shift.
        self.depth_scale = (weight * z.abs()).sum(-1) / weight.sum(-1).clamp_min(1)
        self.focal = focal
        # Steps keep every valid depth z + s on the side of 0 it has at s = 0 (no pole crossed):
        # s must stay in (lower, upper).
        inf = torch.full_like(z, torch.inf)
        self.lower = -torch.where(valid & (z >= 0), z, inf).amin(dim=-1)
        self.upper = -torch.where(valid & (z < 0), z, -inf).amax(dim=-1)

    def evaluate(self, shift: torch.Tensor):
        """(cost, gradient, gauss_newton_hessian, focal), each (B,), at `shift`: cost = Σ w‖r‖²,
        gradient = Σ w r·J, hessian = Σ w J·J with J = dr/ds."""
        q = (self.z + shift[:, None]).reciprocal()
        q2 = q * q
        powers = torch.stack([q, q2, q2 * q, q2 * q2], dim=1)  # (B, 4, N)
        sums = torch.einsum("bkn,bmn->bkm", powers, self.moments)  # (B, 4, 2)
        s2, s3, s4 = sums[:, 1, 0], sums[:, 2, 0], sums[:, 3, 0]
        t1, t2 = sums[:, 0, 1], sums[:, 1, 1]
        s2 = s2.clamp_min(torch.finfo(s2.dtype).tiny)
        if self.focal is None:
            focal = t1 / s2
            d_focal = (2 * focal * s3 - t2) / s2
        else:
            focal, d_focal = self.focal, torch.zeros_like(s2)
        # Σ w r·J = Σ w (f' q − f q²)(f q |xy|² − xy·uv) and Σ w |J|² = Σ w (f' q − f q²)² |xy|².
        gradient = d_focal * (focal * s2 - t1) - focal * (focal * s3 - t2)
        hessian = d_focal**2 * s2 - 2 * d_focal * focal * s3 + focal**2 * s4
        cost = focal**2 * s2 - 2 * focal * t1 + self.uv_energy
        return cost, gradient, hessian, focal

    def solve(self, iterations: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Levenberg–Marquardt from s = 0 (MoGe's start) with Marquardt scaling: the step is
        −g / (H·(1 + λ)), cut to 90 % of the way to the nearest pole; a step that lowers the
        cost by more than its rounding is taken and λ shrinks tenfold, otherwise λ grows
        tenfold and to at least 1 (so a rejected step is at least halved). Returns (shift (B,), focal (B,)).

        On the CPU, where reading a value back costs nothing, the loop ends early once every
        image has converged (`converged`); elsewhere it runs `iterations` times without
        synchronising the device."""
        stop_early = self.z.device.type == "cpu"
        shift = torch.zeros_like(self.lower)
        cost, gradient, hessian, focal = self.evaluate(shift)
        damping = torch.full_like(shift, 1e-3)
        tiny = torch.finfo(shift.dtype).tiny
        for _ in range(iterations):
            candidate = shift - gradient / (hessian * (1 + damping) + tiny)
            candidate = torch.minimum(
                torch.maximum(candidate, shift + 0.9 * (self.lower - shift)),
                shift + 0.9 * (self.upper - shift),
            )
            new_cost, new_gradient, new_hessian, new_focal = self.evaluate(candidate)
            accept = new_cost < cost - self.cost_resolution
            shift = torch.where(accept, candidate, shift)
            cost = torch.where(accept, new_cost, cost)
            gradient = torch.where(accept, new_gradient, gradient)
            hessian = torch.where(accept, new_hessian, hessian)
            focal = torch.where(accept, new_focal, focal)
            damping = torch.where(accept, damping * 0.1, (damping * 10).clamp_min(1.0))
            damping = damping.clamp(1e-12, 1e12)
            if stop_early and self.converged(gradient, hessian, shift, damping):
                break
        return shift, focal

    def converged(self, gradient, hessian, shift, damping) -> bool:
        """Whether every image is done: its undamped step |g / H| is below 1e-6 of |s| + depth
        scale, or even a step a thousand times shorter no longer lowers the cost (λ ≥ 1000
        after rejections: at the minimum to the cost's precision, as the problem is 1-D)."""
        tolerance = 1e-6 * (shift.abs() + self.depth_scale)
        return bool(((gradient.abs() <= tolerance * hessian) | (damping >= 1e3)).all())
