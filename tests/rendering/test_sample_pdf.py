"""Inverse-CDF sampling: the vectorised version against the per-ray reference, and its distribution."""
import pytest
import torch

from recon_trainer.rendering.ray_point_refiner import RayPointRefiner, blur_weights
from recon_trainer.rendering.sample_pdf import inverse_cdf, inverse_cdf_reference, sample_pdf, sample_pdf_reference

from .helpers import axis_ray


def random_bins_and_weights(seed: int, shape=(3, 5), n_bins: int = 16):
    """Random increasing bins and weights with empty bins, in float64: inside a nearly empty bin
    the inverse CDF magnifies float32 rounding of the CDF (both versions are right to 1e-7 in u)."""
    generator = torch.Generator().manual_seed(seed)
    bins = torch.cumsum(torch.rand(*shape, n_bins + 1, generator=generator, dtype=torch.float64) + 0.01, dim=-1)
    weights = torch.rand(*shape, n_bins, generator=generator, dtype=torch.float64)
    weights[weights < 0.3] = 0.0  # some empty bins
    weights[0, 0] = 0.0  # one ray with no weight at all
    return bins, weights


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deterministic_parity(seed):
    bins, weights = random_bins_and_weights(seed)
    fast = sample_pdf(bins, weights, 24, deterministic=True)
    slow = sample_pdf_reference(bins, weights, 24, deterministic=True)
    assert fast.shape == (3, 5, 24)
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=0)
    assert (fast[..., 1:] >= fast[..., :-1]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_parity_with_a_fixed_generator(seed):
    bins, weights = random_bins_and_weights(seed)
    fast = sample_pdf(bins, weights, 24, generator=torch.Generator().manual_seed(7))
    slow = sample_pdf_reference(bins, weights, 24, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=0)
    again = sample_pdf(bins, weights, 24, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(fast, again)


def test_samples_stay_in_the_weighted_bin():
    bins = torch.linspace(0.0, 8.0, 9).expand(2, 9)
    weights = torch.zeros(2, 8)
    weights[0, 3] = 1.0
    weights[1, 6] = 5.0
    samples = sample_pdf(bins, weights, 200, eps=1e-8, generator=torch.Generator().manual_seed(0))
    assert ((samples[0] >= 3.0) & (samples[0] <= 4.0)).all()
    assert ((samples[1] >= 6.0) & (samples[1] <= 7.0)).all()


def test_uniform_weights_give_evenly_spread_samples():
    bins = torch.linspace(1.0, 5.0, 5)[None]
    samples = sample_pdf(bins, torch.ones(1, 4), 9, deterministic=True)
    torch.testing.assert_close(samples, torch.linspace(1.0, 5.0, 9)[None])


def test_an_empty_ray_piles_its_samples_at_the_far_end_as_the_kernel():
    bins = torch.linspace(1.0, 5.0, 5).expand(2, 5)
    weights = torch.zeros(2, 4)
    weights[1, 1] = 1e-6  # below eps: never interpolated in, its draws sit at the bin's near edge
    for function in (sample_pdf, sample_pdf_reference):
        samples = function(bins, weights, 6, deterministic=True)
        torch.testing.assert_close(samples[0], torch.tensor([1.0, 5.0, 5.0, 5.0, 5.0, 5.0]))
        # W = 1e-6 + 1e-5: u <= 1 / 11 falls in bin 1 (its near edge 2.0), the rest past it, at the far end
        torch.testing.assert_close(samples[1], torch.tensor([1.0, 5.0, 5.0, 5.0, 5.0, 5.0]))
        tiny = function(bins, weights, 23, deterministic=True)
        assert tiny[1, 1].item() == 2.0 and tiny[1, 3].item() == 5.0  # u = 1/22 in bin 1, u = 3/22 past it


def test_eps_is_one_mass_after_the_last_bin():
    bins = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    weights = torch.tensor([[0.5, 0.4]], dtype=torch.float64)
    u = torch.tensor([[0.25, 0.5, 0.9, 0.95, 1.0]], dtype=torch.float64)
    # W = 1.0: u = 0.25 -> halfway into bin 0; 0.5 -> its end; 0.9 -> the end of bin 1; beyond: the far edge
    expected = torch.tensor([[0.5, 1.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(inverse_cdf(bins, weights, u, eps=0.1), expected)
    torch.testing.assert_close(inverse_cdf_reference(bins, weights, u, eps=0.1), expected)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"bins must be \(..., K \+ 1\)"):
        sample_pdf(torch.zeros(2, 5), torch.zeros(2, 5), 3)


def test_blur_weights_by_hand():
    # padded [1, 1, 0, 4, 0, 0] -> pairwise max [1, 1, 4, 4, 0] -> pairwise mean [1, 2.5, 4, 2]
    torch.testing.assert_close(blur_weights(torch.tensor([1.0, 0.0, 4.0, 0.0])), torch.tensor([1.0, 2.5, 4.0, 2.0]))


def test_refiner_puts_new_samples_where_the_weight_is():
    lengths = torch.linspace(1.0, 5.0, 9)
    weights = torch.zeros(1, 1, 9)
    weights[..., 4] = 1.0  # the sample at depth 3; its bin runs between the midpoints 2.75 and 3.25
    bundle = axis_ray(lengths)
    refined = RayPointRefiner(n_pts_per_ray=16, random_sampling=False, add_input_samples=False)(bundle, weights)
    assert refined.lengths.shape == (1, 1, 16)
    # evenly spaced draws include u = 0 and u = 1, the outermost bin edges; the others all land in the bin
    inner = refined.lengths[..., 1:-1]
    assert ((inner >= 2.75) & (inner <= 3.25)).all()
    torch.testing.assert_close(refined.lengths[0, 0, [0, -1]], torch.tensor([1.25, 4.75]))
    assert refined.origins is bundle.origins
    merged = RayPointRefiner(n_pts_per_ray=16, random_sampling=True, blurpool_weights=True)(bundle, weights)
    assert merged.lengths.shape == (1, 1, 25)
    assert (merged.lengths[..., 1:] >= merged.lengths[..., :-1]).all()  # sorted
    assert set(lengths.tolist()) <= set(merged.lengths.flatten().tolist())  # the input depths are kept
    with pytest.raises(ValueError, match=">= 3 samples"):
        RayPointRefiner(n_pts_per_ray=4, random_sampling=False)(axis_ray(lengths[:2]), weights[..., :2])
