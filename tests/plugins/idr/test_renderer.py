"""SignedDistanceFunctionRenderer on an analytic sphere and with IdrFeatureField: outputs and gradients."""

import pytest
import torch

from recon_trainer_plugins.idr.feature_field import IdrFeatureField
from recon_trainer_plugins.idr.renderer import PointField, SignedDistanceFunctionRenderer, differentiable_surface_points
from recon_trainer.models.base import EvaluationMode
from recon_trainer.rendering.ndc_grid import ndc_pixel_centers
from recon_trainer.rendering.ray_bundle import RayBundle
from recon_trainer.rendering.raysampler import rays_through_ndc
from tests.models.tiny_scene import SPHERE_RADIUS, sphere_batch

TRAIN, EVAL = EvaluationMode.TRAINING, EvaluationMode.EVALUATION
SIZE = 16


class SphereField(torch.nn.Module):
    """SDF |x| - radius (a learnable radius), feature vector = the point."""

    def __init__(self, radius: float) -> None:
        super().__init__()
        self.radius = torch.nn.Parameter(torch.tensor(radius))

    def forward(self, *, ray_bundle, **kwargs):
        points = ray_bundle.ray_points()
        return points.norm(dim=-1, keepdim=True) - self.radius, points, {}


def make_renderer(**fields) -> SignedDistanceFunctionRenderer:
    torch.manual_seed(0)
    coloring = {"dims": [32, 32], "weight_norm": True}
    return SignedDistanceFunctionRenderer(
        object_bounding_sphere=1.5, ray_normal_coloring_network_args=coloring, **fields
    )


def grid_rays(frames) -> RayBundle:
    n = len(frames.camera)
    xys = ndc_pixel_centers(SIZE, SIZE).expand(n, SIZE, SIZE, 2)
    origins, directions = rays_through_ndc(frames.camera, xys)
    return RayBundle(origins=origins, directions=directions, lengths=torch.zeros(n, SIZE, SIZE, 1), xys=xys)


def small_field(**fields) -> IdrFeatureField:
    torch.manual_seed(0)
    return IdrFeatureField(dims=(64, 64, 64), bias=0.6, **fields)


def test_evaluation_of_an_analytic_sphere_gives_its_mask_depth_and_background():
    frames = sphere_batch(size=SIZE)
    renderer = make_renderer(bg_color=(0.25,))
    with torch.no_grad():
        output = renderer(ray_bundle=grid_rays(frames), implicit_functions=[SphereField(SPHERE_RADIUS)],
                          evaluation_mode=EVAL, object_mask=None)
    assert output.features.shape == (2, SIZE, SIZE, 3) and output.masks.shape == (2, SIZE, SIZE, 1)
    expected_mask = frames.fg_probability.permute(0, 2, 3, 1)
    assert torch.equal(output.masks, expected_mask)
    expected_depth = frames.depth_map.permute(0, 2, 3, 1)
    assert (output.depths - expected_depth).abs().max() < 1e-3
    hit = expected_mask[..., 0] > 0
    assert (output.features[~hit] == 0.25).all()
    assert ((output.features[hit] > 0) & (output.features[hit] < 1)).all()
    assert output.aux == {} and not output.features.requires_grad


def test_surface_points_move_with_the_sdf_like_the_exact_intersection():
    origins = torch.tensor([[0.0, 0.1, -3.0], [0.2, 0.0, -2.5]])
    directions = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.1, 1.0]]), dim=-1)
    radius = torch.tensor(0.8, requires_grad=True)
    b = (origins * directions).sum(-1)
    disc = b * b - (origins * origins).sum(-1) + radius**2
    exact = origins + (-b - disc.sqrt())[:, None] * directions  # d exact / d radius is analytic
    points = exact.detach()
    sdf = points.norm(dim=-1) - radius
    normals = torch.nn.functional.normalize(points, dim=-1)
    moved = differentiable_surface_points(points, directions, sdf, normals)
    assert torch.allclose(moved, points)
    (expected,) = torch.autograd.grad(exact.sum(), radius)
    (got,) = torch.autograd.grad(moved.sum(), radius)
    assert got == pytest.approx(float(expected), rel=1e-4)


