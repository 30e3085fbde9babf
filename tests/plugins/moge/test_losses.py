"""MoGe training losses: parity with MoGe's own outputs (tests/fixtures/moge/losses.pt, made by
tools/parity/make_moge_loss_fixtures.py; the local loss draws its anchors from the global torch RNG
exactly as the original, so the same seed gives the same patches), hand-computed small cases, and
unknown (NaN / inf) ground truth."""
import math
import os

import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer_plugins.moge import losses

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "moge", "losses.pt")
RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def close(actual, expected, rtol: float = RTOL, atol: float = ATOL) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float32), expected, rtol=rtol, atol=atol)


# --- parity with the original -------------------------------------------------------------------

GLOBAL_CASES = {
    "default": {"align_resolution": 16},
    "beta_sparse": {"align_resolution": 16, "beta": 0.05, "trunc": 0.5, "sparsity_aware": True},
}


@pytest.mark.parametrize("case", GLOBAL_CASES)
def test_global_loss_matches_original(fixture, case):
    pred = fixture["pred"].clone().requires_grad_()
    loss, misc, scale = losses.affine_invariant_global_loss(pred, fixture["gt"], **GLOBAL_CASES[case])
    close(loss.detach(), fixture[f"global/{case}/loss"])
    close(scale, fixture[f"global/{case}/scale"])
    close(misc["truncated_error"], fixture[f"global/{case}/truncated_error"])
    close(misc["delta"], fixture[f"global/{case}/delta"])
    assert not scale.requires_grad
    if case == "default":
        (grad,) = torch.autograd.grad(loss.sum(), pred)
        close(grad, fixture["global/default/grad"], atol=1e-9)
    # One sample alone, as MoGe's training script calls it.
    single, _, single_scale = losses.affine_invariant_global_loss(
        fixture["pred"][1], fixture["gt"][1], **GLOBAL_CASES[case]
    )
    assert single.shape == () and single_scale.shape == ()
    close(single, fixture[f"global/{case}/loss"][1])
    close(single_scale, fixture[f"global/{case}/scale"][1])


@pytest.mark.parametrize("case", ["scaled", "no_global", "beta_sparse"])
def test_local_loss_matches_original(fixture, case):
    pred = fixture["pred"][0].clone().requires_grad_()
    global_scale = None if case == "no_global" else fixture["global/default/scale"][0]
    params = {"beta": 0.05, "sparsity_aware": True} if case == "beta_sparse" else {}
    torch.manual_seed(int(fixture["local/seed"]))
    loss, misc = losses.affine_invariant_local_loss(
        pred, fixture["gt"][0], fixture["local/focal"], global_scale, 4, align_resolution=8, num_patches=16, **params)
    assert loss.shape == ()
    close(loss.detach(), fixture[f"local/{case}/loss"])
    close(misc["truncated_error"], fixture[f"local/{case}/truncated_error"])
    close(misc["delta"], fixture[f"local/{case}/delta"])
    if case == "scaled":
        (grad,) = torch.autograd.grad(loss, pred)
        close(grad, fixture["local/scaled/grad"], atol=1e-9)


def test_other_losses_match_original(fixture):
    pred, gt = fixture["pred"], fixture["gt"]
    close(losses.normal_loss(pred, gt)[0], fixture["normal/loss"])
    close(losses.edge_loss(pred, gt)[0], fixture["edge/loss"])
    mask_args = (fixture["mask/pred"], fixture["mask/pos"], fixture["mask/neg"])
    close(losses.mask_l2_loss(*mask_args)[0], fixture["mask_l2/loss"])
    close(losses.mask_bce_loss(*mask_args)[0], fixture["mask_bce/loss"])
    close(losses.metric_scale_loss(fixture["metric/pred"], fixture["metric/gt"])[0], fixture["metric_scale/loss"])
    close(losses.normal_map_loss(fixture["normal/pred"], fixture["normal/gt"])[0], fixture["normal_map/loss"])


