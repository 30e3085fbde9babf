"""MoGe inference on a stub network that outputs the affine-invariant point map of a known
perspective scene: infer recovers the intrinsics and the depth, for both versions, batched and
unbatched, with and without a given FoV, and applies mask, metric scale and normals as MoGe."""
import math

import pytest
import torch
from torch import nn

from recon_trainer_plugins.moge.geometry import depth_to_points, intrinsics_from_focal_center, intrinsics_to_fov
from recon_trainer_plugins.moge.inference import infer, num_tokens_for_level

HEIGHT, WIDTH = 30, 40


def scene(batch: int):
    """(depth (B, H, W) > 0, intrinsics (B, 3, 3) normalised, centred, square pixels)."""
    generator = torch.Generator().manual_seed(batch)
    rows = torch.linspace(0, 1, HEIGHT)[:, None]
    cols = torch.linspace(0, 1, WIDTH)[None, :]
    depth = 2 + rows + 0.5 * torch.sin(6 * cols) * torch.rand(batch, 1, 1, generator=generator)
    depth = depth + torch.rand(batch, 1, 1, generator=generator)
    fx = 0.6 + torch.rand(batch, generator=generator)
    return depth, intrinsics_from_focal_center(fx, fx * WIDTH / HEIGHT, 0.5, 0.5)


class StubNetwork(nn.Module):
    """Returns scale · (x, y, z − shift) of the scene's point map, a mask that leaves out the
    left quarter, and for v2 unit normals and a metric scale; records the num_tokens asked."""

    num_tokens_range = (1000, 1900)

    def __init__(self, version: str, depth, intrinsics, shift, scale, metric_scale=None):
        super().__init__()
        self.version = version
        self.weight = nn.Parameter(torch.ones(()))
        self.points = depth_to_points(depth, intrinsics)
        self.shift, self.scale, self.metric_scale = shift, scale, metric_scale
        self.asked = []

    def forward(self, image, num_tokens):
        self.asked.append(num_tokens)
        points = self.points.clone()
        points[..., 2] -= self.shift[:, None, None]
        points = points * self.scale[:, None, None, None] * self.weight
        keep = torch.ones(points.shape[:-1])
        keep[..., : WIDTH // 4] = 0
        if self.version == "v1":
            return {"points": points, "mask": keep}  # raw score, thresholded at 0.5
        normal = torch.nn.functional.normalize(torch.ones_like(points), dim=-1)
        return {"points": points, "mask": 0.1 + 0.8 * keep, "normal": normal, "metric_scale": self.metric_scale}


def make(version: str, batch: int = 3):
    depth, intrinsics = scene(batch)
    shift = torch.tensor([0.5, -0.3, 1.0, 0.2][:batch])
    scale = torch.tensor([0.7, 1.3, 2.0, 1.0][:batch])
    metric = torch.tensor([1.5, 0.5, 2.0, 3.0][:batch]) if version == "v2" else None
    return StubNetwork(version, depth, intrinsics, shift, scale, metric), depth, intrinsics


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("given_fov", [False, True])
def test_recovers_intrinsics_and_depth(version, given_fov):
    network, depth, intrinsics = make(version)
    image = torch.rand(3, 3, HEIGHT, WIDTH)
    fov_x = torch.rad2deg(intrinsics_to_fov(intrinsics)[0]) if given_fov else None
    out = infer(network, image, fov_x=fov_x, resolution_level=5)
    assert network.asked == [num_tokens_for_level(network, 5)] == [1500]
    torch.testing.assert_close(out["intrinsics"], intrinsics, rtol=1e-4, atol=1e-5)
    # v1: depth in the network's scale (affine-invariant up to scale); v2: times the metric scale.
    factor = network.scale if version == "v1" else network.scale * network.metric_scale
    expected_depth = depth * factor[:, None, None]
    mask = out["mask"]
    assert mask.shape == depth.shape and not mask[..., : WIDTH // 4].any() and mask[..., WIDTH // 4 :].all()
    torch.testing.assert_close(out["depth"][mask], expected_depth[mask], rtol=1e-4, atol=1e-5)
    assert torch.isinf(out["depth"][~mask]).all() and torch.isinf(out["points"][~mask]).all()
    expected_points = depth_to_points(depth, intrinsics) * factor[:, None, None, None]
    torch.testing.assert_close(out["points"][mask], expected_points[mask], rtol=1e-4, atol=1e-5)
    if version == "v2":
        assert (out["normal"][~mask] == 0).all()
        torch.testing.assert_close(out["normal"][mask].norm(dim=-1), torch.ones(int(mask.sum())))
    else:
        assert "normal" not in out


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_unbatched_scalar_fov_and_options(version):
    network, depth, intrinsics = make(version, batch=1)
    fov_x = math.degrees(intrinsics_to_fov(intrinsics)[0].item())
    out = infer(network, torch.rand(3, HEIGHT, WIDTH), fov_x=fov_x, num_tokens=1234, apply_mask=False,
                force_projection=False, use_fp16=True)
    assert network.asked == [1234]
    assert out["points"].shape == (HEIGHT, WIDTH, 3) and out["intrinsics"].shape == (3, 3)
    assert out["depth"].dtype == out["points"].dtype == torch.float32
    assert torch.isfinite(out["depth"]).all()  # apply_mask=False keeps every pixel
    factor = network.scale[0] * (1 if version == "v1" else network.metric_scale[0])
    torch.testing.assert_close(out["depth"], depth[0] * factor, rtol=1e-4, atol=1e-5)
    # force_projection=False keeps the network's xy (scaled by the metric scale for v2).
    expected_xy = network.points[0, ..., :2] * network.scale[0] * (1 if version == "v1" else network.metric_scale[0])
    torch.testing.assert_close(out["points"][..., :2], expected_xy, rtol=1e-4, atol=1e-5)
