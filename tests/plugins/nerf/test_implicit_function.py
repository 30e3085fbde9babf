"""NeuralRadianceFieldImplicitFunction and its building blocks (MLPWithInputSkips, RadianceHead)."""

import pytest
import torch

from recon_trainer_plugins.nerf.implicit_function import NeuralRadianceFieldImplicitFunction
from recon_trainer.config import get_default_args
from recon_trainer.data.cameras import look_at_cameras
from recon_trainer.models.mlp import MLPWithInputSkips
from recon_trainer.models.radiance_head import RadianceHead
from recon_trainer.rendering.ray_bundle import RayBundle


def tiny_function(**fields) -> NeuralRadianceFieldImplicitFunction:
    torch.manual_seed(0)
    args = {"n_harmonic_functions_xyz": 3, "n_harmonic_functions_dir": 2, "n_hidden_neurons_xyz": 16}
    args.update(n_hidden_neurons_dir=8, n_layers_xyz=3, append_xyz=(1,), **fields)
    return NeuralRadianceFieldImplicitFunction(**args)


def random_bundle(*spatial: int, n_pts: int = 5, batch: int = 2) -> RayBundle:
    return RayBundle(
        origins=torch.randn(batch, *spatial, 3),
        directions=torch.randn(batch, *spatial, 3),
        lengths=torch.rand(batch, *spatial, n_pts) * 4,
        xys=torch.rand(batch, *spatial, 2),
    )


def test_defaults_are_nerfs():
    cfg = get_default_args(NeuralRadianceFieldImplicitFunction)
    assert (cfg.n_harmonic_functions_xyz, cfg.n_harmonic_functions_dir) == (10, 4)
    assert (cfg.n_hidden_neurons_xyz, cfg.n_hidden_neurons_dir, cfg.n_layers_xyz) == (256, 128, 8)
    assert list(cfg.append_xyz) == [5] and cfg.latent_dim == 0 and cfg.color_dim == 3
    assert cfg.input_xyz is True and cfg.xyz_ray_dir_in_camera_coords is False
    assert NeuralRadianceFieldImplicitFunction.allows_multiple_passes()


@pytest.mark.parametrize("spatial", [(7,), (3, 4)])
def test_output_shapes_and_ranges(spatial):
    function = tiny_function(color_dim=5)
    densities, colors, aux = function(ray_bundle=random_bundle(*spatial))
    assert densities.shape == (2, *spatial, 5, 1) and colors.shape == (2, *spatial, 5, 5)
    assert torch.all((colors > 0) & (colors < 1)) and aux == {}  # densities are raw (any sign)


def test_global_code_is_read_and_must_match_latent_dim():
    function = tiny_function(latent_dim=4)
    bundle = random_bundle(6)
    code_a, code_b = torch.zeros(2, 4), torch.ones(2, 4)
    out_a = function(ray_bundle=bundle, global_code=code_a)[1]
    out_b = function(ray_bundle=bundle, global_code=code_b)[1]
    assert not torch.allclose(out_a, out_b)
    with pytest.raises(ValueError, match=r"got 0 latent channels.*latent_dim is 4"):
        function(ray_bundle=bundle)
    no_xyz = tiny_function(latent_dim=4, input_xyz=False)
    assert no_xyz(ray_bundle=bundle, global_code=code_a)[0].shape == (2, 6, 5, 1)


def test_camera_coordinates_make_the_output_invariant_to_moving_scene_and_cameras_together():
    function = tiny_function(xyz_ray_dir_in_camera_coords=True)
    eye, at, up = torch.tensor([[0.0, 0.5, -3.0]]), torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]])
    camera = look_at_cameras(eye, at, up, 1.5)
    rotation = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.3, 0.2], [0.3, 0.0, -0.1], [-0.2, 0.1, 0.0]]))
    moved = look_at_cameras(eye @ rotation.T, at, up @ rotation.T, 1.5)
    bundle = random_bundle(6, batch=1)
    moved_bundle = RayBundle(bundle.origins @ rotation.T, bundle.directions @ rotation.T, bundle.lengths, bundle.xys)
    out = function(ray_bundle=bundle, camera=camera)
    out_moved = function(ray_bundle=moved_bundle, camera=moved)
    assert torch.allclose(out[0], out_moved[0], atol=1e-5) and torch.allclose(out[1], out_moved[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"needs the camera"):
        function(ray_bundle=bundle)


def test_mlp_reads_the_skip_input_at_the_chosen_layers():
    mlp = MLPWithInputSkips(n_layers=3, input_dim=4, output_dim=6, skip_dim=2, hidden_dim=8, input_skips=(1,))
    assert [layer.in_features for layer in mlp.layers] == [4, 10, 8]
    assert mlp(torch.randn(5, 4), torch.randn(5, 2)).shape == (5, 6)
    with pytest.raises(ValueError, match=r"input_skips"):
        MLPWithInputSkips(n_layers=2, input_dim=4, output_dim=6, skip_dim=2, hidden_dim=8, input_skips=(2,))


def test_radiance_head_split_colour_layer_equals_a_linear_layer_on_the_concatenation():
    torch.manual_seed(0)
    head = RadianceHead(feature_dim=6, n_harmonic_functions_dir=2, n_hidden_neurons_dir=5, color_dim=3)
    features, directions = torch.randn(2, 4, 7, 6), torch.randn(2, 4, 3) * 3
    _, colors = head(features, directions)
    # Reference: NeRF's colour MLP reading [intermediate features, direction embedding] per point.
    embedding = head.direction_embedding(torch.nn.functional.normalize(directions, dim=-1))
    both = torch.cat([head.intermediate_layer(features), embedding[..., None, :].expand(2, 4, 7, -1)], dim=-1)
    weight = torch.cat([head.color_feature_layer.weight, head.color_direction_layer.weight], dim=1)
    hidden = torch.relu(both @ weight.T + head.color_feature_layer.bias)
    assert torch.allclose(colors, torch.sigmoid(head.color_output_layer(hidden)), atol=1e-6)
