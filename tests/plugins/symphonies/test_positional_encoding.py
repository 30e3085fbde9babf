"""The learnable squeeze positional encoding: grid-parametrised defaults, the original's and the usage
guide's explicit factorisations, the token order against a concat-reshape-permute reference, errors."""
import pytest
import torch
from recon_trainer_plugins.symphonies.positional_encoding import (
    LearnableSqueezePositionalEncoding,
    resolve_squeeze_shape,
)

from recon_trainer.config import ConfigError


def permute_reference(encoding: LearnableSqueezePositionalEncoding) -> torch.Tensor:
    """Independent formulation: broadcast each axis table over the full (s_i * q_i) grid, concatenate,
    split every axis into (coarse, fine), move the fine factors behind the coarse ones, flatten, project."""
    shape, squeeze = encoding.shape, encoding.squeeze
    full = [s * q for s, q in zip(shape, squeeze)]
    parts = []
    for axis, table in enumerate(encoding.axis_tables):
        view = [1, 1, 1, -1]
        view[axis] = full[axis]
        parts.append(table.weight.view(view).expand(*full, -1))
    grid = torch.cat(parts, dim=-1)
    grid = grid.reshape(shape[0], squeeze[0], shape[1], squeeze[1], shape[2], squeeze[2], -1)
    grid = grid.permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, grid.shape[-1])
    return encoding.projection(grid).unsqueeze(0)


@pytest.mark.parametrize("grid, shape, squeeze", [((6, 4, 6), (3, 2, 2), (2, 2, 3)), ((4, 4, 2), None, None),
                                                  ((8, 8, 2), (4, 4, 2), (2, 2, 1))])
def test_token_order_matches_concat_reshape_permute(grid, shape, squeeze):
    torch.manual_seed(0)
    encoding = LearnableSqueezePositionalEncoding(8, grid, shape, squeeze)
    out = encoding()
    assert out.shape == (1, grid[0] * grid[1] * grid[2], 8)
    torch.testing.assert_close(out, permute_reference(encoding), rtol=1e-5, atol=1e-6)


def test_default_is_aligned_with_the_grid():
    torch.manual_seed(1)
    encoding = LearnableSqueezePositionalEncoding(6, (3, 4, 2))
    assert encoding.shape == (3, 4, 2) and encoding.squeeze == (1, 1, 1)
    out = encoding()[0].view(3, 4, 2, 6)
    tables = [t.weight for t in encoding.axis_tables]
    for x, y, z in [(0, 0, 0), (2, 3, 1), (1, 2, 0)]:
        expected = encoding.projection(torch.cat([tables[0][x], tables[1][y], tables[2][z]]))
        torch.testing.assert_close(out[x, y, z], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grid, shape, squeeze, table_sizes", [
    ((128, 128, 8), (128, 128, 2), (2, 2, 1), (256, 256, 2)),  # Symphonies' hard-coded KITTI encoding
    ((100, 100, 50), (20, 20, 50), (5, 5, 1), (100, 100, 50)),  # usage guide, NYU 4 cm
    ((50, 50, 25), (10, 10, 25), (5, 5, 1), (50, 50, 25)),  # usage guide, NYU 8 cm crop
])
def test_original_and_guide_factorisations(grid, shape, squeeze, table_sizes):
    encoding = LearnableSqueezePositionalEncoding(4, grid, shape, squeeze)
    assert tuple(t.num_embeddings for t in encoding.axis_tables) == table_sizes
    assert encoding.num_tokens == grid[0] * grid[1] * grid[2]


def test_nyu_grid_defaults():
    assert resolve_squeeze_shape((60, 60, 36)) == ((60, 60, 36), (1, 1, 1))
    assert resolve_squeeze_shape((60, 60, 36), squeeze=(2, 2, 1)) == ((30, 30, 36), (2, 2, 1))
    assert resolve_squeeze_shape((60, 60, 36), shape=(15, 15, 36)) == ((15, 15, 36), (4, 4, 1))
    assert LearnableSqueezePositionalEncoding(8, (60, 60, 36))().shape == (1, 129600, 8)


@pytest.mark.parametrize("shape, squeeze, words", [
    ((128, 128, 2), (2, 2, 1), "129600 voxels"),  # the original's KITTI encoding on the NYU grid
    (None, (7, 1, 1), "must divide"),
    ((7, 60, 36), None, "must divide"),
    ((60, 60), None, "three positive integers"),
])
def test_mismatches_raise_config_errors(shape, squeeze, words):
    with pytest.raises(ConfigError, match=words) as raised:
        resolve_squeeze_shape((60, 60, 36), shape, squeeze)
    assert isinstance(raised.value, ValueError)
    assert "scene_pos" in str(raised.value) or "three" in str(raised.value)


def test_gradients_reach_every_table():
    encoding = LearnableSqueezePositionalEncoding(8, (4, 4, 2), (2, 2, 2), (2, 2, 1))
    encoding().square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoding.parameters())
