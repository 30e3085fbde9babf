"""MoGe focal/shift recovery: the batched solver and the scipy reference recover the truth on
noise-free synthetic point maps, agree with each other on noisy ones, and agree with the ORIGINAL
MoGe function (fixture tests/fixtures/moge/focal_shift.pt, made by
tools/parity/make_moge_geometry_fixtures.py); the view-plane UV grid equals MoGe's."""
import os

import pytest
import torch

from recon_trainer_plugins.moge.focal_shift import recover_focal_shift
from recon_trainer_plugins.moge.focal_shift_reference import recover_focal_shift_reference
from recon_trainer_plugins.moge.geometry import normalized_view_plane_uv

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "moge", "focal_shift.pt")
# MoGe stops scipy's LM at ftol=1e-3, before the optimum: our converged solution differs from its
# output by up to this much (relative focal; shift relative to the depth scale ~1).
ORIGINAL_TOLERANCE = 3e-3
# Converged against converged (scipy at ftol=1e-15): both reach the optimum to float32 precision.
CONVERGED_TOLERANCE = 2e-5


def synthetic(batch: int, height: int, width: int, noise: float, seed: int):
    """Affine-invariant point maps of random perspective scenes: (points (B,H,W,3), mask (B,H,W),
    true focal (B,), true shift (B,)); the camera-space depth is points z + shift."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    uv = normalized_view_plane_uv(width, height, dtype=torch.float64)
    focal = 0.6 + 1.4 * rand(batch)
    depth = 1 + 3 * rand(batch, 1, 1) + 3 * rand(batch, height, width) * rand(batch, 1, 1)
    scale = 0.5 + rand(batch)
    shift = (rand(batch) - 0.5) * 1.5 * scale
    xy = uv * (depth / focal[:, None, None])[..., None]
    points = torch.cat([xy, depth[..., None]], dim=-1) * scale[:, None, None, None]
    points[..., 2] -= shift[:, None, None]
    jitter = torch.randn(points.shape, generator=generator, dtype=torch.float64)
    points = points + noise * jitter * scale[:, None, None, None]
    mask = rand(batch, height, width) > 0.3
    return points.float(), mask, focal.float(), shift.float()


@pytest.mark.parametrize("size", [(48, 64), (64, 64), (100, 75)])
def test_recovers_truth_without_noise(size):
    points, mask, focal, shift = synthetic(5, *size, noise=0.0, seed=sum(size))
    for solver in (recover_focal_shift, recover_focal_shift_reference):
        got_focal, got_shift = solver(points, mask)
        torch.testing.assert_close(got_focal, focal, rtol=1e-5, atol=0)
        torch.testing.assert_close(got_shift, shift, rtol=0, atol=1e-5)
        _, shift_only = solver(points, mask, focal=focal)
        torch.testing.assert_close(shift_only, shift, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noise", [0.01, 0.05])
def test_matches_converged_reference_on_noisy_maps(seed, noise):
    points, mask, focal, _ = synthetic(6, 40, 56, noise=noise, seed=seed)
    got = recover_focal_shift(points, mask)
    expected = recover_focal_shift_reference(points, mask, ftol=1e-15)
    torch.testing.assert_close(got[0], expected[0], rtol=CONVERGED_TOLERANCE, atol=0)
    torch.testing.assert_close(got[1], expected[1], rtol=0, atol=CONVERGED_TOLERANCE)
    shift_only = recover_focal_shift(points, mask, focal=focal)[1]
    expected = recover_focal_shift_reference(points, mask, focal=focal, ftol=1e-15)[1]
    torch.testing.assert_close(shift_only, expected, rtol=0, atol=CONVERGED_TOLERANCE)


def test_few_points_fall_back_and_bad_points_are_ignored():
    points, mask, focal, shift = synthetic(4, 32, 32, noise=0.0, seed=7)
    mask[0] = False  # nothing: focal 1, shift 0
    mask[1] = False
    mask[1, 3, 3] = True  # a single point (32 -> 64 upsampling repeats it; still one point at 16)
    points[2, :4] = float("nan")  # non-finite points are left out even where the mask says valid
    points[3, -4:] = float("inf")
    got_focal, got_shift = recover_focal_shift(points, mask, downsample_size=(16, 16))
    assert got_focal[:2].tolist() == [1.0, 1.0] and got_shift[:2].tolist() == [0.0, 0.0]
    torch.testing.assert_close(got_focal[2:], focal[2:], rtol=1e-5, atol=0)
    torch.testing.assert_close(got_shift[2:], shift[2:], rtol=0, atol=1e-5)
    known = recover_focal_shift(points, mask, focal=focal, downsample_size=(16, 16))
    assert torch.equal(known[0], focal) and known[1][:2].tolist() == [0.0, 0.0]


def test_leading_dimensions_and_no_mask():
    points, _, focal, shift = synthetic(4, 24, 40, noise=0.0, seed=3)
    got_focal, got_shift = recover_focal_shift(points.reshape(2, 2, 24, 40, 3))
    assert got_focal.shape == got_shift.shape == (2, 2)
    torch.testing.assert_close(got_focal.reshape(-1), focal, rtol=1e-5, atol=0)
    torch.testing.assert_close(got_shift.reshape(-1), shift, rtol=0, atol=1e-5)
    single = recover_focal_shift(points[0])
    assert single[0].shape == () and torch.allclose(single[1], shift[0], atol=1e-5)


@pytest.fixture(scope="module")
def original():
    return torch.load(FIXTURE, weights_only=True)


def test_view_plane_uv_equals_original(original):
    sizes = [key for key in original if key.startswith("uv_")]
    assert sizes
    for key in sizes:
        width, height = (int(n) for n in key[3:].split("x"))
        ours = normalized_view_plane_uv(width, height, dtype=torch.float32)
        torch.testing.assert_close(ours, original[key], rtol=0, atol=1e-6)


def test_matches_original_moge(original):
    points, mask = original["points"], original["mask"]
    cases = [
        ({}, original["focal"], original["shift"]),
        ({"downsample_size": (12, 16)}, original["focal_16"], original["shift_16"]),
    ]
    for kwargs, focal, shift in cases:
        ours = recover_focal_shift(points, mask, **kwargs)
        torch.testing.assert_close(ours[0], focal, rtol=ORIGINAL_TOLERANCE, atol=0)
        torch.testing.assert_close(ours[1], shift, rtol=0, atol=ORIGINAL_TOLERANCE)
        # The reference runs the original's algorithm (same start, same ftol): same numbers.
        reference = recover_focal_shift_reference(points, mask, **kwargs)
        torch.testing.assert_close(reference[0], focal, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(reference[1], shift, rtol=0, atol=1e-5)
    known = original["known_focal"]
    expected = original["shift_known"]
    torch.testing.assert_close(recover_focal_shift(points, mask, focal=known)[1], expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(recover_focal_shift_reference(points, mask, focal=known)[1], expected, rtol=0, atol=1e-5)
