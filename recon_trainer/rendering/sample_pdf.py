"""Inverse-CDF sampling of piecewise-constant densities over bins (NeRF's hierarchical sampling).

Each ray has K bins with edges `bins` (..., K + 1) and non-negative `weights` (..., K). The
density of bin k is (weights_k + eps) / sum(weights + eps), spread uniformly over the bin; a draw
u in [0, 1] maps to the point where the CDF reaches u (linear within a bin, so continuous in u).
Deterministic draws are n evenly spaced u from 0 to 1; random ones come from `torch.rand`
(optionally with a generator).

`sample_pdf` is the vectorised version; `sample_pdf_reference` is a plain per-ray loop that
states the same computation for the parity test.
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


def sample_pdf(
    bins: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    deterministic: bool = False,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(..., n_samples) points drawn from the densities `weights` (..., K) over bin edges `bins` (..., K + 1).

    Deterministic samples are sorted along the last dimension; random ones are not.
    """
    _check(bins, weights)
    weights = weights + eps
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, dim=-1)], dim=-1)
    u = uniform_draws(cdf.shape[:-1], n_samples, deterministic, generator, cdf.dtype, cdf.device)
    n_bins = weights.shape[-1]
    above = torch.searchsorted(cdf.contiguous(), u, right=True)  # first edge with cdf > u
    lower = (above - 1).clamp(min=0)
    upper = above.clamp(max=n_bins)
    cdf_lower, cdf_upper = cdf.gather(-1, lower), cdf.gather(-1, upper)
    bins_lower, bins_upper = bins.gather(-1, lower), bins.gather(-1, upper)
    mass = cdf_upper - cdf_lower  # 0 only past the last edge, where the bin has no width
    fraction = ((u - cdf_lower) / torch.where(mass > 0, mass, torch.ones_like(mass))).clamp(0.0, 1.0)
    return bins_lower + fraction * (bins_upper - bins_lower)


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
    batch_shape = weights.shape[:-1]
    u_all = uniform_draws(batch_shape, n_samples, deterministic, generator, weights.dtype, weights.device)
    flat_bins = bins.reshape(-1, bins.shape[-1]).tolist()
    flat_weights = weights.reshape(-1, weights.shape[-1]).tolist()
    flat_u = u_all.reshape(-1, n_samples).tolist()
    out = []
    for edges, ray_weights, draws in zip(flat_bins, flat_weights, flat_u):
        padded = [w + eps for w in ray_weights]
        total = sum(padded)
        cdf = [0.0]
        for w in padded:
            cdf.append(cdf[-1] + w / total)
        samples = []
        for u in draws:
            k = 0  # the last edge whose cdf <= u, capped at the final edge
            while k + 1 < len(cdf) and cdf[k + 1] <= u:
                k += 1
            k_up = min(k + 1, len(cdf) - 1)
            mass = cdf[k_up] - cdf[k]
            fraction = min(max((u - cdf[k]) / mass, 0.0), 1.0) if mass > 0 else 0.0
            samples.append(edges[k] + fraction * (edges[k_up] - edges[k]))
        out.append(samples)
    return torch.tensor(out, dtype=bins.dtype, device=bins.device).reshape(*batch_shape, n_samples)
