"""NeRFormerImplicitFunction and its ViewRayTransformer, with a fake per-view feature pooler."""

from typing import Callable

import pytest
import torch

from recon_trainer_plugins.nerformer.implicit_function import NeRFormerImplicitFunction
from recon_trainer_plugins.nerformer.transformer import ViewRayTransformer, layer_widths
from recon_trainer.config import get_default_args, registry
from recon_trainer.rendering.implicit_function import ImplicitFunctionBase
from recon_trainer.rendering.ray_bundle import RayBundle

N_VIEWS, VIEW_DIM = 3, 6


def tiny_function(**fields) -> NeRFormerImplicitFunction:
    torch.manual_seed(0)
    args = {"n_harmonic_functions_xyz": 3, "n_harmonic_functions_dir": 2, "n_hidden_neurons_xyz": 32}
    args.update(n_hidden_neurons_dir=8, latent_dim=VIEW_DIM)
    args.update(fields)
    return NeRFormerImplicitFunction(**args).eval()


def fake_viewpool(n_views: int = N_VIEWS, dim: int = VIEW_DIM, seed: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """A deterministic identity-aggregation pooler: points (..., 3) -> (..., n_views, dim)."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(n_views, 3, dim, generator=generator)
    return lambda points: torch.sin(torch.einsum("...c,ncd->...nd", points, weights))


def random_bundle(*spatial: int, n_pts: int = 5, batch: int = 2) -> RayBundle:
    return RayBundle(
        origins=torch.randn(batch, *spatial, 3),
        directions=torch.randn(batch, *spatial, 3),
        lengths=torch.rand(batch, *spatial, n_pts) * 4,
        xys=torch.rand(batch, *spatial, 2),
    )


def test_defaults_are_implicitrons_and_it_is_registered():
    cfg = get_default_args(NeRFormerImplicitFunction)
    first_fields = ["n_harmonic_functions_xyz", "n_harmonic_functions_dir", "n_hidden_neurons_dir", "latent_dim"]
    assert list(cfg)[:4] == first_fields  # Implicitron's field order
    assert (cfg.n_harmonic_functions_xyz, cfg.n_harmonic_functions_dir, cfg.n_hidden_neurons_dir) == (10, 4, 128)
    assert (cfg.n_hidden_neurons_xyz, cfg.n_layers_xyz, list(cfg.append_xyz)) == (80, 2, [1])
    assert cfg.transformer_dim_down_factor == 2.0 and cfg.latent_dim == 0 and cfg.color_dim == 3
    assert cfg.input_xyz is True and cfg.xyz_ray_dir_in_camera_coords is False
    assert NeRFormerImplicitFunction.allows_multiple_passes()
    assert registry.get(ImplicitFunctionBase, "NeRFormerImplicitFunction") is NeRFormerImplicitFunction
    assert layer_widths(80, 2, 2.0) == [80, 40, 20]  # the width halves at each layer


@pytest.mark.parametrize("spatial", [(7,), (3, 4)], ids=["sampled_rays", "full_grid"])
def test_output_shapes_and_ranges(spatial):
    function = tiny_function(color_dim=5)
    densities, colors, aux = function(ray_bundle=random_bundle(*spatial), fun_viewpool=fake_viewpool())
    assert densities.shape == (2, *spatial, 5, 1) and colors.shape == (2, *spatial, 5, 5)
    assert torch.all((colors > 0) & (colors < 1)) and aux == {}


def test_chunked_evaluation_matches_the_whole_grid():
    function, pool = tiny_function(), fake_viewpool()
    bundle = random_bundle(4, 5, n_pts=6)
    whole = function(ray_bundle=bundle, fun_viewpool=pool)
    flat = bundle.flatten()
    chunks = [function(ray_bundle=flat.chunk(s, s + 7), fun_viewpool=pool) for s in range(0, 20, 7)]
    for i in range(2):
        joined = torch.cat([chunk[i] for chunk in chunks], dim=1).reshape(whole[i].shape)
        assert torch.allclose(joined, whole[i], atol=1e-5)


def test_output_is_invariant_to_the_order_of_source_views_but_reads_each_view():
    function, pool = tiny_function(), fake_viewpool()
    bundle = random_bundle(6)
    permutation = torch.tensor([2, 0, 1])
    out = function(ray_bundle=bundle, fun_viewpool=pool)
    permuted = function(ray_bundle=bundle, fun_viewpool=lambda p: pool(p)[..., permutation, :])
    assert torch.allclose(out[0], permuted[0], atol=1e-5) and torch.allclose(out[1], permuted[1], atol=1e-5)

    def one_view_changed(points: torch.Tensor) -> torch.Tensor:
        features = pool(points).clone()
        features[..., 1, :] = 0.0
        return features

    changed = function(ray_bundle=bundle, fun_viewpool=one_view_changed)
    assert not torch.allclose(out[1], changed[1], atol=1e-4)


def test_attention_mixes_points_along_a_ray_but_not_across_rays():
    function, pool = tiny_function(), fake_viewpool()
    bundle = random_bundle(4, n_pts=6, batch=1)
    out = function(ray_bundle=bundle, fun_viewpool=pool)[0]

    def point_changed(points: torch.Tensor) -> torch.Tensor:
        features = pool(points).clone()
        features[0, 0, 0] += 1.0  # ray 0, point 0, every view
        return features

    changed = function(ray_bundle=bundle, fun_viewpool=point_changed)[0]
    assert not torch.allclose(out[0, 0, 1:], changed[0, 0, 1:], atol=1e-5)  # other points of ray 0 move
    assert torch.allclose(out[0, 1:], changed[0, 1:], atol=1e-6)  # other rays do not


def test_global_code_is_read_and_latent_dim_counts_per_view_plus_global_channels():
    function = tiny_function(latent_dim=VIEW_DIM + 4)
    bundle, pool = random_bundle(6), fake_viewpool()
    out_a = function(ray_bundle=bundle, fun_viewpool=pool, global_code=torch.zeros(2, 4))[1]
    out_b = function(ray_bundle=bundle, fun_viewpool=pool, global_code=torch.ones(2, 4))[1]
    assert not torch.allclose(out_a, out_b)
    with pytest.raises(ValueError, match=rf"got {VIEW_DIM} latent channels per view.*latent_dim is {VIEW_DIM + 4}"):
        function(ray_bundle=bundle, fun_viewpool=pool)
    no_xyz = tiny_function(input_xyz=False)
    assert no_xyz(ray_bundle=bundle, fun_viewpool=pool)[0].shape == (2, 6, 5, 1)


def test_missing_or_reduced_view_features_are_explained():
    function, bundle = tiny_function(), random_bundle(6)
    with pytest.raises(ValueError, match=r"view_pooler_enabled=true.*IdentityFeatureAggregator"):
        function(ray_bundle=bundle)
    reduced = fake_viewpool(n_views=1)
    with pytest.raises(ValueError, match=r"shape \(2, 6, 5, 6\).*Reducing aggregators.*IdentityFeatureAggregator"):
        function(ray_bundle=bundle, fun_viewpool=lambda points: reduced(points)[..., 0, :])
    with pytest.raises(ValueError, match=r"needs the camera"):
        tiny_function(xyz_ray_dir_in_camera_coords=True)(ray_bundle=bundle, fun_viewpool=fake_viewpool())


def test_transformer_rejects_widths_the_attention_heads_cannot_split():
    with pytest.raises(ValueError, match=r"widths \[30, 15\].*multiple of 4"):
        ViewRayTransformer(n_layers=1, input_dim=5, output_dim=8, skip_dim=5, hidden_dim=30, dim_down_factor=2.0)
    with pytest.raises(ValueError, match=r"input_skips \[2\]"):
        ViewRayTransformer(n_layers=2, input_dim=5, output_dim=8, skip_dim=5, hidden_dim=32, input_skips=(2,))
