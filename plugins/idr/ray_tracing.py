"""IDR's ray tracing (Yariv et al. 2020): where each ray first meets the zero level set of an SDF.

Rays are flat: origins (N, 3) and unit directions (N, 3), world units; a distance t along a ray
is the point `origin + t * direction`. The SDF is a callable `sdf(points (K, 3), ray_ids (K,)) ->
(K,)`, where ray_ids say which ray each point belongs to (so per-image latent codes can be used).

Steps, as in IDR: intersect the rays with the bounding sphere (centred at the world origin),
sphere-trace from both intersections towards each other, then for the rays that did not
converge sample the segment between the two fronts, take the first sign change and refine it
with the secant method. `plain_reference.py` holds a per-ray version of the same algorithm.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from recon_trainer.config import Configurable

SdfFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sphere_intersections(
    origins: torch.Tensor, directions: torch.Tensor, radius: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(near (N,), far (N,), crosses (N,) bool): distances where the rays enter and leave the
    sphere |x| = radius, clamped at 0 (an origin inside the sphere); 0 for rays that miss it."""
    b = (origins * directions).sum(-1)
    disc = b * b - ((origins * origins).sum(-1) - radius**2)
    crosses = disc > 0
    root = disc.clamp(min=0).sqrt()
    near = torch.where(crosses, (-b - root).clamp(min=0), torch.zeros_like(b))
    far = torch.where(crosses, (-b + root).clamp(min=0), torch.zeros_like(b))
    return near, far, crosses


def sdf_along_rays(
    sdf: SdfFunction, origins: torch.Tensor, directions: torch.Tensor, distances: torch.Tensor, rays: torch.Tensor
) -> torch.Tensor:
    """(N,) SDF at distance `distances` (N,) along the rays selected by `rays` (N,) bool; 0 elsewhere."""
    values = distances.new_zeros(distances.shape)
    ids = rays.nonzero()[:, 0]
    if ids.numel() > 0:
        values[ids] = sdf(origins[ids] + distances[ids, None] * directions[ids], ids)
    return values


