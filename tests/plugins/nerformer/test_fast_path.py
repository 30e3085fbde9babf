"""NerFormer's fast path (ViewRayTransformer.forward_grid, split first/skip layers) against the plain one."""

import logging
import shutil
import statistics

import pytest
import torch
import torch.nn.functional as F

from recon_trainer_plugins.nerformer.implicit_function import NeRFormerImplicitFunction
from recon_trainer_plugins.nerformer import transformer
from recon_trainer_plugins.nerformer.transformer import AttentionBlock, attend_few, split_linear
from recon_trainer.models.mlp import reference_paths
from recon_trainer.rendering.ray_bundle import RayBundle


def function_and_inputs(dtype, global_dim=0, **fields):
    torch.manual_seed(0)
    args = dict(n_harmonic_functions_xyz=3, n_harmonic_functions_dir=2, n_hidden_neurons_xyz=32,
                n_hidden_neurons_dir=8, latent_dim=6 + global_dim, **fields)
    function = NeRFormerImplicitFunction(**args).to(dtype).train()
    bundle = RayBundle(
        origins=torch.randn(2, 3, 4, 3, dtype=dtype), directions=torch.randn(2, 3, 4, 3, dtype=dtype),
        lengths=torch.rand(2, 3, 4, 5, dtype=dtype) * 4, xys=torch.rand(2, 3, 4, 2, dtype=dtype),
    )
    view_weights = torch.randn(3, 3, 6, dtype=dtype, requires_grad=True)  # 3 source views, 6 channels

    def viewpool(points):
        return torch.sin(torch.einsum("...c,ncd->...nd", points, view_weights))

    code = torch.randn(2, global_dim, dtype=dtype, requires_grad=True) if global_dim else None
    return function, bundle, viewpool, code, view_weights


def run(function, bundle, viewpool, code, view_weights):
    densities, colors, _ = function(ray_bundle=bundle, fun_viewpool=viewpool, global_code=code)
    loss = (densities * torch.linspace(-1, 1, 5, dtype=densities.dtype)[:, None]).sum() + (colors**2).sum()
    inputs = [*function.parameters(), view_weights] + ([code] if code is not None else [])
    return densities, colors, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("fields", [{}, {"global_dim": 4}, {"input_xyz": False}, {"n_layers_xyz": 3,
                                    "append_xyz": (0, 2), "transformer_dim_down_factor": 1.0}])
def test_fast_path_equals_the_plain_path_in_float64(fields):
    inputs = function_and_inputs(torch.float64, **fields)
    got = run(*inputs)
    with reference_paths():
        expected = run(*inputs)
    assert torch.allclose(got[0], expected[0], atol=1e-12) and torch.allclose(got[1], expected[1], atol=1e-12)
    for g, e in zip(got[2], expected[2]):
        assert torch.allclose(g, e, atol=1e-10)


def test_fast_path_matches_the_plain_path_in_float32():
    inputs = function_and_inputs(torch.float32, global_dim=4)
    got = run(*inputs)
    with reference_paths():
        expected = run(*inputs)
    assert (got[0] - expected[0]).abs().max() < 1e-5 and (got[1] - expected[1]).abs().max() < 1e-5
    for g, e in zip(got[2], expected[2]):
        assert (g - e).abs().max() <= 1e-4 * e.abs().max() + 1e-6


@pytest.mark.parametrize("axis", [1, 2])
def test_attention_block_on_a_grid_axis_equals_it_on_the_moved_sequences(axis):
    torch.manual_seed(0)
    block = AttentionBlock(8, 4, 16).double()
    x = torch.randn(2, 5, 3, 8, dtype=torch.float64)
    got = block.forward_grid(x, axis)
    moved = x.movedim(axis, 2)  # the attended axis last but one
    expected = block(moved.reshape(-1, moved.shape[2], 8)).reshape(*moved.shape[:3], 4).movedim(2, axis)
    assert torch.allclose(got, expected, atol=1e-12)


