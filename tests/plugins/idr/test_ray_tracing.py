"""IDR ray tracing against analytic sphere intersections and against the plain per-ray version."""

import math

import pytest
import torch

from recon_trainer_plugins.idr.plain_reference import trace_ray
from recon_trainer_plugins.idr.ray_tracing import RayTracing, first_sign_change, sphere_intersections

RADIUS = 0.7  # the analytic sphere
BOUND = 1.5  # the bounding sphere


def rays(n: int = 120, seed: int = 0):
    """Unit rays from around (0, 0, -3) towards points near the origin: about half hit the sphere."""
    generator = torch.Generator().manual_seed(seed)
    origins = torch.tensor([0.0, 0.0, -3.0]) + 0.1 * torch.randn(n, 3, generator=generator)
    targets = 0.5 * torch.randn(n, 3, generator=generator)
    return origins, torch.nn.functional.normalize(targets - origins, dim=-1)


def analytic_hits(origins, directions):
    b = (origins * directions).sum(-1)
    disc = b * b - ((origins * origins).sum(-1) - RADIUS**2)
    return disc > 0, -b - disc.clamp(min=0).sqrt()


def scaled_sphere_sdf(scale: float):
    """scale * (|x| - RADIUS): exact for 1, an under-estimate (< 1: slow sphere tracing, the sampler
    and secant steps finish) or an over-estimate (> 1: fronts cross the surface, line search)."""
    return lambda points, ray_ids: scale * (points.norm(dim=-1) - RADIUS)


@pytest.mark.parametrize("scale", [1.0, 0.3, 1.5])
def test_hits_match_the_analytic_sphere_intersections(scale):
    origins, directions = rays()
    distances, hits = RayTracing(object_bounding_sphere=BOUND).trace(scaled_sphere_sdf(scale), origins, directions)
    expected_hits, expected_distances = analytic_hits(origins, directions)
    assert torch.equal(hits, expected_hits)
    assert 40 < int(hits.sum()) < 110
    assert (distances - expected_distances)[hits].abs().max() < 2e-4


@pytest.mark.parametrize("scale", [1.0, 0.3, 1.5])
def test_vectorised_tracing_matches_the_per_ray_reference(scale):
    origins, directions = rays(40, seed=1)
    tracer = RayTracing(object_bounding_sphere=BOUND)
    distances, hits = tracer.trace(scaled_sphere_sdf(scale), origins, directions)

    def point_sdf(point):
        return scale * (math.sqrt(sum(c * c for c in point)) - RADIUS)

    settings = {
        key: getattr(tracer, key)
        for key in (
            "sdf_threshold",
            "line_search_step",
            "line_step_iters",
            "sphere_tracing_iters",
            "n_steps",
            "n_secant_steps",
        )
    }
    for i in range(len(origins)):
        distance, hit = trace_ray(
            point_sdf, origins[i].tolist(), directions[i].tolist(), radius=BOUND, **settings
        )
        assert hit == bool(hits[i]), i
        if hit:
            assert distance == pytest.approx(float(distances[i]), abs=1e-5), i


def test_training_puts_missed_and_outside_rays_at_their_smallest_sdf():
    origins, directions = rays(seed=2)
    expected_hits, expected_distances = analytic_hits(origins, directions)
    object_mask = expected_hits.clone()
    object_mask[:10] = ~object_mask[:10]  # some rays disagree with the SDF
    torch.manual_seed(0)
    distances, hits = RayTracing(object_bounding_sphere=BOUND).trace(
        scaled_sphere_sdf(1.0), origins, directions, object_mask
    )
    assert torch.equal(hits, expected_hits)
    points = origins + distances[:, None] * directions
    agree = hits & object_mask
    assert (distances - expected_distances)[agree].abs().max() < 2e-4
    # missed rays: the smallest SDF along a ray is at its closest approach to the centre
    missed = ~hits
    closest = -(origins * directions).sum(-1)
    assert (distances - closest)[missed].abs().max() < 0.1
    # hit rays outside the object mask: a point inside the surface (negative SDF)
    outside_hits = hits & ~object_mask
    assert outside_hits.any() and (points[outside_hits].norm(dim=-1) < RADIUS).all()


def test_rays_missing_the_bounding_sphere_do_not_hit():
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.0, 2.0, -3.0]])
    directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    near, far, crosses = sphere_intersections(origins, directions, BOUND)
    assert crosses.tolist() == [True, False]
    assert near[0] == pytest.approx(1.5) and far[0] == pytest.approx(4.5)
    _, hits = RayTracing(object_bounding_sphere=BOUND).trace(scaled_sphere_sdf(1.0), origins, directions)
    assert hits.tolist() == [True, False]


def test_first_sign_change_finds_the_first_negative_sample():
    values = torch.tensor([[3.0, 1.0, -1.0, -2.0, 1.0], [3.0, 2.0, 1.0, 2.0, 3.0], [1.0, -1.0, 1.0, -1.0, 1.0]])
    index, crosses = first_sign_change(values)
    assert index.tolist()[0] == 2 and index.tolist()[2] == 1
    assert crosses.tolist() == [True, False, True]
