"""RayBundle: ray points and the reshaping used to render in chunks."""
import pytest
import torch

from recon_trainer.rendering.ray_bundle import RayBundle
from recon_trainer.rendering.renderer import RendererOutput, cat_renderer_outputs


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
