"""The fused NeRF field (fused_field.py) against its reference, MLPWithInputSkips then RadianceHead."""

import pytest
import torch

from recon_trainer_plugins.nerf.fused_field import fused_radiance_field
from recon_trainer_plugins.nerf.implicit_function import NeuralRadianceFieldImplicitFunction
from recon_trainer.models.mlp import MLPWithInputSkips, fast_paths_enabled, reference_paths
from recon_trainer.models.radiance_head import RadianceHead
from recon_trainer.rendering.ray_bundle import RayBundle


def field(n_layers: int = 4, skips=(2,), input_dim: int = 9, dtype=torch.float32):
    torch.manual_seed(0)
    mlp = MLPWithInputSkips(n_layers, input_dim, 16, input_dim, 16, skips).to(dtype)
    head = RadianceHead(feature_dim=16, n_harmonic_functions_dir=2, n_hidden_neurons_dir=8, color_dim=3).to(dtype)
    with torch.no_grad():  # non-zero biases, so every bias term is exercised
        for module in (mlp, head):
            for name, parameter in module.named_parameters():
                if name.endswith("bias"):
                    parameter.normal_(0.0, 0.3)
    return mlp, head


def plain(mlp, head, x, directions):
    return head(mlp(x, x), directions)


def fused(mlp, head, x, directions):
    direction_term = head.color_direction_layer(
        head.direction_embedding(torch.nn.functional.normalize(directions, dim=-1))
    )
    return fused_radiance_field(
        x, direction_term, mlp.layers, mlp.input_skips, head.density_layer, head.intermediate_layer,
        head.color_feature_layer, head.color_output_layer,
    )


def outputs_and_grads(fn, mlp, head, x, directions, weights, autocast=False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        densities, colors = fn(mlp, head, x, directions)
    loss = (densities.float() * weights[0]).sum() + (colors.float() * weights[1]).sum()
    inputs = [*mlp.parameters(), *head.parameters(), x]
    grads = torch.autograd.grad(loss, inputs)
    return densities, colors, grads


def random_inputs(spatial, n_points, input_dim, dtype=torch.float32):
    torch.manual_seed(1)
    x = torch.randn(*spatial, n_points, input_dim, dtype=dtype, requires_grad=True)  # latent codes need grads too
    directions = torch.randn(*spatial, 3, dtype=dtype)
    weights = torch.randn(*spatial, n_points, 1), torch.randn(*spatial, n_points, 3)
    return x, directions, weights


@pytest.mark.parametrize("skips", [(2,), (0, 3), ()])
@pytest.mark.parametrize("spatial", [(2, 5), (1, 3, 4)])
def test_fused_field_equals_the_plain_modules_in_float64(skips, spatial):
    mlp, head = field(skips=skips, dtype=torch.float64)
    x, directions, weights = random_inputs(spatial, 6, 9, torch.float64)
    weights = tuple(w.double() for w in weights)
    expected = outputs_and_grads(plain, mlp, head, x, directions, weights)
    got = outputs_and_grads(fused, mlp, head, x, directions, weights)
    assert got[0].shape == expected[0].shape and got[1].shape == expected[1].shape
    assert torch.allclose(got[0], expected[0], atol=1e-12) and torch.allclose(got[1], expected[1], atol=1e-12)
    for g, e in zip(got[2], expected[2]):
        assert g.shape == e.shape and torch.allclose(g, e, atol=1e-10)


def test_fused_field_matches_the_plain_modules_in_float32():
    mlp, head = field(n_layers=8, skips=(5,), input_dim=21)
    x, directions, weights = random_inputs((2, 16), 12, 21)
    expected = outputs_and_grads(plain, mlp, head, x, directions, weights)
    got = outputs_and_grads(fused, mlp, head, x, directions, weights)
    assert (got[0] - expected[0]).abs().max() < 1e-5 and (got[1] - expected[1]).abs().max() < 1e-5
    for g, e in zip(got[2], expected[2]):
        assert (g - e).abs().max() <= 1e-4 * e.abs().max() + 1e-6


def test_fused_field_under_bf16_autocast_is_as_close_to_float32_as_the_plain_path():
    mlp, head = field(n_layers=8, skips=(5,), input_dim=21)
    x, directions, weights = random_inputs((2, 16), 12, 21)
    exact = outputs_and_grads(plain, mlp, head, x, directions, weights)
    expected = outputs_and_grads(plain, mlp, head, x, directions, weights, autocast=True)
    got = outputs_and_grads(fused, mlp, head, x, directions, weights, autocast=True)
    assert got[0].dtype == got[1].dtype == torch.bfloat16  # as autocast's linear layers give

    def error(a, b):
        return ((a.float() - b).abs().max() / b.abs().max()).item()

    for i in (0, 1):
        assert error(got[i], exact[i]) <= 2 * error(expected[i], exact[i]) + 0.01
    for g, e, x in zip(got[2], expected[2], exact[2]):
        assert g.dtype == torch.float32
        assert error(g, x) <= 2 * error(e, x) + 0.01


def test_fused_field_with_one_output_unused_and_without_gradients():
    mlp, head = field()
    x, directions, _ = random_inputs((2, 3), 4, 9)
    for pick in (0, 1):
        params = [*mlp.parameters(), *head.parameters()]
        expected = torch.autograd.grad(plain(mlp, head, x, directions)[pick].sum(), params, allow_unused=True)
        got = torch.autograd.grad(fused(mlp, head, x, directions)[pick].sum(), params, allow_unused=True)
        for g, e in zip(got, expected):
            e = torch.zeros_like(g) if e is None else e  # the plain path leaves the unused branch out
            assert torch.allclose(g, e, atol=1e-5)
    with torch.no_grad():
        densities, colors = fused(mlp, head, x, directions)
        expected_densities, expected_colors = plain(mlp, head, x, directions)
    assert torch.allclose(densities, expected_densities, atol=1e-5)
    assert torch.allclose(colors, expected_colors, atol=1e-5)


def test_the_implicit_function_takes_the_fused_path_on_cpu_and_agrees_with_the_reference():
    torch.manual_seed(0)
    function = NeuralRadianceFieldImplicitFunction(
        n_harmonic_functions_xyz=3, n_harmonic_functions_dir=2, n_hidden_neurons_xyz=16, n_hidden_neurons_dir=8,
        n_layers_xyz=4, append_xyz=(2,), latent_dim=4,
    )
    bundle = RayBundle(torch.randn(2, 6, 3), torch.randn(2, 6, 3), torch.rand(2, 6, 5) * 4, torch.rand(2, 6, 2))
    code = torch.randn(2, 4, requires_grad=True)
    assert fast_paths_enabled(torch.device("cpu")) and not fast_paths_enabled(torch.device("cuda"))

    def run():
        densities, colors, _ = function(ray_bundle=bundle, global_code=code)
        loss = densities.sum() + (colors * torch.linspace(0, 1, 3)).sum()
        return densities, colors, torch.autograd.grad(loss, [*function.parameters(), code])

    got = run()
    with reference_paths():
        assert not fast_paths_enabled(torch.device("cpu"))
        expected = run()
    assert fast_paths_enabled(torch.device("cpu"))
    assert torch.allclose(got[0], expected[0], atol=1e-5) and torch.allclose(got[1], expected[1], atol=1e-5)
    for g, e in zip(got[2], expected[2]):
        assert torch.allclose(g, e, atol=1e-5, rtol=1e-4)
