"""MoGe alignment solvers and masked nearest resize: parity with MoGe's own outputs
(tests/fixtures/moge/alignment.pt, tools/parity/make_moge_loss_fixtures.py), optimality against
the brute-force references of alignment_reference on many random float64 inputs (zero weights,
several truncations, negative scales, ties), gradients through the rebuilt scale and shift."""
import os

import pytest
import torch

from recon_trainer_plugins.moge import alignment
from recon_trainer_plugins.moge import alignment_reference as reference
from recon_trainer_plugins.moge.resampling import masked_nearest_resize

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "moge", "alignment.pt")
ALIGN_CASES = {"none": None, "t0.5": 0.5, "t2": 2.0}
POINT_CASES = {"none": None, "t1": 1.0, "t0.05": 0.05}
TRUNCS = [None, 0.05, 0.5, 2.0, 10.0]


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


# --- parity with the original -------------------------------------------------------------------

@pytest.mark.parametrize("case", ALIGN_CASES)
def test_align_matches_original(fixture, case):
    x = fixture["align/x"].clone().requires_grad_()
    y = fixture["align/y"].clone().requires_grad_()
    a, loss, index = alignment.align(x, y, fixture["align/w"], ALIGN_CASES[case])
    grad_x, grad_y = torch.autograd.grad(a.sum(), (x, y))
    assert torch.equal(index, fixture[f"align/{case}/index"])
    close(a.detach(), fixture[f"align/{case}/a"])
    close(loss, fixture[f"align/{case}/loss"])
    close(grad_x, fixture[f"align/{case}/grad_x"])
    close(grad_y, fixture[f"align/{case}/grad_y"])


@pytest.mark.parametrize("case", POINT_CASES)
@pytest.mark.parametrize("name", ["scale_z_shift", "scale_xyz_shift"])
def test_point_scale_shift_matches_original(fixture, name, case):
    src = fixture["points/src"].clone().requires_grad_()
    scale, shift = getattr(alignment, f"align_points_{name}")(
        src, fixture["points/tgt"], fixture["points/weight"], POINT_CASES[case]
    )
    (grad,) = torch.autograd.grad(scale.sum() + shift.sum(), src)
    close(scale.detach(), fixture[f"{name}/{case}/scale"])
    close(shift.detach(), fixture[f"{name}/{case}/shift"])
    close(grad, fixture[f"{name}/{case}/grad_src"])


@pytest.mark.parametrize("case", POINT_CASES)
def test_simple_solvers_match_original(fixture, case):
    src, tgt, weight, trunc = fixture["points/src"], fixture["points/tgt"], fixture["points/weight"], POINT_CASES[case]
    scale, shift = alignment.align_depth_affine(src[..., 2], tgt[..., 2], weight, trunc)
    close(scale, fixture[f"depth_affine/{case}/scale"])
    close(shift, fixture[f"depth_affine/{case}/shift"])
    close(alignment.align_points_scale(src, tgt, weight, trunc), fixture[f"points_scale/{case}"])
    close(alignment.align_depth_scale(src[..., 2], tgt[..., 2], weight, trunc), fixture[f"depth_scale/{case}"])
    close(alignment.align_points_z_shift(src, tgt, weight, trunc), fixture[f"z_shift/{case}"])
    close(alignment.align_points_xyz_shift(src, tgt, weight, trunc), fixture[f"xyz_shift/{case}"])


def test_lstsq_matches_original(fixture):
    a, b = alignment.align_affine_lstsq(fixture["align/x"], fixture["align/y"])
    close(a, fixture["lstsq/a"], rtol=1e-4, atol=1e-5)
    close(b, fixture["lstsq/b"], rtol=1e-4, atol=1e-5)


