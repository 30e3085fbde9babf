"""Parity with Implicitron's ray sampling and importance sampling (fixture made by
tools/parity/make_implicitron_ray_fixtures.py from the original pytorch3d, its C++ sample_pdf kernel)."""
from pathlib import Path

import pytest
import torch

from recon_trainer.data.cameras import PerspectiveCameras
from recon_trainer.models.base import EvaluationMode
from recon_trainer.rendering.ray_bundle import RayBundle
from recon_trainer.rendering.ray_point_refiner import RayPointRefiner
from recon_trainer.rendering.raysampler import AdaptiveRaySampler, NearFarRaySampler
from recon_trainer.rendering.sample_pdf import inverse_cdf, inverse_cdf_reference, sample_pdf, sample_pdf_reference

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "implicitron" / "rays.pt"
SAMPLERS = {"AdaptiveRaySampler": AdaptiveRaySampler, "NearFarRaySampler": NearFarRaySampler}


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("case", ["adaptive_wide", "adaptive_inside", "near_far_tall"])
def test_ray_bundle_equals_implicitrons(fixture, case):
    ref = fixture["samplers"][case]
    cams = ref["cameras"]
    cameras = PerspectiveCameras(
        R=cams["R"], T=cams["T"], focal_length=cams["focal_length"], principal_point=cams["principal_point"],
        image_size=cams["image_size"],
    )
    settings = dict(ref["settings"])
    if "scene_center" in settings:
        settings["scene_center"] = tuple(settings["scene_center"])
    sampler = SAMPLERS[ref["class"]](**settings)  # our defaults: unit directions, the first camera's near/far
    bundle = sampler(cameras, EvaluationMode.EVALUATION)
    for name in ("origins", "directions", "lengths", "xys"):
        torch.testing.assert_close(getattr(bundle, name), ref[name], atol=1e-5, rtol=0, msg=f"{case}: {name}")


def test_the_z_depth_switch_keeps_the_rays_and_changes_the_unit(fixture):
    ref = fixture["samplers"]["near_far_tall"]
    cams = ref["cameras"]
    cameras = PerspectiveCameras(R=cams["R"], T=cams["T"], focal_length=cams["focal_length"],
                                 principal_point=cams["principal_point"])
    bundle = NearFarRaySampler(**ref["settings"], unit_directions=False)(cameras, EvaluationMode.EVALUATION)
    torch.testing.assert_close(torch.nn.functional.normalize(bundle.directions, dim=-1), ref["directions"],
                               atol=1e-5, rtol=0)
    # the same lengths now mean view depths: the points lie further out by |direction| >= 1
    stretch = bundle.directions.norm(dim=-1, keepdim=True)
    assert (stretch >= 1.0).all()
    torch.testing.assert_close(bundle.ray_points(), ref["origins"][..., None, :]
                               + (ref["lengths"] * stretch)[..., None] * ref["directions"][..., None, :],
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "case", ["deterministic_eps1e-05", "deterministic_eps0.01", "random_eps1e-05", "random_eps0.01"]
)
def test_inverse_cdf_equals_the_kernel(fixture, case):
    ref = fixture["sample_pdf"]
    bins, weights = ref["bins"], ref["weights"]
    c = ref["cases"][case]
    expected = c["samples"]
    torch.testing.assert_close(inverse_cdf(bins, weights, c["u"], c["eps"]), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(inverse_cdf_reference(bins, weights, c["u"], c["eps"]), expected, atol=1e-5, rtol=0)
    if case.startswith("deterministic"):
        n = expected.shape[-1]
        torch.testing.assert_close(sample_pdf(bins, weights, n, deterministic=True, eps=c["eps"]), expected,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(sample_pdf_reference(bins, weights, n, deterministic=True, eps=c["eps"]),
                                   expected, atol=1e-5, rtol=0)
    # the empty rays (rows 0 and 1): u = 0 at the first edge, every other level at the far end
    for row in (0, 1):
        nonzero = c["u"][row] > 0
        assert torch.equal(expected[row, nonzero], bins[row, -1].expand(int(nonzero.sum())))


@pytest.mark.parametrize("case", ["add1_blur0", "add1_blur1", "add0_blur0", "add0_blur1"])
def test_refiner_equals_implicitrons(fixture, case):
    ref = fixture["refiner"]
    out = ref["outputs"][case]
    lengths = ref["lengths"]
    b, r = lengths.shape[:2]
    bundle = RayBundle(origins=torch.zeros(b, r, 3), directions=torch.zeros(b, r, 3), lengths=lengths,
                       xys=torch.zeros(b, r, 2))
    refined = RayPointRefiner(**out["settings"])(bundle, ref["weights"])
    torch.testing.assert_close(refined.lengths, out["lengths"], atol=1e-5, rtol=0)
