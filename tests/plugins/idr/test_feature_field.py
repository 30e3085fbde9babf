"""IdrFeatureField: geometric initialisation, outputs, inputs, config wiring."""

import pytest
import torch

from recon_trainer_plugins.idr.feature_field import IdrFeatureField
from recon_trainer_plugins.idr.renderer import PointField
from recon_trainer.rendering.ray_bundle import RayBundle


def sphere_stats(field: IdrFeatureField, n_dirs: int = 40):
    """(radius of the zero level set along n_dirs directions (n_dirs,), cosine between the SDF
    gradient on the sphere |x| = bias and the radial direction (n_dirs,))."""
    generator = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(n_dirs, 3, generator=generator), dim=-1)
    radii = torch.linspace(0.02, 2.0 * field.bias, 100)
    evaluate = PointField(lambda ray_bundle: field(ray_bundle=ray_bundle), n_images=1)
    points = (dirs[:, None] * radii[:, None]).reshape(-1, 3)
    with torch.no_grad():
        sdf = evaluate(points, torch.zeros(len(points), dtype=torch.long))[0].reshape(n_dirs, -1)
    zero_radius = radii[(sdf > 0).float().argmax(-1)]  # first radius outside
    _, _, gradient = evaluate.with_gradient(dirs * field.bias, torch.zeros(n_dirs, dtype=torch.long), False)
    return zero_radius, torch.nn.functional.cosine_similarity(gradient, dirs, dim=-1)


@pytest.mark.parametrize(
    "fields",
    [{}, {"n_harmonic_functions_xyz": 6, "bias": 0.6, "skip_in": (6,)}],  # the defaults, repro_singleseq_idr
    ids=["defaults", "repro"],
)
def test_geometric_init_is_close_to_the_sdf_of_a_sphere_of_radius_bias(fields):
    torch.manual_seed(0)
    field = IdrFeatureField(**fields)
    zero_radius, cosine = sphere_stats(field)
    ratio = zero_radius / field.bias
    print(f"zero level set radius / bias: {ratio.min():.3f}..{ratio.max():.3f} (mean {ratio.mean():.3f}), "
          f"min cos(grad, radial) {cosine.min():.3f}")
    # A finite-width approximation (IDR's init is exact only for infinite width).
    assert ((ratio - 1).abs() < 0.4).all()
    assert (ratio - 1).abs().mean() < 0.25
    assert cosine.min() > 0.85


def test_without_geometric_init_the_sdf_is_not_a_sphere():
    torch.manual_seed(0)
    field = IdrFeatureField(dims=(64,) * 4, geometric_init=False)
    zero_radius, cosine = sphere_stats(field)
    assert cosine.min() < 0.5 or (zero_radius - field.bias).abs().max() > 0.5


def test_outputs_sdf_and_feature_vectors_at_the_ray_points():
    torch.manual_seed(0)
    field = IdrFeatureField(dims=(32, 32), feature_vector_size=5, encoding_dim=4, skip_in=(1,),
                            n_harmonic_functions_xyz=2)
    bundle = RayBundle(torch.randn(2, 6, 3), torch.randn(2, 6, 3), torch.rand(2, 6, 4), torch.zeros(2, 6, 2))
    sdf, features, aux = field(ray_bundle=bundle, global_code=torch.randn(2, 4))
    assert sdf.shape == (2, 6, 4, 1) and features.shape == (2, 6, 4, 5) and aux == {}
    with pytest.raises(ValueError, match="encoding_dim"):
        field(ray_bundle=bundle)  # no global code, encoding_dim=4


def test_invalid_skip_layers_are_named():
    with pytest.raises(ValueError, match="skip_in"):
        IdrFeatureField(dims=(32, 32), skip_in=(0,))
