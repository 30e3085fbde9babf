"""Multi-scale deformable attention: the grid_sample core against a per-point loop, the module against
mmcv 2.1's MultiScaleDeformableAttention (a stored fixture of its pytorch path, and live when mmcv is
installed), and the squeeze attention against an explicit 3-D gather and the original module's fixture."""
import math
import os

import pytest
import torch
from recon_trainer_plugins.symphonies import deformable_attention as msda
from recon_trainer_plugins.symphonies.deformable_attention import (
    MultiScaleDeformableAttention,
    multi_scale_deformable_sampling,
    multi_scale_deformable_sampling_reference,
)
from recon_trainer_plugins.symphonies.squeeze_attention import (
    DeformableSqueezeAttention,
    squeeze_reference_points,
    squeeze_volume,
)

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "symphonies", "msda_parity.pt")


def random_sampling_inputs(generator, shapes, batch=2, queries=4, heads=3, head_dims=4, points=3,
                           dtype=torch.float64):
    keys = sum(h * w for h, w in shapes)
    value = torch.randn(batch, keys, heads, head_dims, generator=generator, dtype=dtype)
    # locations in [-0.3, 1.3]: a good share of the samples fall partly or wholly outside the maps
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=generator, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(batch, queries, heads, len(shapes), points, generator=generator, dtype=dtype)
    return value, locations, weights


@pytest.mark.parametrize("shapes", [[(5, 7), (3, 2), (1, 4)], [(4, 4)], [(2, 9), (6, 1)]])
def test_torch_sampling_matches_per_point_loop(shapes):
    generator = torch.Generator().manual_seed(len(shapes))
    value, locations, weights = random_sampling_inputs(generator, shapes)
    fast = multi_scale_deformable_sampling(value, torch.tensor(shapes), locations, weights)
    slow = multi_scale_deformable_sampling_reference(value, shapes, locations, weights)
    assert fast.shape == (2, 4, 3 * 4)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)


def test_sampling_at_pixel_centres_reads_the_pixels_and_zero_outside():
    value = torch.arange(6.0).view(1, 6, 1, 1)  # one level 2 x 3, pixel (i, j) = 3 i + j
    centres = torch.tensor([[(0.5 / 3, 0.25), (2.5 / 3, 0.75), (1.5, 0.5), (-0.4, 0.5)]])  # (x, y)
    locations = centres.view(1, 4, 1, 1, 1, 2)
    weights = torch.ones(1, 4, 1, 1, 1)
    out = multi_scale_deformable_sampling(value, [(2, 3)], locations, weights)
    torch.testing.assert_close(out.view(-1), torch.tensor([0.0, 5.0, 0.0, 0.0]))


def test_sampling_gradients_flow_and_pass_gradcheck():
    generator = torch.Generator().manual_seed(7)
    shapes = [(3, 4), (2, 2)]
    value, locations, weights = random_sampling_inputs(generator, shapes, batch=1, queries=2, heads=2, head_dims=2,
                                                       points=2)
    locations = locations.clamp(0.05, 0.95)  # inside the maps (random points avoid the bilinear kinks)
    for tensor in (value, locations, weights):
        tensor.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, loc, w: multi_scale_deformable_sampling(v, shapes, loc, w),
                                    (value, locations, weights), eps=1e-6, atol=1e-5)


def test_module_initialisation_is_mmcvs():
    attention = MultiScaleDeformableAttention(8, num_heads=4, num_levels=2, num_points=3)
    assert torch.count_nonzero(attention.sampling_offsets.weight) == 0
    assert torch.count_nonzero(attention.attention_weights.weight) == 0
    assert torch.count_nonzero(attention.attention_weights.bias) == 0
    bias = attention.sampling_offsets.bias.view(4, 2, 3, 2)
    for head in range(4):
        angle = 2 * math.pi * head / 4
        direction = torch.tensor([math.cos(angle), math.sin(angle)])
        direction = direction / direction.abs().max()
        for point in range(3):
            torch.testing.assert_close(bias[head, 1, point], direction * (point + 1))
    assert torch.count_nonzero(attention.value_proj.bias) == 0 and torch.count_nonzero(attention.output_proj.bias) == 0


def test_module_adds_the_query_as_identity_like_mmcv():
    attention = MultiScaleDeformableAttention(8, num_heads=2, num_levels=1, num_points=2).eval()
    torch.nn.init.zeros_(attention.output_proj.weight)
    query, value = torch.randn(1, 3, 8), torch.randn(1, 12, 8)
    out = attention(query, value, query_pos=torch.randn(1, 3, 8), reference_points=torch.rand(1, 3, 1, 2),
                    spatial_shapes=[(3, 4)])
    torch.testing.assert_close(out, query)  # output_proj(.) = 0 -> only the identity (query without query_pos)


def load_fixture():
    return torch.load(FIXTURE, map_location="cpu", weights_only=True)


def test_module_matches_mmcv_fixture():
    case = load_fixture()["msda"]
    attention = MultiScaleDeformableAttention(**case["config"]).eval()
    attention.load_state_dict(case["state_dict"])  # mmcv's parameter names
    out = attention(case["query"], case["value"], query_pos=case["query_pos"],
                    key_padding_mask=case["key_padding_mask"], reference_points=case["reference_points"],
                    spatial_shapes=case["spatial_shapes"])
    torch.testing.assert_close(out, case["output"], rtol=1e-5, atol=1e-5)