def test_registry_names_every_loss():
    assert set(losses.LOSS_FUNCTIONS) == {
        "affine_invariant_global_loss", "affine_invariant_local_loss", "normal_loss", "edge_loss",
        "mask_l2_loss", "mask_bce_loss", "metric_scale_loss", "normal_map_loss"}
    assert all(losses.LOSS_FUNCTIONS[name].__name__ == name for name in losses.LOSS_FUNCTIONS)


# --- local loss options ---------------------------------------------------------------------------

def test_uniform_anchor_sampling(fixture):
    mask = torch.isfinite(fixture["gt"]).all(-1)
    probabilities = losses._anchor_uniform(mask)
    for p, m in zip(probabilities, mask):
        close(p[m], torch.full((int(m.sum()),), 1 / m.sum().item()), rtol=1e-5)
        assert (p[~m] == 0).all()
    torch.manual_seed(0)
    loss, misc = losses.affine_invariant_local_loss(
        fixture["pred"], fixture["gt"], torch.tensor([0.7, 0.9]), fixture["global/default/scale"], 4,
        align_resolution=8, num_patches=16, anchor_sampling="uniform")
    assert loss.shape == (2,) and torch.isfinite(loss).all() and (loss > 0).all()
    assert 0 < misc["delta"] <= 1
    with pytest.raises(ConfigError, match="anchor_sampling"):
        losses.affine_invariant_local_loss(
            fixture["pred"], fixture["gt"], torch.tensor([0.7, 0.9]), None, 4, anchor_sampling="random"
        )