def test_split_linear_equals_the_linear_layer_on_the_broadcast_concatenation():
    torch.manual_seed(0)
    layer = torch.nn.Linear(2 + 3 + 4, 5).double()
    parts = [torch.randn(4, 6, 1, 2).double(), torch.randn(4, 6, 3, 3).double(), torch.randn(1, 1, 1, 4).double()]
    full = torch.cat([p.expand(4, 6, 3, -1) for p in parts], dim=-1)
    assert torch.allclose(split_linear(layer, parts), layer(full), atol=1e-12)
    no_full_part = [parts[0], parts[1][:1, :1], parts[2]]  # (4, 6, 1, .), (1, 1, 3, .), (1, 1, 1, .)
    full = torch.cat([p.expand(4, 6, 3, -1) for p in no_full_part], dim=-1)
    assert torch.allclose(split_linear(layer, no_full_part), layer(full), atol=1e-12)
    with pytest.raises(ValueError, match="channels"):
        split_linear(layer, parts[:2])


def test_fast_path_under_bf16_autocast_is_as_close_to_float32_as_the_plain_path():
    inputs = function_and_inputs(torch.float32, global_dim=4)
    exact = run(*inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(*inputs)
        with reference_paths():
            expected = run(*inputs)

    def error(a, b):
        return ((a.float() - b).abs().max() / b.abs().max()).item()

    for i in (0, 1):
        assert error(got[i], exact[i]) <= 2 * error(expected[i], exact[i]) + 0.01
    assert all(g.dtype == torch.float32 for g in got[2])
    # bf16 rounding makes single gradients scatter: compare the typical and the worst error
    significant = [i for i, x in enumerate(exact[2]) if x.abs().max() > 1e-3]  # (nearly 0: no relative error)
    got_errors = [error(got[2][i], exact[2][i]) for i in significant]
    expected_errors = [error(expected[2][i], exact[2][i]) for i in significant]
    assert statistics.median(got_errors) <= 1.5 * statistics.median(expected_errors) + 0.01
    assert max(got_errors) <= 2 * max(expected_errors) + 0.05


def test_fast_path_in_evaluation_without_gradients():
    function, bundle, viewpool, code, _ = function_and_inputs(torch.float32, global_dim=4)
    function.eval()  # (the plain path's attention then takes torch's own inference kernel)
    with torch.no_grad():
        got = function(ray_bundle=bundle, fun_viewpool=viewpool, global_code=code)
        with reference_paths():
            expected = function(ray_bundle=bundle, fun_viewpool=viewpool, global_code=code)
    assert (got[0] - expected[0]).abs().max() < 1e-5 and (got[1] - expected[1]).abs().max() < 1e-5


def test_written_out_attention_equals_the_attention_kernel():
    torch.manual_seed(0)
    query, key, value = (torch.randn(6, 4, 3, 5, dtype=torch.float64) for _ in range(3))  # (B, H, L, D)
    expected = F.scaled_dot_product_attention(query, key, value)
    assert torch.allclose(attend_few(query, key, value), expected, atol=1e-12)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="torch.compile needs C++")
def test_compiled_transformer_matches_the_uncompiled_fast_path(monkeypatch):
    monkeypatch.setattr(transformer, "_compiled_forward_grid", None)
    monkeypatch.setattr(transformer, "_compile_failed", False)
    inputs = function_and_inputs(torch.float32, global_dim=4)
    expected = run(*inputs)
    inputs[0].compile_transformer_on_cpu = True
    got = run(*inputs)
    assert transformer._compiled_forward_grid is not None and not transformer._compile_failed
    assert (got[0] - expected[0]).abs().max() < 1e-5 and (got[1] - expected[1]).abs().max() < 1e-5
    for g, e in zip(got[2], expected[2]):
        assert (g - e).abs().max() <= 1e-4 * e.abs().max() + 1e-6


def test_a_failing_compile_warns_once_and_runs_uncompiled(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\n(details)")

    monkeypatch.setattr(transformer, "_compiled_forward_grid", broken)
    monkeypatch.setattr(transformer, "_compile_failed", False)
    inputs = function_and_inputs(torch.float32)
    expected = run(*inputs)
    inputs[0].compile_transformer_on_cpu = True
    with caplog.at_level(logging.WARNING, logger=transformer.__name__):
        first, second = run(*inputs), run(*inputs)
    assert [r.getMessage() for r in caplog.records] == [
        "NerFormer: torch.compile failed (RuntimeError: no C++ compiler found); running the transformer uncompiled"]
    assert transformer._compile_failed
    for got in (first, second):
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
