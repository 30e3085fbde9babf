"""Inverse-CDF sampling of piecewise-constant densities over bins (NeRF's hierarchical sampling).

Each ray has K bins with edges `bins` (..., K + 1) and non-negative `weights` (..., K). The rule
is that of pytorch3d's compiled `sample_pdf` kernel (the one Implicitron's RayPointRefiner calls):

- The weights are used as they are; `eps` is added once, to the total W = sum(weights) + eps,
  as an extra mass after the last bin (not to every bin, as NeRF's original Python does).
- A draw u in [0, 1] is scaled to m = u * W. It falls in the first bin k whose cumulative weight
  S_k = w_0 + ... + w_k reaches m (the last bin when none does), with r = m - S_{k-1} left over.
- If r > w_k (only past the last bin: m in the eps mass) the sample is the bin's far edge;
  else, if w_k > eps, it lies a fraction r / w_k into the bin (linear interpolation); else it is
  the bin's near edge.

So a ray whose weights are all zero gives its u = 0 draw at the first edge and every other draw
at the last edge (the far end), as the kernel does; a non-empty ray sends a fraction eps / W of
its draws to the last edge. Deterministic draws are n evenly spaced u from 0 to 1 (sorted
samples); random ones come from `torch.rand` (optionally with a generator).

`inverse_cdf` maps given levels u to points (vectorised); `inverse_cdf_reference` is a plain
per-ray loop that walks the bins one at a time (as the kernel's CUDA version does), for the
parity test. `sample_pdf` / `sample_pdf_reference` draw u and call them.
"""

import torch


def uniform_draws(
    batch_shape: torch.Size,
    n_samples: int,
    deterministic: bool,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """(*batch_shape, n_samples) CDF levels u in [0, 1]: evenly spaced, or uniform random draws."""
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, dtype=dtype, device=device)
        return u.expand(*batch_shape, n_samples).contiguous()
    return torch.rand(*batch_shape, n_samples, dtype=dtype, device=device, generator=generator)


def _check(bins: torch.Tensor, weights: torch.Tensor) -> None:
    if bins.shape[:-1] != weights.shape[:-1] or bins.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(
            f"sample_pdf: bins must be (..., K + 1) and weights (..., K), "
            f"got {tuple(bins.shape)} and {tuple(weights.shape)}"
        )


def inverse_cdf(bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(..., N) points at the CDF levels u (..., N) in [0, 1] of `weights` (..., K) >= 0 over `bins` (..., K + 1).

    The kernel's rule (module docstring); bins and the result share a unit (e.g. distances along rays).
    """
    _check(bins, weights)
    n_bins = weights.shape[-1]
    partial = torch.cumsum(weights, dim=-1)  # S_k
    mass = (partial[..., -1:] + eps) * u  # m = u * W
    if n_bins > 1:  # first k < K - 1 with S_k >= m, else K - 1
        k = torch.searchsorted(partial[..., :-1].contiguous(), mass.contiguous(), right=False)
    else:
        k = torch.zeros_like(mass, dtype=torch.long)
    below = torch.where(k > 0, partial.gather(-1, (k - 1).clamp(min=0)), torch.zeros_like(mass))  # S_{k-1}
    rest = mass - below
    bin_weight = weights.gather(-1, k)
    start, end = bins.gather(-1, k), bins.gather(-1, k + 1)
    inside = bin_weight > eps
    fraction = rest / torch.where(inside, bin_weight, torch.ones_like(bin_weight))
    within = torch.where(inside, start + fraction * (end - start), start)
    return torch.where(rest > bin_weight, end, within)


def inverse_cdf_reference(
    bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """The same as `inverse_cdf`, one ray and one level at a time, walking the bins (slow; for tests)."""
    _check(bins, weights)
    flat_bins = bins.reshape(-1, bins.shape[-1]).tolist()
    flat_weights = weights.reshape(-1, weights.shape[-1]).tolist()
    flat_u = u.reshape(-1, u.shape[-1]).tolist()
    out = []
    for edges, ray_weights, levels in zip(flat_bins, flat_weights, flat_u):
        total = sum(ray_weights) + eps
        samples = []
        for level in levels:
            rest, k = level * total, 0
            while k + 1 < len(ray_weights) and rest > ray_weights[k]:  # walk past the bins rest exceeds
                rest -= ray_weights[k]
                k += 1
            start, end, weight = edges[k], edges[k + 1], ray_weights[k]
            if rest > weight:  # beyond the last bin's weight: the eps mass at the far end
                samples.append(end)
            elif weight > eps:
                samples.append(start + rest / weight * (end - start))
            else:
                samples.append(start)
        out.append(samples)
    return torch.tensor(out, dtype=bins.dtype, device=bins.device).reshape(u.shape)


def sample_pdf(
    bins: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    deterministic: bool = False,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(..., n_samples) points drawn from the densities `weights` (..., K) >= 0 over bin edges `bins` (..., K + 1).

    Deterministic samples are sorted along the last dimension; random ones are not. Not differentiable.
    """
    _check(bins, weights)
    u = uniform_draws(weights.shape[:-1], n_samples, deterministic, generator, weights.dtype, weights.device)
    return inverse_cdf(bins, weights, u, eps)


def sample_pdf_reference(
    bins: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    deterministic: bool = False,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The same as `sample_pdf`, one ray and one draw at a time (slow; for tests)."""
    _check(bins, weights)
    u = uniform_draws(weights.shape[:-1], n_samples, deterministic, generator, weights.dtype, weights.device)
    return inverse_cdf_reference(bins, weights, u, eps)