def test_training_outputs_soft_mask_and_eikonal_gradients():
    frames = sphere_batch(size=SIZE)
    rays = grid_rays(frames)
    object_mask = frames.fg_probability[:, 0] > 0.5
    renderer = make_renderer()
    output = renderer(ray_bundle=rays, implicit_functions=[SphereField(0.6)], evaluation_mode=TRAIN,
                      object_mask=object_mask)
    n_rays = 2 * SIZE * SIZE
    assert output.aux["grad_theta"].shape == (n_rays // 2 + n_rays, 3)
    assert torch.allclose(output.aux["grad_theta"].norm(dim=-1), torch.ones(1), atol=1e-4)  # an exact SDF
    masks = output.masks[..., 0]
    hit_inside = (output.depths[..., 0] > 0) & object_mask
    assert (masks[hit_inside] == 1).all()
    # rays in the mask that miss the smaller sphere: sigmoid(-50 * min SDF) with min SDF > 0
    missed_inside = object_mask & ~hit_inside
    assert missed_inside.any() and (masks[missed_inside] < 0.5).all()
    assert renderer.requires_object_mask()
    with pytest.raises(ValueError, match="object_mask"):
        renderer(ray_bundle=rays, implicit_functions=[SphereField(0.6)], evaluation_mode=TRAIN)


def field_gradients(loss_of_output) -> tuple:
    """(SDF-network gradient norm, colour-network gradient norm) of a loss of a training render."""
    frames = sphere_batch(size=SIZE)
    field = small_field()
    renderer = make_renderer()
    object_mask = frames.fg_probability[:, 0] > 0.5
    output = renderer(ray_bundle=grid_rays(frames), implicit_functions=[field], evaluation_mode=TRAIN,
                      object_mask=object_mask)
    loss_of_output(output, object_mask).backward()

    def norm(module):
        grads = [p.grad.norm() for p in module.parameters() if p.grad is not None]
        return float(torch.stack(grads).norm()) if grads else 0.0

    return norm(field), norm(renderer.ray_normal_coloring_network)


def test_rgb_loss_on_hits_reaches_the_sdf_network():
    def rgb_loss(output, object_mask):
        hit = output.masks[..., 0] == 1
        assert hit.sum() > 20
        return ((output.features[hit] - 1.0) ** 2).mean()

    sdf_grad, color_grad = field_gradients(rgb_loss)
    assert sdf_grad > 1e-4 and color_grad > 1e-4


def test_mask_loss_on_misses_reaches_the_sdf_network_only():
    def mask_loss(output, object_mask):
        miss = output.masks[..., 0] < 1
        assert miss.sum() > 20
        return torch.nn.functional.binary_cross_entropy(output.masks[miss], object_mask[..., None][miss].float())

    sdf_grad, color_grad = field_gradients(mask_loss)
    assert sdf_grad > 1e-4 and color_grad == 0.0


def test_point_field_evaluates_points_of_several_images_with_their_codes():
    field = small_field(encoding_dim=2)
    codes = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    points = torch.randn(7, 3)
    image_ids = torch.tensor([1, 0, 1, 1, 0, 1, 0])
    evaluate = PointField(lambda ray_bundle: field(ray_bundle=ray_bundle, global_code=codes), n_images=2)
    sdf, features, gradient = evaluate.with_gradient(points, image_ids, create_graph=False)
    for i in range(7):
        one = RayBundle(points[i].reshape(1, 1, 3), torch.zeros(1, 1, 3), torch.zeros(1, 1, 1), torch.zeros(1, 1, 2))
        with torch.no_grad():
            expected_sdf, expected_features, _ = field(ray_bundle=one, global_code=codes[image_ids[i]][None])
        assert float(sdf[i].detach()) == pytest.approx(float(expected_sdf), abs=1e-5)
        assert torch.allclose(features[i], expected_features[0, 0, 0], atol=1e-5)
    assert gradient.shape == (7, 3) and torch.isfinite(gradient).all()


def test_the_eikonal_term_is_the_renderers_own_loss_and_is_logged():
    from recon_trainer.models.generic_model import GenericModel
    from tests.models.tiny_scene import tiny_model_args

    cfg = tiny_model_args(GenericModel, renderer_class_type="SignedDistanceFunctionRenderer",
                          implicit_function_class_type="IdrFeatureField", num_passes=1,
                          loss_weights={"loss_rgb_mse": 1.0, "loss_eikonal": 0.1})
    model = GenericModel(**cfg)
    assert "loss_eikonal" in model.log_vars
    assert model._implicit_functions[0].feature_vector_size == model.render_features_dimensions