def test_weighted_lstsq_is_weighted_least_squares():
    generator = torch.Generator().manual_seed(3)
    x, y = (torch.randn(2, 30, generator=generator, dtype=torch.float64),
            torch.randn(2, 30, generator=generator, dtype=torch.float64))
    w = torch.rand(2, 30, generator=generator, dtype=torch.float64)
    a, b = alignment.align_affine_lstsq(x, y, w)
    # Normal equations of Σ w (a x + b - y)²: the residual is w-orthogonal to x and to 1.
    residual = a[:, None] * x + b[:, None] - y
    close((w * residual * x).sum(-1), torch.zeros(2, dtype=torch.float64), atol=1e-10)
    close((w * residual).sum(-1), torch.zeros(2, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("size", [(16, 16), (13, 17), (40, 48)])
def test_masked_nearest_resize_matches_utils3d(fixture, size):
    image, mask = fixture["resize/image"], fixture["resize/mask"]
    out, out_mask = masked_nearest_resize(image, mask=mask, size=size)
    key = f"resize/{size[0]}x{size[1]}"
    assert torch.equal(out_mask, fixture[f"{key}/out_mask"])
    assert torch.equal(out, fixture[f"{key}/out"])  # placeholders of empty footprints included


def test_masked_nearest_resize_picks_nearest_valid_pixel():
    values = torch.arange(16.0).reshape(4, 4)
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = mask[1, 1] = False  # top-left footprint keeps only pixel (0, 0)
    mask[2:, 2:] = False  # bottom-right footprint is empty
    out, out_mask, index = masked_nearest_resize(values[..., None], mask=mask, size=(2, 2), return_index=True)
    assert out_mask.tolist() == [[True, True], [True, False]]
    assert out[..., 0][out_mask].tolist() == [0.0, 2.0, 8.0]  # footprint centres at corners: first in row-major
    assert torch.equal(values[index], out[..., 0])


# --- optimality against the brute-force references ------------------------------------------

def random_rows(seed: int, rows: int = 6, n: int = 17):
    """float64 rows with outliers, zero weights, negative scales; row 0 all-zero weights except one."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n, generator=generator, dtype=torch.float64)
    scale = 3 * torch.randn(rows, 1, generator=generator, dtype=torch.float64)  # about half negative
    y = scale * x + 0.2 * torch.randn(rows, n, generator=generator, dtype=torch.float64)
    y[:, :4] = 5 * torch.randn(rows, 4, generator=generator, dtype=torch.float64)
    w = torch.rand(rows, n, generator=generator, dtype=torch.float64) * (torch.rand(rows, n, generator=generator) > 0.3)
    w[0] = 0
    w[0, 5] = 0.7
    x[1, :3] = 0  # constant terms
    return x, y, w


@pytest.mark.parametrize("trunc", TRUNCS)
@pytest.mark.parametrize("seed", range(8))
def test_align_is_globally_optimal(seed, trunc):
    x, y, w = random_rows(seed)
    a, loss, index = alignment.align(x, y, w, trunc)
    _, best = reference.align_reference(x, y, w, trunc)
    ours = torch.stack([reference.objective(a[i:i + 1], x[i], y[i], w[i], trunc)[0] for i in range(len(a))])
    close(ours, best, rtol=1e-10, atol=1e-10)
    constant = torch.where(x == 0, w * y.abs() if trunc is None else (w * y.abs()).clamp_max(trunc), 0).sum(-1)
    close(loss, best - constant, rtol=1e-10, atol=1e-10)  # the returned value leaves out x = 0 terms
    close(a, y.gather(-1, index[:, None])[:, 0] / x.gather(-1, index[:, None])[:, 0])
    grid = torch.linspace(-12, 12, 4001, dtype=torch.float64)
    assert (reference.grid_minimum(x, y, w, trunc, grid) >= best - 1e-10).all()


@pytest.mark.parametrize("trunc", [None, 1.0])
def test_align_ties_and_degenerate_rows(trunc):
    # Two equally good scales (1 and 3): the last candidate wins when truncated, as the original on CPU.
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    y = torch.tensor([[1.0, 1.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]])
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    a, loss, _ = alignment.align(x, y, w, trunc)
    assert a[0].item() == (3.0 if trunc is not None else 1.0)
    assert loss[0].item() == (2.0 if trunc is not None else 4.0)
    assert a[1].item() == 0.0 and loss[1].item() == 0.0  # x all zero: nothing to fit
    assert torch.isfinite(a[2]) and loss[2].item() == 0.0  # all weights zero: every scale is optimal


def test_align_batch_dims_tensor_trunc_and_chunks(monkeypatch):
    x, y, w = random_rows(11, rows=6, n=9)
    expected = alignment.align(x, y, w, 0.5)
    batched = alignment.align(x.reshape(2, 3, 9), y.reshape(2, 3, 9), w.reshape(2, 3, 9), 0.5)
    per_entry = alignment.align(x, y, w, torch.full((9,), 0.5, dtype=torch.float64))
    monkeypatch.setattr(alignment, "RESIDUAL_CHUNK_ELEMENTS", 10)
    chunked = alignment.align(x, y, w, 0.5)
    for result in (batched, per_entry, chunked):
        for actual, wanted in zip(result, expected):
            assert torch.equal(actual.reshape(wanted.shape), wanted)


def random_points(seed: int, batch: int = 3, n: int = 12):
    generator = torch.Generator().manual_seed(seed)
    src = (torch.randn(batch, n, 3, generator=generator, dtype=torch.float64)
           + torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64))
    scale = torch.tensor([1.3, -0.6, 0.4][:batch], dtype=torch.float64)[:, None, None]
    tgt = scale * src + torch.randn(batch, 1, 3, generator=generator, dtype=torch.float64)
    tgt = tgt + 0.05 * torch.randn(batch, n, 3, generator=generator, dtype=torch.float64)
    tgt[:, :3] += torch.randn(batch, 3, 3, generator=generator, dtype=torch.float64)
    weight = ((0.1 + torch.rand(batch, n, generator=generator, dtype=torch.float64))
              * (torch.rand(batch, n, generator=generator) > 0.25))
    return src, tgt, weight


def objective_at(scale, shift, src, tgt, weight, trunc):
    return torch.stack([
        reference.shifted_objective(scale[i:i + 1], shift[i:i + 1], src[i], tgt[i], weight[i], trunc)[0]
        for i in range(len(scale))
    ])


@pytest.mark.parametrize("trunc", [None, 0.05, 1.0])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("variant", ["z", "xyz"])
def test_point_scale_shift_is_optimal_over_anchors(variant, seed, trunc):
    src, tgt, weight = random_points(seed)
    solve = alignment.align_points_scale_z_shift if variant == "z" else alignment.align_points_scale_xyz_shift
    scale, shift = solve(src, tgt, weight, trunc)
    shifted = (False, False, True) if variant == "z" else (True, True, True)
    _, _, best = reference.scale_shift_reference(src, tgt, weight, shifted, trunc)
    close(objective_at(scale, shift, src, tgt, weight, trunc), best, rtol=1e-10, atol=1e-10)
    if variant == "z":
        assert (shift[:, :2] == 0).all()


@pytest.mark.parametrize("trunc", [None, 0.05, 1.0])
def test_depth_affine_is_optimal_over_anchors(trunc):
    src, tgt, weight = random_points(5, n=20)
    scale, shift = alignment.align_depth_affine(src[..., 2], tgt[..., 2], weight, trunc)
    _, _, best = reference.scale_shift_reference(src[..., 2:], tgt[..., 2:], weight, (True,), trunc)
    close(objective_at(scale, shift[:, None], src[..., 2:], tgt[..., 2:], weight, trunc), best, rtol=1e-10, atol=1e-10)


def test_z_shift_search_is_exact_locally():
    # The z-shift problem is fully covered by the anchors: no nearby (scale, shift) does better.
    src, tgt, weight = random_points(8, batch=2, n=15)
    scale, shift = alignment.align_points_scale_z_shift(src, tgt, weight, 0.5)
    generator = torch.Generator().manual_seed(0)
    for i in range(2):
        value = objective_at(scale[i:i + 1], shift[i:i + 1], src[i:i + 1], tgt[i:i + 1], weight[i:i + 1], 0.5)
        d_scale = 0.02 * torch.randn(500, generator=generator, dtype=torch.float64)
        d_shift = torch.zeros(500, 3, dtype=torch.float64)
        d_shift[:, 2] = 0.05 * torch.randn(500, generator=generator, dtype=torch.float64)
        others = reference.shifted_objective(scale[i] + d_scale, shift[i] + d_shift, src[i], tgt[i], weight[i], 0.5)
        assert (others >= value - 1e-10).all()


def test_rows_without_weight_give_zero_and_chunking_is_invisible(monkeypatch):
    src, tgt, weight = random_points(2)
    weight[1] = 0
    expected = alignment.align_points_scale_xyz_shift(src, tgt, weight, 1.0)
    assert expected[0][1] == 0 and (expected[1][1] == 0).all()
    monkeypatch.setattr(alignment, "ANCHOR_CHUNK_ELEMENTS", 50)
    for actual, wanted in zip(alignment.align_points_scale_xyz_shift(src, tgt, weight, 1.0), expected):
        assert torch.equal(actual, wanted)
    depth_scale, depth_shift = alignment.align_depth_affine(src[..., 2], tgt[..., 2], weight, 1.0)
    assert depth_scale[1] == 0 and depth_shift[1] == 0


# --- gradients ------------------------------------------------------------------------------------

@pytest.mark.parametrize("trunc", [None, 0.5])
def test_align_gradients_match_finite_differences(trunc):
    x, y, w = random_rows(4, rows=3, n=10)
    x, y = x.requires_grad_(), y.requires_grad_()
    assert torch.autograd.gradcheck(lambda x_, y_: alignment.align(x_, y_, w, trunc)[0], (x, y))


@pytest.mark.parametrize("trunc", [None, 1.0])
@pytest.mark.parametrize("name", ["align_points_scale_z_shift", "align_points_scale_xyz_shift"])
def test_scale_shift_gradients_flow_through_scale_and_shift(name, trunc):
    src, tgt, weight = random_points(6, batch=2, n=8)
    src, tgt = src.requires_grad_(), tgt.requires_grad_()
    solve = getattr(alignment, name)
    assert torch.autograd.gradcheck(lambda s, t: solve(s, t, weight, trunc), (src, tgt))
    scale, shift = solve(src, tgt, weight, trunc)
    (grad,) = torch.autograd.grad(scale.sum(), src)
    assert (grad != 0).sum() >= 2  # the two defining entries of each sample's scale


def test_depth_affine_gradients():
    src, tgt, weight = random_points(7, batch=2, n=10)
    depth_src, depth_tgt = src[..., 2].clone().requires_grad_(), tgt[..., 2].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s, t: alignment.align_depth_affine(s, t, weight, 1.0), (depth_src, depth_tgt)
    )
