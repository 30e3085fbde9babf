"""Raymarchers: hand-computed weights, a dense wall, empty space and the background."""
import math

import pytest
import torch

from recon_trainer.config import get_default_args, registry
from recon_trainer.rendering.raymarcher import CumsumRaymarcher, EmissionAbsorptionRaymarcher, RaymarcherBase

LENGTHS = torch.tensor([[1.0, 2.0, 4.0]])
FEATURES = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])


def march(raymarcher, densities, lengths=LENGTHS, features=FEATURES, **kwargs):
    return raymarcher(torch.tensor(densities)[..., None], features, lengths, **kwargs)


def test_registered_with_reference_defaults():
    assert {"EmissionAbsorptionRaymarcher", "CumsumRaymarcher"} <= {
        c.__name__ for c in registry.get_all(RaymarcherBase)
    }
    for cls, background_opacity in ((EmissionAbsorptionRaymarcher, 1e10), (CumsumRaymarcher, 0.0)):
        args = get_default_args(cls)
        assert args.surface_thickness == 1 and list(args.bg_color) == [0.0]
        assert args.replicate_last_interval is False and args.density_relu is True and args.blend_output is False
        assert args.background_opacity == background_opacity


def test_emission_absorption_weights_by_hand():
    # intervals 1, 2 and (background_opacity) 1e10: optical depths 0.5, 2 and ~inf
    out = march(EmissionAbsorptionRaymarcher(), [[0.5, 1.0, 2.0]])
    e = math.exp
    expected = torch.tensor([[1 - e(-0.5), (1 - e(-2.0)) * e(-0.5), e(-2.5)]])
    torch.testing.assert_close(out.aux["weights"], expected)
    torch.testing.assert_close(out.masks, torch.ones(1, 1))
    torch.testing.assert_close(out.depths, (expected * LENGTHS).sum(-1, keepdim=True))
    torch.testing.assert_close(out.features, (expected[..., None] * FEATURES).sum(-2))


def test_replicated_last_interval_and_surface_thickness():
    e = math.exp
    out = march(EmissionAbsorptionRaymarcher(replicate_last_interval=True), [[0.5, 1.0, 2.0]])
    # the last interval repeats the one before (2): optical depths 0.5, 2, 4
    torch.testing.assert_close(
        out.aux["weights"], torch.tensor([[1 - e(-0.5), (1 - e(-2.0)) * e(-0.5), (1 - e(-4.0)) * e(-2.5)]])
    )
    torch.testing.assert_close(out.masks, torch.tensor([[1 - e(-6.5)]]))
    # surface_thickness=2: the transmittance is read two samples back
    out = march(EmissionAbsorptionRaymarcher(surface_thickness=2, background_opacity=1.0), [[0.5, 1.0, 2.0]])
    torch.testing.assert_close(out.aux["weights"], torch.tensor([[1 - e(-0.5), 1 - e(-2.0), (1 - e(-2.0)) * e(-0.5)]]))


def test_cumsum_weights_by_hand():
    # intervals 1, 2, 0: opacities 0.3, 0.8, 0; accumulated 0.3, 1 (capped), 1
    out = march(CumsumRaymarcher(), [[0.3, 0.4, 0.5]])
    torch.testing.assert_close(out.aux["weights"], torch.tensor([[0.3, 0.7, 0.0]]))
    torch.testing.assert_close(out.masks, torch.ones(1, 1))
    torch.testing.assert_close(out.depths, torch.tensor([[0.3 * 1.0 + 0.7 * 2.0]]))


def test_dense_wall_is_opaque_at_its_depth():
    lengths = torch.linspace(1.0, 3.0, 41)[None]
    densities = torch.where(lengths >= 2.0, 1000.0, 0.0)[..., None]
    colour = torch.tensor([0.2, 0.9, 0.4]).expand(1, 41, 3)
    out = EmissionAbsorptionRaymarcher(bg_color=(1.0, 1.0, 1.0))(densities, colour, lengths)
    torch.testing.assert_close(out.masks, torch.ones(1, 1))
    torch.testing.assert_close(out.depths, torch.tensor([[2.0]]), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.features, torch.tensor([[0.2, 0.9, 0.4]]))


@pytest.mark.parametrize("cls", [EmissionAbsorptionRaymarcher, CumsumRaymarcher])
def test_empty_space_shows_the_background(cls):
    lengths = torch.linspace(1.0, 3.0, 8).expand(2, 8)
    features = torch.rand(2, 8, 3)
    for densities in (torch.zeros(2, 8, 1), -torch.ones(2, 8, 1)):  # negative densities are clamped (density_relu)
        out = cls(bg_color=(0.2, 0.4, 0.6))(densities, features, lengths)
        torch.testing.assert_close(out.features, torch.tensor([[0.2, 0.4, 0.6]] * 2))
        torch.testing.assert_close(out.masks, torch.zeros(2, 1))
        torch.testing.assert_close(out.depths, torch.zeros(2, 1))


def test_blend_output_scales_the_features_by_opacity():
    lengths = torch.tensor([[1.0, 2.0]])
    densities = torch.tensor([[[math.log(2.0)], [0.0]]])  # opacity 1/2 from the first interval
    features = torch.ones(1, 2, 1)
    plain = EmissionAbsorptionRaymarcher(bg_color=(0.2,), background_opacity=0.0)(densities, features, lengths)
    blended = EmissionAbsorptionRaymarcher(bg_color=(0.2,), background_opacity=0.0, blend_output=True)(
        densities, features, lengths
    )
    torch.testing.assert_close(plain.features, torch.tensor([[0.5 + 0.5 * 0.2]]))
    torch.testing.assert_close(blended.features, torch.tensor([[0.5 * 0.5 + 0.5 * 0.2]]))


def test_density_noise_changes_the_result():
    torch.manual_seed(0)
    densities = torch.full((1, 3, 1), 0.3)
    clean = EmissionAbsorptionRaymarcher()(densities, FEATURES, LENGTHS)
    noisy = EmissionAbsorptionRaymarcher()(densities, FEATURES, LENGTHS, density_noise_std=1.0)
    assert not torch.allclose(clean.aux["weights"], noisy.aux["weights"])


def test_any_batch_shape_and_gradients():
    lengths = torch.linspace(0.5, 2.0, 6).expand(2, 3, 4, 6)
    densities = torch.rand(2, 3, 4, 6, 1, requires_grad=True)
    out = EmissionAbsorptionRaymarcher()(densities, torch.rand(2, 3, 4, 6, 5), lengths)
    assert out.features.shape == (2, 3, 4, 5) and out.depths.shape == (2, 3, 4, 1) and out.masks.shape == (2, 3, 4, 1)
    assert out.aux["weights"].shape == (2, 3, 4, 6)
    out.features.sum().backward()
    assert densities.grad is not None and torch.isfinite(densities.grad).all()


def test_bad_settings_are_reported():
    with pytest.raises(ValueError, match="bg_color has 2 values, expected 1 or 3"):
        EmissionAbsorptionRaymarcher(bg_color=(0.0, 1.0))(torch.ones(1, 2, 1), torch.ones(1, 2, 3), torch.ones(1, 2))
    with pytest.raises(ValueError, match="surface_thickness=0"):
        CumsumRaymarcher(surface_thickness=0)