def test_local_loss_batched_equals_per_sample_with_same_anchors(fixture, monkeypatch):
    # With every sample drawing the same anchors, a batch is the per-sample losses side by side.
    pred, gt = fixture["pred"], fixture["gt"]
    gt = torch.stack([gt[0], gt[0]])
    torch.manual_seed(5)
    single, _ = losses.affine_invariant_local_loss(
        pred[0], gt[0], torch.tensor(0.7), torch.tensor(1.6), 4, align_resolution=8, num_patches=8
    )
    original_multinomial = torch.multinomial

    def repeated_draws(probabilities, count, replacement):  # the same draws for both samples
        half = original_multinomial(probabilities[: probabilities.shape[0] // 2], count // 2, replacement)
        return torch.cat([half, half + probabilities.shape[0] // 2])

    monkeypatch.setattr(torch, "multinomial", repeated_draws)
    torch.manual_seed(5)
    batched, _ = losses.affine_invariant_local_loss(
        torch.stack([pred[0], pred[0]]), gt, torch.tensor([0.7, 0.7]), torch.tensor([1.6, 1.6]), 4,
        align_resolution=8, num_patches=8)
    close(batched, torch.stack([single, single]))


def test_local_loss_without_patches_is_zero():
    gt = torch.full((1, 6, 6, 3), float("nan"))
    gt[0, 0, 0] = torch.tensor([0.0, 0.0, 1.0])  # a single known pixel: patches too small
    loss, misc = losses.affine_invariant_local_loss(torch.randn(1, 6, 6, 3), gt, torch.tensor([1.0]), None, 4)
    assert loss.item() == 0.0 and misc == {}


# --- hand-computed cases -------------------------------------------------------------------------

def test_mask_losses_by_hand():
    pred = torch.tensor([[0.2, 0.7], [0.5, 0.9]])
    pos = torch.tensor([[True, False], [False, True]])
    neg = torch.tensor([[False, True], [False, False]])  # pixel (1, 0) unknown: not supervised
    loss, misc = losses.mask_l2_loss(pred, pos, neg)
    assert loss.item() == pytest.approx((0.8 ** 2 + 0.7 ** 2 + 0.1 ** 2) / 4) and misc == {}
    loss, _ = losses.mask_bce_loss(pred, pos, neg)
    assert loss.item() == pytest.approx((-math.log(0.2) - math.log(0.3) - math.log(0.9)) / 4, rel=1e-6)


def plane_points(size: int = 3) -> torch.Tensor:
    """A fronto-parallel plane z = 2 sampled on a size x size grid, (size, size, 3)."""
    grid_y, grid_x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([grid_x, grid_y, torch.full_like(grid_x, 2.0)], dim=-1)


def rotate_x(points: torch.Tensor, degrees: float) -> torch.Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    rotation = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=points.dtype)
    return points @ rotation.T


def test_normal_loss_by_hand():
    gt = plane_points(3)
    # Identical: every angle is clamped up to 1°, smoothed with beta 3°: 0.5·(1°)²/3°.
    floor = 0.5 * math.radians(1) ** 2 / math.radians(3)
    assert losses.normal_loss(gt, gt)[0].item() == pytest.approx(4 * floor / (4 * 3))
    # Rotated by 30° about x: every triangle normal turns by 30°: smoothed 30° - 1.5°.
    angle = math.radians(30) - 0.5 * math.radians(3)
    pred = rotate_x(gt, 30)
    assert losses.normal_loss(pred, gt)[0].item() == pytest.approx(4 * angle / (4 * 3))
    # Unknown corner pixel: of its cell's four triangles only the one without it counts.
    gt_hole = gt.clone()
    gt_hole[0, 0] = float("nan")
    assert losses.normal_loss(pred, gt_hole)[0].item() == pytest.approx(13 * angle / 4 / (4 * 3))
    gt_sky = gt.clone()
    gt_sky[0, 0] = float("inf")
    assert losses.normal_loss(pred, gt_sky)[0].item() == pytest.approx(13 * angle / 4 / (4 * 3))


def test_edge_loss_by_hand():
    gt = plane_points(4)
    floor = 0.5 * math.radians(0.1) ** 2 / math.radians(3)
    assert losses.edge_loss(gt, gt)[0].item() == pytest.approx(2 * floor / (2 * 4))
    # Rotated by 30° about x: vertical differences (along y) turn by 30°, horizontal ones (along x) not.
    pred = rotate_x(gt, 30)
    angle = math.radians(30) - 0.5 * math.radians(3)
    assert losses.edge_loss(pred, gt)[0].item() == pytest.approx((angle + floor) / (2 * 4))
    # NaN at a corner removes one vertical and one horizontal difference of 12 each.
    gt_hole = gt.clone()
    gt_hole[0, 0, 2] = float("nan")
    assert losses.edge_loss(pred, gt_hole)[0].item() == pytest.approx((11 * angle + 11 * floor) / 12 / (2 * 4))


def test_metric_scale_and_normal_map_by_hand():
    loss, _ = losses.metric_scale_loss(torch.tensor([2.0, 3.0, 1.0]), torch.tensor([1.0, 0.0, -2.0]))
    assert loss.tolist() == pytest.approx([math.log(2) ** 2, 0.0, 0.0])
    pred = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]]])
    gt = torch.tensor([[[[0.0, 3.0, 0.0], [float("nan"), 0.0, 1.0]]]])
    loss, _ = losses.normal_map_loss(pred, gt)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((math.pi / 2) ** 2 / 2, rel=1e-6)


def test_global_loss_exact_affine_match_and_unknown_sample():
    generator = torch.Generator().manual_seed(0)
    gt = plane_points(12).expand(2, 12, 12, 3).clone()
    gt[..., 2] += torch.rand(2, 12, 12, generator=generator, dtype=torch.float64)
    gt[0, :2] = float("nan")
    gt[0, -1, -3:] = float("inf")
    gt[1] = float("nan")  # nothing known in sample 1
    pred = (gt.nan_to_num(1.0, 1.0) - torch.tensor([0.0, 0.0, 0.3], dtype=torch.float64)) / 2.5
    pred.requires_grad_()
    loss, misc, scale = losses.affine_invariant_global_loss(pred, gt, align_resolution=8)
    assert loss[0].item() == pytest.approx(0.0, abs=1e-12) and scale[0].item() == pytest.approx(2.5)
    assert loss[1].item() == 0.0 and scale[1].item() == 0.0  # no anchor: a failed alignment
    assert misc["delta"] == pytest.approx(1.0, abs=1e-6)
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    assert torch.isfinite(grad).all()
