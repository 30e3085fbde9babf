"""A plain per-ray version of `ray_tracing.RayTracing.trace` in evaluation mode (no object mask).

One ray at a time, Python floats, the same steps: bounding-sphere intersection, sphere tracing
from both ends with line-search back-steps, evenly spaced samples with a secant refinement of
the first crossing. It exists to test the vectorised version against; it is slow.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple

Point = Tuple[float, float, float]


def trace_ray(
    sdf: Callable[[Point], float],
    origin: Sequence[float],
    direction: Sequence[float],
    *,
    radius: float,
    sdf_threshold: float,
    line_search_step: float,
    line_step_iters: int,
    sphere_tracing_iters: int,
    n_steps: int,
    n_secant_steps: int,
) -> Tuple[float, bool]:
    """(distance, hit) of one ray `origin + t * direction` (unit direction) against sdf(point)."""

    def at(t: float) -> float:
        return sdf(tuple(o + t * d for o, d in zip(origin, direction)))

    b = sum(o * d for o, d in zip(origin, direction))
    disc = b * b - (sum(o * o for o in origin) - radius**2)
    if disc <= 0:
        return 0.0, False
    start, end = max(-b - math.sqrt(disc), 0.0), max(-b + math.sqrt(disc), 0.0)
    sdf_start, sdf_end = at(start), at(end)
    todo_start = todo_end = True
    for iteration in range(sphere_tracing_iters + 1):
        todo_start = todo_start and sdf_start > sdf_threshold
        todo_end = todo_end and sdf_end > sdf_threshold
        if iteration == sphere_tracing_iters or not (todo_start or todo_end):
            break
        step_start = sdf_start if todo_start else 0.0
        step_end = sdf_end if todo_end else 0.0
        start, end = start + step_start, end - step_end
        if todo_start:
            sdf_start = at(start)
        if todo_end:
            sdf_end = at(end)
        for k in range(line_step_iters):
            back_start, back_end = todo_start and sdf_start < 0, todo_end and sdf_end < 0
            if not (back_start or back_end):
                break
            fraction = (1.0 - line_search_step) / 2**k
            if back_start:
                start -= fraction * step_start
                sdf_start = at(start)
            if back_end:
                end += fraction * step_end
                sdf_end = at(end)
        todo_start = todo_start and start < end
        todo_end = todo_end and start < end
    if not todo_start:
        return start, start < end
    # Sphere tracing did not converge: the first sign change among evenly spaced samples.
    ts = [start + i / (n_steps - 1) * (end - start) for i in range(n_steps)]
    values = [at(t) for t in ts]
    first = next((i for i, v in enumerate(values) if v < 0), None)
    if first is None:
        smallest = min(range(n_steps), key=lambda i: values[i])
        return ts[smallest], False
    if first == 0:
        return ts[0], True
    t_low, f_low, t_high, f_high = ts[first - 1], values[first - 1], ts[first], values[first]
    t = t_low - f_low * (t_high - t_low) / (f_high - f_low)
    for _ in range(n_secant_steps):
        value = at(t)
        if value > 0:
            t_low, f_low = t, value
        elif value < 0:
            t_high, f_high = t, value
        t = t_low - f_low * (t_high - t_low) / (f_high - f_low)
    return t, True
