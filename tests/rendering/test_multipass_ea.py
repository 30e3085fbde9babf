"""MultiPassEmissionAbsorptionRenderer on a ball of density: depth, passes, importance sampling."""
import functools

import pytest
import torch

from recon_trainer.config import get_default_args, registry
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.models.base import EvaluationMode
from recon_trainer.rendering.multipass_ea import MultiPassEmissionAbsorptionRenderer
from recon_trainer.rendering.raysampler import NearFarRaySampler
from recon_trainer.rendering.renderer import BaseRenderer, render_in_chunks

from .helpers import DensitySphere, axis_ray

TRAINING, EVALUATION = EvaluationMode.TRAINING, EvaluationMode.EVALUATION


def renderer(**kwargs) -> MultiPassEmissionAbsorptionRenderer:
    args = {"n_pts_per_ray_fine_training": 32, "n_pts_per_ray_fine_evaluation": 32}
    args.update(kwargs)
    return MultiPassEmissionAbsorptionRenderer(**args)


def test_registered_with_reference_defaults():
    assert "MultiPassEmissionAbsorptionRenderer" in {c.__name__ for c in registry.get_all(BaseRenderer)}
    args = get_default_args(MultiPassEmissionAbsorptionRenderer)
    assert args.raymarcher_class_type == "EmissionAbsorptionRaymarcher"
    assert (args.n_pts_per_ray_fine_training, args.n_pts_per_ray_fine_evaluation) == (64, 64)
    assert (args.stratified_sampling_coarse_training, args.stratified_sampling_coarse_evaluation) == (True, False)
    assert args.append_coarse_samples_to_fine is True and args.density_noise_std_train == 0.0
    assert args.return_weights is False and args.blurpool_weights is False and args.sample_pdf_eps == 1e-5
    assert args.render_features_dimensions == 3 and args.object_bounding_sphere == 1.0
    assert args.raymarcher_EmissionAbsorptionRaymarcher_args.background_opacity == 1e10
    built = MultiPassEmissionAbsorptionRenderer(**args)
    assert type(built.raymarcher).__name__ == "EmissionAbsorptionRaymarcher"
    assert not built.requires_object_mask()


def test_depth_through_the_centre_is_the_distance_to_the_surface():
    # camera 3 units from the centre of a unit ball: the surface is at depth 2
    sphere = DensitySphere()
    coarse = axis_ray(torch.linspace(0.5, 5.5, 32))
    one_pass = renderer()(ray_bundle=coarse, implicit_functions=[sphere], evaluation_mode=EVALUATION)
    assert one_pass.prev_stage is None
    # within one coarse interval (5 / 31) of the surface
    torch.testing.assert_close(one_pass.depths, torch.tensor([[[2.0]]]), atol=5 / 31, rtol=0)
    torch.testing.assert_close(one_pass.masks, torch.ones(1, 1, 1))
    two_pass = renderer()(ray_bundle=coarse, implicit_functions=[sphere, sphere], evaluation_mode=EVALUATION)
    assert two_pass.prev_stage is not None and two_pass.prev_stage.prev_stage is None
    torch.testing.assert_close(two_pass.prev_stage.depths, one_pass.depths)
    # NeRF's refinement centres the bins on the coarse samples, so the fine samples start about half a
    # coarse interval before the first coarse sample inside the ball: closer, not exact
    fine_error, coarse_error = (two_pass.depths - 2.0).abs().item(), (one_pass.depths - 2.0).abs().item()
    assert fine_error < 0.06 and fine_error < coarse_error
    assert two_pass.features.shape == (1, 1, 3) and two_pass.masks.shape == (1, 1, 1)


def test_fine_samples_concentrate_near_the_surface():
    sphere = DensitySphere()
    coarse_lengths = torch.linspace(0.5, 5.5, 32)
    out = renderer(append_coarse_samples_to_fine=False, return_weights=True)(
        ray_bundle=axis_ray(coarse_lengths), implicit_functions=[sphere, sphere], evaluation_mode=EVALUATION
    )
    fine_lengths = sphere.calls[1].lengths
    assert fine_lengths.shape == (1, 1, 32)

    def near_surface(lengths):
        return ((lengths - 2.0).abs() < 0.25).float().mean().item()

    assert near_surface(coarse_lengths) < 0.2 and near_surface(fine_lengths) > 0.8
    assert out.aux["weights"].shape == (1, 1, 32) and out.prev_stage.aux["weights"].shape == (1, 1, 32)
    # appended coarse samples: the fine pass evaluates both sets, sorted
    default = renderer()(
        ray_bundle=axis_ray(coarse_lengths), implicit_functions=[sphere, sphere], evaluation_mode=EVALUATION
    )
    assert sphere.calls[-1].lengths.shape == (1, 1, 64)
    fine = sphere.calls[-1].lengths
    assert (fine[..., 1:] >= fine[..., :-1]).all()
    assert "weights" not in default.aux and "points_seen" in default.aux  # the function's aux is passed on


