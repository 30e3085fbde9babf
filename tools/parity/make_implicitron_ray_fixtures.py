"""Make the parity fixture of Implicitron's ray sampling and importance sampling:
tests/fixtures/implicitron/rays.pt.

Runs the ORIGINAL pytorch3d / Implicitron code (a compiled pytorch3d: the importance sampler is its
C++ kernel `pytorch3d._C.sample_pdf`) and stores plain tensors:

- "samplers": for each case, Implicitron's AdaptiveRaySampler / NearFarRaySampler in evaluation
  mode (full grid, no stratification, unit directions, as Implicitron always builds them) on a
  fixed batch of pytorch3d PerspectiveCameras (NDC, non-square focal and image, principal point
  off centre): the sampler's settings, the cameras (R, T, focal_length, principal_point and the
  grid size image_size (H, W)) and the ray bundle (origins, directions, lengths, xys).
- "sample_pdf": bins, weights (with all-zero rows, rows below eps, one-bin spikes, random rows),
  CDF levels u (evenly spaced, and random), eps, and the kernel's output for them.
- "refiner": RayPointRefiner (deterministic) on fixed lengths and weights (all-zero rows
  included), with and without add_input_samples and blurpool_weights: its settings, inputs and
  output lengths.

Not run by the test suite. Run it with the Python that has pytorch3d built (DEVELOPERS.md of the
reference builds it from source), e.g.

    /work/ref/p3venv/bin/python tools/parity/make_implicitron_ray_fixtures.py \\
        --pytorch3d_repo /work/ref/pytorch3d --out tests/fixtures/implicitron
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict

import torch

SAMPLER_CASES = [
    # name, class, grid (H, W), settings; the cameras are `cameras(seed, n)`
    ("adaptive_wide", "AdaptiveRaySampler", (6, 10), {"scene_extent": 2.5, "scene_center": (0.2, -0.1, 0.3)}, 0, 3),
    ("adaptive_inside", "AdaptiveRaySampler", (5, 4), {"scene_extent": 6.0, "scene_center": (0.0, 0.0, 0.0)}, 1, 2),
    ("near_far_tall", "NearFarRaySampler", (9, 5), {"min_depth": 0.5, "max_depth": 6.0}, 2, 2),
]
N_PTS = 7


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pytorch3d_repo", required=True, help="the pytorch3d checkout the installed build comes from")
    parser.add_argument("--out", required=True, help="output folder of rays.pt")
    args = parser.parse_args()
    try:  # the compiled build (site-packages); the checkout itself has no _C unless built in place
        import pytorch3d._C  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.abspath(args.pytorch3d_repo))
        import pytorch3d._C  # noqa: F401
    os.makedirs(args.out, exist_ok=True)
    return args


def cameras(seed: int, n: int):
    """n pytorch3d PerspectiveCameras (NDC) around the origin, fx != fy, principal point off centre."""
    from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform

    generator = torch.Generator().manual_seed(seed)
    dist = 3.0 + 2.0 * torch.rand(n, generator=generator)
    elev = -30.0 + 60.0 * torch.rand(n, generator=generator)
    azim = 360.0 * torch.rand(n, generator=generator)
    at = 0.3 * (torch.rand(n, 3, generator=generator) - 0.5)
    R, T = look_at_view_transform(dist=dist, elev=elev, azim=azim, at=at)
    focal = 1.2 + torch.rand(n, 2, generator=generator)
    principal = 0.4 * (torch.rand(n, 2, generator=generator) - 0.5)
    return PerspectiveCameras(R=R, T=T, focal_length=focal, principal_point=principal)


def sampler_case(name: str, class_name: str, grid: tuple, settings: Dict[str, Any], seed: int, n: int) -> Dict:
    from pytorch3d.implicitron.models.renderer import ray_sampler
    from pytorch3d.implicitron.models.renderer.base import EvaluationMode

    height, width = grid
    args = {"image_height": height, "image_width": width, "n_pts_per_ray_evaluation": N_PTS, **settings}
    sampler = getattr(ray_sampler, class_name)(**args)
    cams = cameras(seed, n)
    with torch.no_grad():
        bundle = sampler(cams, EvaluationMode.EVALUATION)
    return {
        "class": class_name,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()},
        "cameras": {
            "R": cams.R.clone(),
            "T": cams.T.clone(),
            "focal_length": cams.focal_length.clone(),
            "principal_point": cams.principal_point.clone(),
            "image_size": torch.tensor([[height, width]] * n),
        },
        "origins": bundle.origins.clone(),
        "directions": bundle.directions.clone(),
        "lengths": bundle.lengths.clone(),
        "xys": bundle.xys.clone(),
    }


def fixed_weights(n_rays: int, n_bins: int, seed: int) -> torch.Tensor:
    """(n_rays, n_bins) weights: rows 0-1 all zero, 2 all below 1e-5, 3 one spike, 4 spike in the
    last bin, 5 zeros but the first bin, the rest random with empty bins."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(n_rays, n_bins, generator=generator)
    weights[weights < 0.4] = 0.0
    weights[0:2] = 0.0
    weights[2] = 5e-6 * torch.rand(n_bins, generator=generator)
    weights[3] = 0.0
    weights[3, n_bins // 2] = 0.7
    weights[4] = 0.0
    weights[4, -1] = 2.0
    weights[5] = 0.0
    weights[5, 0] = 0.05
    weights[6] *= 1e-3  # a faint ray: eps is a sizeable part of its total
    return weights


def sample_pdf_case() -> Dict:
    from pytorch3d import _C

    generator = torch.Generator().manual_seed(10)
    n_rays, n_bins, n_samples = 12, 9, 11
    bins = torch.cumsum(0.05 + torch.rand(n_rays, n_bins + 1, generator=generator), dim=-1) + 1.0
    weights = fixed_weights(n_rays, n_bins, 11)
    cases = {}
    for kind in ("deterministic", "random"):
        for eps in (1e-5, 1e-2):
            if kind == "deterministic":
                u = torch.linspace(0.0, 1.0, n_samples).expand(n_rays, n_samples).contiguous()
            else:
                u = torch.rand(n_rays, n_samples, generator=generator)
            output = u.clone()
            _C.sample_pdf(bins, weights, output, eps)  # the kernel overwrites the levels with the samples
            cases[f"{kind}_eps{eps:g}"] = {"u": u, "eps": eps, "samples": output}
    # the Python entry point, deterministic (it makes the same levels itself)
    from pytorch3d.renderer.implicit.sample_pdf import sample_pdf

    entry = sample_pdf(bins, weights, n_samples, det=True, eps=1e-5)
    torch.testing.assert_close(entry, cases["deterministic_eps1e-05"]["samples"], rtol=0, atol=0)
    return {"bins": bins, "weights": weights, "cases": cases}


def refiner_case() -> Dict:
    from pytorch3d.implicitron.models.renderer.base import ImplicitronRayBundle
    from pytorch3d.implicitron.models.renderer.ray_point_refiner import RayPointRefiner

    generator = torch.Generator().manual_seed(20)
    batch, n_rays, n_pts = 2, 5, 10
    lengths = torch.cumsum(0.1 + torch.rand(batch, n_rays, n_pts, generator=generator), dim=-1) + 0.5
    weights = fixed_weights(batch * n_rays, n_pts, 21).reshape(batch, n_rays, n_pts)
    bundle = ImplicitronRayBundle(
        origins=torch.zeros(batch, n_rays, 3),
        directions=torch.nn.functional.normalize(torch.rand(batch, n_rays, 3, generator=generator), dim=-1),
        lengths=lengths,
        xys=torch.zeros(batch, n_rays, 2),
    )
    outputs = {}
    for add_input_samples in (True, False):
        for blurpool_weights in (False, True):
            settings = {
                "n_pts_per_ray": 8,
                "random_sampling": False,
                "add_input_samples": add_input_samples,
                "blurpool_weights": blurpool_weights,
                "sample_pdf_eps": 1e-5,
            }
            refiner = RayPointRefiner(**settings)
            out = refiner(bundle, weights)
            outputs[f"add{int(add_input_samples)}_blur{int(blurpool_weights)}"] = {
                "settings": settings,
                "lengths": out.lengths.clone(),
            }
    return {"lengths": lengths, "weights": weights, "outputs": outputs}


def main() -> None:
    args = parse_args()
    import pytorch3d

    torch.set_num_threads(1)
    fixture = {
        "meta": {"pytorch3d_version": pytorch3d.__version__, "torch_version": str(torch.__version__)},
        "samplers": {case[0]: sampler_case(*case) for case in SAMPLER_CASES},
        "sample_pdf": sample_pdf_case(),
        "refiner": refiner_case(),
    }
    path = os.path.join(args.out, "rays.pt")
    torch.save(fixture, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