def sphere_trace(
    sdf: SdfFunction,
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    active: torch.Tensor,
    *,
    sdf_threshold: float,
    n_iters: int,
    line_search_step: float,
    line_step_iters: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sphere tracing of the `active` (N,) rays from near forwards and from far backwards.

    Each step moves a front by the SDF at it. A front that lands inside (SDF < 0) steps back by
    (1 - line_search_step) / 2^k of its step, k = 0..line_step_iters-1. A front is done once its
    SDF <= sdf_threshold or the fronts cross. Returns (start (N,), end (N,), unfinished (N,) bool):
    the fronts' distances and the rays whose start front had not converged after n_iters steps.
    """
    start, end = near.clone(), far.clone()
    todo_start, todo_end = active.clone(), active.clone()
    sdf_start = sdf_along_rays(sdf, origins, directions, start, todo_start)
    sdf_end = sdf_along_rays(sdf, origins, directions, end, todo_end)
    for iteration in range(n_iters + 1):
        todo_start = todo_start & (sdf_start > sdf_threshold)
        todo_end = todo_end & (sdf_end > sdf_threshold)
        if iteration == n_iters or not bool((todo_start | todo_end).any()):
            break
        step_start = torch.where(todo_start, sdf_start, torch.zeros_like(sdf_start))
        step_end = torch.where(todo_end, sdf_end, torch.zeros_like(sdf_end))
        start, end = start + step_start, end - step_end
        sdf_start = sdf_along_rays(sdf, origins, directions, start, todo_start)
        sdf_end = sdf_along_rays(sdf, origins, directions, end, todo_end)
        for k in range(line_step_iters):
            back_start, back_end = todo_start & (sdf_start < 0), todo_end & (sdf_end < 0)
            if not bool((back_start | back_end).any()):
                break
            fraction = (1.0 - line_search_step) / 2**k
            start = torch.where(back_start, start - fraction * step_start, start)
            end = torch.where(back_end, end + fraction * step_end, end)
            sdf_start = torch.where(back_start, sdf_along_rays(sdf, origins, directions, start, back_start), sdf_start)
            sdf_end = torch.where(back_end, sdf_along_rays(sdf, origins, directions, end, back_end), sdf_end)
        todo_start = todo_start & (start < end)
        todo_end = todo_end & (start < end)
    return start, end, todo_start


def first_sign_change(values: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(index (M,), crosses (M,) bool) of the first negative of values (M, S) per row.

    Rows without a negative value get the index of their smallest |value| ranked from the end
    (the last sample when all are positive) and crosses=False.
    """
    n = values.shape[-1]
    rank = torch.arange(n, 0, -1, dtype=values.dtype, device=values.device)
    index = torch.argmin(torch.sign(values) * rank, dim=-1)
    crosses = values.gather(-1, index[:, None])[:, 0] < 0
    return index, crosses


def secant_refine(
    sdf: SdfFunction,
    origins: torch.Tensor,
    directions: torch.Tensor,
    ray_ids: torch.Tensor,
    t_low: torch.Tensor,
    sdf_low: torch.Tensor,
    t_high: torch.Tensor,
    sdf_high: torch.Tensor,
    n_steps: int,
) -> torch.Tensor:
    """(M,) zero crossings between t_low (SDF > 0) and t_high (SDF < 0) of rays ray_ids (M,)
    after n_steps secant steps; origins/directions are those of all N rays."""
    t_low, sdf_low, t_high, sdf_high = t_low.clone(), sdf_low.clone(), t_high.clone(), sdf_high.clone()
    o, d = origins[ray_ids], directions[ray_ids]
    t = t_low - sdf_low * (t_high - t_low) / (sdf_high - sdf_low)
    for _ in range(n_steps):
        value = sdf(o + t[:, None] * d, ray_ids)
        low, high = value > 0, value < 0
        t_low, sdf_low = torch.where(low, t, t_low), torch.where(low, value, sdf_low)
        t_high, sdf_high = torch.where(high, t, t_high), torch.where(high, value, sdf_high)
        t = t_low - sdf_low * (t_high - t_low) / (sdf_high - sdf_low)
    return t


def _samples(
    sdf: SdfFunction,
    origins: torch.Tensor,
    directions: torch.Tensor,
    ray_ids: torch.Tensor,
    t: torch.Tensor,
) -> torch.Tensor:
    """SDF (M, S) at distances t (M, S) along rays ray_ids (M,)."""
    m, s = t.shape
    points = origins[ray_ids, None] + t[..., None] * directions[ray_ids, None]
    return sdf(points.reshape(-1, 3), ray_ids[:, None].expand(m, s).reshape(-1)).reshape(m, s)


def sample_segments(
    sdf: SdfFunction,
    origins: torch.Tensor,
    directions: torch.Tensor,
    ray_ids: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    object_mask: Optional[torch.Tensor],
    n_steps: int,
    n_secant_steps: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(distance (M,), hit (M,) bool) for rays ray_ids (M,) from n_steps evenly spaced samples
    between lo and hi (M,).

    A ray hits where a sample has SDF < 0; its distance is the secant-refined first crossing.
    object_mask (M,) bool (training only): rays outside it are not refined. Every other ray gets
    the distance of its sample with the smallest SDF (what the soft mask reads in training).
    """
    steps = torch.linspace(0.0, 1.0, n_steps, dtype=lo.dtype, device=lo.device)
    t = lo[:, None] + steps * (hi - lo)[:, None]
    values = _samples(sdf, origins, directions, ray_ids, t)
    index, hit = first_sign_change(values)
    at_crossing = hit if object_mask is None else hit & object_mask
    distance = torch.where(
        at_crossing, t.gather(-1, index[:, None])[:, 0], t.gather(-1, values.argmin(-1)[:, None])[:, 0]
    )
    refine = at_crossing & (index > 0)
    if bool(refine.any()):
        r = refine.nonzero()[:, 0]
        high, low = index[r, None], index[r, None] - 1
        distance[r] = secant_refine(
            sdf,
            origins,
            directions,
            ray_ids[r],
            t[r].gather(-1, low)[:, 0],
            values[r].gather(-1, low)[:, 0],
            t[r].gather(-1, high)[:, 0],
            values[r].gather(-1, high)[:, 0],
            n_secant_steps,
        )
    return distance, hit


def minimal_sdf_distances(
    sdf: SdfFunction,
    origins: torch.Tensor,
    directions: torch.Tensor,
    ray_ids: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    n_steps: int,
) -> torch.Tensor:
    """(M,) distance of the smallest-SDF point among n_steps uniformly random ones (shared
    fractions for all rays) between lo and hi (M,) on rays ray_ids (M,)."""
    fractions = torch.rand(n_steps, dtype=lo.dtype, device=lo.device)
    t = lo[:, None] + fractions * (hi - lo)[:, None]
    values = _samples(sdf, origins, directions, ray_ids, t)
    return t.gather(-1, values.argmin(-1)[:, None])[:, 0]


class RayTracing(Configurable):
    """IDR's ray tracer: sphere tracing from both ends, then sampling with secant refinement.

    `trace(sdf, origins, directions, object_mask)` returns (distances (N,), hits (N,) bool).
    Training (object_mask given): rays outside the object mask or missed by the tracer get the
    smallest-SDF point along them instead (the soft-mask loss reads the SDF there); rays that miss
    the bounding sphere get the point closest to the world origin.
    """

    object_bounding_sphere: float = 1.0  # radius of the sphere (at the origin) rays are traced in (set by the renderer)
    sdf_threshold: float = 5e-5  # a front has converged once the SDF at it is below this
    line_search_step: float = 0.5  # a front that crossed the surface steps back by (1 - this) of its step
    line_step_iters: int = 1  # halving back-steps of a front that crossed the surface
    sphere_tracing_iters: int = 10  # sphere tracing steps
    n_steps: int = 100  # samples along a ray that sphere tracing did not finish (and for the smallest SDF)
    n_secant_steps: int = 8  # secant refinement steps of a sampled crossing

    def __post_init__(self) -> None:
        if self.n_steps < 2:
            raise ValueError(f"RayTracing.n_steps={self.n_steps}: expected at least 2")
        for key in ("sphere_tracing_iters", "line_step_iters", "n_secant_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"RayTracing.{key}={getattr(self, key)}: expected a non-negative integer")
        if self.object_bounding_sphere <= 0:
            raise ValueError(f"RayTracing.object_bounding_sphere={self.object_bounding_sphere}: expected > 0")

    def trace(
        self,
        sdf: SdfFunction,
        origins: torch.Tensor,
        directions: torch.Tensor,
        object_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(distances (N,), hits (N,) bool) of rays origins, unit directions (N, 3).

        object_mask: (N,) bool ground-truth foreground (training), None in evaluation.
        """
        near, far, crosses = sphere_intersections(origins, directions, self.object_bounding_sphere)
        start, end, unfinished = sphere_trace(
            sdf,
            origins,
            directions,
            near,
            far,
            crosses,
            sdf_threshold=self.sdf_threshold,
            n_iters=self.sphere_tracing_iters,
            line_search_step=self.line_search_step,
            line_step_iters=self.line_step_iters,
        )
        hits = start < end
        distances = start.clone()
        if bool(unfinished.any()):
            ids = unfinished.nonzero()[:, 0]
            sub_mask = None if object_mask is None else object_mask[ids]
            distances[ids], hits[ids] = sample_segments(
                sdf, origins, directions, ids, start[ids], end[ids], sub_mask, self.n_steps, self.n_secant_steps
            )
        if object_mask is None:
            return distances, hits
        # Training: rays that need the soft mask get the smallest-SDF point along them.
        inside_missed = ~hits & object_mask & ~unfinished
        outside = ~object_mask & ~unfinished
        search = (inside_missed | outside) & crosses
        off_sphere = (inside_missed | outside) & ~crosses
        closest = (-(origins * directions).sum(-1)).clamp(min=0)  # closest approach to the origin
        distances = torch.where(off_sphere, closest, distances)
        if bool(search.any()):
            ids = search.nonzero()[:, 0]
            lo = torch.where(hits & outside, start, near)[ids]
            distances[ids] = minimal_sdf_distances(sdf, origins, directions, ids, lo, far[ids], self.n_steps)
        return distances, hits
