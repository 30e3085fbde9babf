"""RayBundle: ray points and the reshaping used to render in chunks."""
import dataclasses

import pytest
import torch

from recon_trainer.rendering.ray_bundle import RayBundle
from recon_trainer.rendering.renderer import RendererOutput, cat_renderer_outputs, render_in_chunks


def grid_bundle() -> RayBundle:
    return RayBundle(
        origins=torch.rand(2, 3, 4, 3),
        directions=torch.rand(2, 3, 4, 3),
        lengths=torch.rand(2, 3, 4, 5),
        xys=torch.rand(2, 3, 4, 2),
    )


def test_ray_points_by_hand():
    bundle = RayBundle(
        origins=torch.tensor([[[1.0, 2.0, 3.0]]]),
        directions=torch.tensor([[[0.0, 0.5, -1.0]]]),
        lengths=torch.tensor([[[0.0, 2.0]]]),
        xys=torch.zeros(1, 1, 2),
    )
    torch.testing.assert_close(bundle.ray_points(), torch.tensor([[[[1.0, 2.0, 3.0], [1.0, 3.0, 1.0]]]]))


def test_flatten_chunk_unflatten():
    bundle = grid_bundle()
    assert bundle.spatial_shape == (3, 4) and bundle.n_rays_per_image == 12
    flat = bundle.flatten()
    assert flat.origins.shape == (2, 12, 3) and flat.lengths.shape == (2, 12, 5) and flat.xys.shape == (2, 12, 2)
    chunk = flat.chunk(10, 15)  # the last chunk may be shorter
    assert chunk.lengths.shape == (2, 2, 5)
    torch.testing.assert_close(chunk.xys, bundle.xys[:, 2, 2:])
    back = flat.unflatten((3, 4))
    for name in ("origins", "directions", "lengths", "xys"):
        assert torch.equal(getattr(back, name), getattr(bundle, name))
    with pytest.raises(ValueError, match="flattened"):
        bundle.chunk(0, 2)


def test_with_lengths_keeps_the_rays():
    bundle = grid_bundle()
    longer = bundle.with_lengths(torch.rand(2, 3, 4, 9))
    assert longer.origins is bundle.origins and longer.ray_points().shape == (2, 3, 4, 9, 3)


def test_cat_and_reshape_renderer_outputs():
    def output(n):
        return RendererOutput(
            features=torch.rand(2, n, 3),
            depths=torch.rand(2, n, 1),
            masks=torch.rand(2, n, 1),
            aux={"weights": torch.rand(2, n, 5), "global": torch.rand(2, 7)},
        )

    parts = [output(5), output(5), output(2)]
    parts[0].prev_stage, parts[1].prev_stage, parts[2].prev_stage = output(5), output(5), output(2)
    joined = cat_renderer_outputs(parts).reshape_rays(2, 12, (3, 4))
    assert joined.features.shape == (2, 3, 4, 3) and joined.aux["weights"].shape == (2, 3, 4, 5)
    assert joined.aux["global"] is parts[0].aux["global"]  # not per ray: from the first chunk
    assert joined.prev_stage.depths.shape == (2, 3, 4, 1)
    torch.testing.assert_close(joined.features[:, 2, 2:], parts[2].features)


@pytest.mark.parametrize(
    "n_points, chunk_size, expected_rays",
    [
        (5, 60, [12]),  # 12 rays x 5 points fit one chunk of 60 points
        (5, 25, [4, 4, 4]),  # ceil(60 / 25) = 3 chunks of equal size
        (5, 35, [6, 6]),
        (5, 5, [1] * 12),  # one ray per chunk
        (5, 7, [2] * 6),  # ceil(60 / 7) = 9 chunks of ceil(12 / 9) = 2 rays: 6 of them hold all
        (0, 5, [4, 4, 4]),  # no points (e.g. a ray marcher choosing its own) count as one
    ],
)
def test_chunks_count_points_per_image_as_implicitron(n_points, chunk_size, expected_rays):
    """Implicitron's chunk_generator: ceil(R * max(P, 1) / chunk_size) chunks of ceil(R / n_chunks) rays."""
    bundle = dataclasses.replace(grid_bundle(), lengths=torch.rand(2, 3, 4, n_points))
    seen = []

    def render(rays: RayBundle) -> RendererOutput:
        seen.append(rays.origins.shape[:2])
        return RendererOutput(features=rays.origins, depths=rays.origins[..., :1], masks=rays.origins[..., :1])

    output = render_in_chunks(render, bundle, chunk_size)
    assert [tuple(shape) for shape in seen] == [(2, r) for r in expected_rays]
    torch.testing.assert_close(output.features, bundle.origins)