def test_module_matches_live_mmcv():
    ops = pytest.importorskip("mmcv.ops")
    generator = torch.Generator().manual_seed(11)
    theirs = ops.MultiScaleDeformableAttention(16, 4, 2, 3, batch_first=True).eval()
    ours = MultiScaleDeformableAttention(16, 4, 2, 3).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    ours.load_state_dict(theirs.state_dict())
    shapes = torch.tensor([[5, 6], [2, 3]])
    value, query = torch.randn(2, 36, 16, generator=generator), torch.randn(2, 7, 16, generator=generator)
    reference = torch.rand(2, 7, 2, 2, generator=generator)
    starts = torch.tensor([0, 30])
    expected = theirs(query, value=value, reference_points=reference, spatial_shapes=shapes, level_start_index=starts)
    torch.testing.assert_close(ours(query, value, reference_points=reference, spatial_shapes=shapes), expected,
                               rtol=1e-5, atol=1e-5)


def test_force_torch_path_flag(monkeypatch):
    monkeypatch.setattr(msda, "FORCE_TORCH_PATH", False)
    msda.use_torch_path(True)
    assert msda.FORCE_TORCH_PATH is True
    msda.use_torch_path(False)
    assert msda.FORCE_TORCH_PATH is False
    # on CPU the core is always the grid_sample path
    generator = torch.Generator().manual_seed(2)
    value, locations, weights = random_sampling_inputs(generator, [(3, 3)], dtype=torch.float32)
    torch.testing.assert_close(msda.multi_scale_deformable_attention_core(value, [(3, 3)], locations, weights),
                               multi_scale_deformable_sampling(value, [(3, 3)], locations, weights))


def test_squeezed_layout_puts_voxel_xyz_at_row_x_times_z_plus_z():
    shape = (3, 2, 4)
    volume = torch.arange(24.0).view(1, 24, 1)  # voxel (x, y, z) holds its raster index
    folded, (height, width) = squeeze_volume(volume, shape)
    assert (height, width) == (12, 2)
    folded = folded.view(height, width)
    for x in range(3):
        for y in range(2):
            for z in range(4):
                assert folded[x * 4 + z, y] == (x * 2 + y) * 4 + z
    reference = torch.tensor([[0.25, 0.5, 0.75]])
    torch.testing.assert_close(squeeze_reference_points(reference, shape), torch.tensor([[0.5, 0.25 + 0.25 / 4]]))


def bilinear_from_volume(volume, z_size, x, y):
    """Sample the folded (X*Z, Y) map at normalised (x over Y, y over X*Z) by reading the 3-D volume
    (X, Y, Z, Dh) directly: map row r is voxel (r // Z, ., r % Z)."""
    x_size, y_size = volume.shape[0], volume.shape[1]
    height, width = x_size * z_size, y_size
    column, row = x * width - 0.5, y * height - 0.5
    c0, r0 = math.floor(column), math.floor(row)
    total = volume.new_zeros(volume.shape[-1])
    for r, wr in ((r0, r0 + 1 - row), (r0 + 1, row - r0)):
        for c, wc in ((c0, c0 + 1 - column), (c0 + 1, column - c0)):
            if 0 <= r < height and 0 <= c < width:
                total = total + volume[r // z_size, c, r % z_size] * (wr * wc)
    return total


def test_squeeze_attention_matches_explicit_3d_gather():
    torch.manual_seed(0)
    embed, heads, points, shape = 8, 2, 3, (3, 4, 5)
    attention = DeformableSqueezeAttention(embed, heads, points).eval().double()
    with torch.no_grad():
        attention.attention.sampling_offsets.weight.normal_(0, 0.5)
        attention.attention.attention_weights.weight.normal_(0, 0.5)
    query, value = torch.randn(1, 4, embed, dtype=torch.float64), torch.randn(1, 60, embed, dtype=torch.float64)
    reference = torch.rand(1, 4, 3, dtype=torch.float64)
    out = attention(query, value, shape, reference)
    inner = attention.attention
    map_reference = squeeze_reference_points(reference, shape).unsqueeze(2)
    locations, weights = inner.sampling(query, map_reference, [(shape[0] * shape[2], shape[1])])
    volume = inner.value_proj(value).view(*shape, heads, embed // heads)
    expected = torch.zeros(1, 4, heads, embed // heads, dtype=torch.float64)
    for q in range(4):
        for head in range(heads):
            for p in range(points):
                x, y = locations[0, q, head, 0, p].tolist()
                expected[0, q, head] += weights[0, q, head, 0, p] * bilinear_from_volume(volume[..., head, :],
                                                                                          shape[2], x, y)
    expected = inner.output_proj(expected.view(1, 4, embed)) + query
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_squeeze_attention_matches_original_fixture():
    case = load_fixture()["squeeze"]
    config = case["config"]
    attention = DeformableSqueezeAttention(config["embed_dims"], config["num_heads"], config["num_points"]).eval()
    state = {key.replace("attns.0.", "attention."): value for key, value in case["state_dict"].items()}
    attention.load_state_dict(state)
    out = attention(case["query"], case["value"], config["volume_shape"], case["reference_points_xyz"],
                    query_pos=case["query_pos"])
    torch.testing.assert_close(out, case["output"], rtol=1e-5, atol=1e-5)
