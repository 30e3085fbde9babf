"""Importance sampling between passes: new depths where a previous pass put its weight."""
import torch

from .ray_bundle import RayBundle
from .sample_pdf import sample_pdf


def blur_weights(weights: torch.Tensor) -> torch.Tensor:
    """(..., P) weights smoothed as mip-NeRF's blurpool: max over neighbour pairs, then their mean.

    The ends are padded by repeating the end weights, so the shape is kept.
    """
    padded = torch.cat([weights[..., :1], weights, weights[..., -1:]], dim=-1)
    pair_max = torch.maximum(padded[..., :-1], padded[..., 1:])
    return 0.5 * (pair_max[..., :-1] + pair_max[..., 1:])


class RayPointRefiner(torch.nn.Module):
    """Draws n_pts_per_ray new depths per ray from the weights of the current samples.

    The bins are the intervals between midpoints of consecutive input depths, weighted by the
    interior samples' weights (NeRF's hierarchical sampling), so a ray needs >= 3 input samples.
    n_pts_per_ray: depths drawn per ray.
    random_sampling: random draws (else evenly spaced quantiles of the weights).
    add_input_samples: the output holds the input depths too (sorted with the new ones).
    blurpool_weights: smooth the weights with `blur_weights` first.
    sample_pdf_eps: the extra mass after the last bin and the smallest weight a bin is interpolated
        in (`sample_pdf`, pytorch3d's kernel rule); a ray without weight puts its samples at the far end.
    """

    def __init__(
        self,
        n_pts_per_ray: int,
        random_sampling: bool,
        add_input_samples: bool = True,
        blurpool_weights: bool = False,
        sample_pdf_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.n_pts_per_ray = n_pts_per_ray
        self.random_sampling = random_sampling
        self.add_input_samples = add_input_samples
        self.blurpool_weights = blurpool_weights
        self.sample_pdf_eps = sample_pdf_eps

    def forward(self, ray_bundle: RayBundle, ray_weights: torch.Tensor) -> RayBundle:
        """The bundle with new (B, ..., n_pts_per_ray [+ P]) sorted lengths; ray_weights: (B, ..., P)."""
        lengths = ray_bundle.lengths
        if lengths.shape[-1] < 3:
            raise ValueError(f"RayPointRefiner needs >= 3 samples per ray to refine, got {lengths.shape[-1]}")
        with torch.no_grad():
            weights = blur_weights(ray_weights) if self.blurpool_weights else ray_weights
            mids = torch.lerp(lengths[..., 1:], lengths[..., :-1], 0.5)  # midpoints, rounded as Implicitron's
            new = sample_pdf(
                mids,
                weights[..., 1:-1],
                self.n_pts_per_ray,
                deterministic=not self.random_sampling,
                eps=self.sample_pdf_eps,
            )
            if self.add_input_samples:
                new = torch.cat([lengths, new], dim=-1)
            new = torch.sort(new, dim=-1).values
        return ray_bundle.with_lengths(new)