def test_full_grid_from_a_raysampler_in_chunks():
    camera = look_at_cameras(torch.tensor([[0.0, 0.0, -3.0]]), torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]), 1.0)
    sampler = NearFarRaySampler(
        image_width=5, image_height=5, n_pts_per_ray_evaluation=24, min_depth=0.5, max_depth=5.5
    )
    bundle = sampler(camera, EVALUATION)
    sphere = DensitySphere()
    render = functools.partial(
        renderer(return_weights=True), implicit_functions=[sphere, sphere], evaluation_mode=EVALUATION
    )
    whole = render(ray_bundle=bundle)
    chunked = render_in_chunks(lambda rays: render(ray_bundle=rays), bundle, chunk_size=4)
    assert chunked.features.shape == (1, 5, 5, 3) and chunked.depths.shape == (1, 5, 5, 1)
    assert chunked.aux["weights"].shape == (1, 5, 5, 56) and chunked.prev_stage.masks.shape == (1, 5, 5, 1)
    for a, b in ((whole, chunked), (whole.prev_stage, chunked.prev_stage)):
        torch.testing.assert_close(a.features, b.features)
        torch.testing.assert_close(a.depths, b.depths)
        torch.testing.assert_close(a.masks, b.masks)
    assert torch.equal(chunked.aux["points_seen"], torch.tensor(56))  # not per ray: taken from the first chunk
    # the centre pixel looks straight at the ball; the corners miss it
    torch.testing.assert_close(chunked.depths[0, 2, 2], torch.tensor([2.0]), atol=0.06, rtol=0)
    assert chunked.masks[0, 2, 2] > 0.99 and (chunked.masks[0, [0, 0, 4, 4], [0, 4, 0, 4]] < 0.01).all()


def test_density_noise_only_in_training():
    torch.manual_seed(0)
    sphere = DensitySphere(density=0.5, sharpness=5.0)
    noisy = renderer(density_noise_std_train=1.0, stratified_sampling_coarse_training=False)
    ray = axis_ray(torch.linspace(0.5, 5.5, 16))

    def render(mode):
        return noisy(ray_bundle=ray, implicit_functions=[sphere, sphere], evaluation_mode=mode).features

    torch.testing.assert_close(render(EVALUATION), render(EVALUATION))
    assert not torch.allclose(render(TRAINING), render(TRAINING))


def test_random_fine_sampling_in_training_only():
    torch.manual_seed(0)
    sphere = DensitySphere()
    ray = axis_ray(torch.linspace(0.5, 5.5, 16))
    r = renderer()
    for mode, differs in ((EVALUATION, False), (TRAINING, True)):
        r(ray_bundle=ray, implicit_functions=[sphere, sphere], evaluation_mode=mode)
        r(ray_bundle=ray, implicit_functions=[sphere, sphere], evaluation_mode=mode)
        assert (not torch.equal(sphere.calls[-1].lengths, sphere.calls[-3].lengths)) == differs


def test_bad_inputs_are_reported():
    ray = axis_ray(torch.linspace(0.5, 5.5, 8))
    with pytest.raises(ValueError, match="at least one implicit function"):
        renderer()(ray_bundle=ray, implicit_functions=[], evaluation_mode=EVALUATION)
    with pytest.raises(ValueError, match="returned 3 feature channels, render_features_dimensions is 4"):
        renderer(render_features_dimensions=4)(
            ray_bundle=ray, implicit_functions=[DensitySphere()], evaluation_mode=EVALUATION
        )


@pytest.mark.parametrize("unit_directions", [True, False])
def test_rendered_depth_follows_the_raysamplers_unit(unit_directions):
    # a unit ball seen from 3 units away with a wide field of view: off-axis rays make the distance
    # along the ray and the view depth differ by several per cent
    eye = torch.tensor([[0.0, 0.0, -3.0]])
    camera = look_at_cameras(eye, torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]]), 2.0)
    sampler = NearFarRaySampler(image_width=8, image_height=8, n_pts_per_ray_evaluation=64, min_depth=0.5,
                                max_depth=5.5, unit_directions=unit_directions)
    bundle = sampler(camera, EVALUATION)
    sphere = DensitySphere(density=200.0, sharpness=400.0)
    output = renderer(n_pts_per_ray_fine_evaluation=64)(
        ray_bundle=bundle, implicit_functions=[sphere, sphere], evaluation_mode=EVALUATION
    )
    # exact first hit of |o + s u| = 1 along the unit direction u: distance s, view depth s * u_z(view)
    unit = torch.nn.functional.normalize(bundle.directions, dim=-1)
    b = (bundle.origins * unit).sum(-1)
    disc = b * b - ((bundle.origins * bundle.origins).sum(-1) - 1.0)
    hit = disc > 0.05  # away from the silhouette
    distance = -b - disc.clamp(min=0).sqrt()
    view_z = camera.directions_to_view(unit)[..., 2]
    expected = distance if unit_directions else distance * view_z
    assert hit.sum() >= 8 and ((distance - distance * view_z)[hit] > 0.03).any()
    torch.testing.assert_close(output.depths[..., 0][hit], expected[hit], atol=0.03, rtol=0)
