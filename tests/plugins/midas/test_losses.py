"""MiDaS losses: invariance to the prediction's scale and shift, zero for an affine match, parity with
the brute-force NumPy reference on random inputs and masks, hand-computed gradient term, gradients."""

import pytest
import torch

from recon_trainer_plugins.midas import losses_reference as reference
from recon_trainer_plugins.midas.losses import gradient_matching_loss, midas_loss, ssi_lsq_loss, ssi_trimmed_loss

SSI_LOSSES = {"lsq": ssi_lsq_loss, "trimmed": ssi_trimmed_loss}
SHAPE = (3, 17, 21)  # odd sizes so that the subsampled scales have ragged borders


def random_inputs(seed: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    pred = torch.rand(SHAPE, generator=generator, dtype=dtype)
    target = 2 * pred + 0.5 + 0.3 * torch.randn(SHAPE, generator=generator, dtype=dtype)
    mask = torch.rand(SHAPE, generator=generator) > 0.3
    mask[2, :, :10] = False  # one image with fewer valid pixels, so that batch-based reduction matters
    return pred, target, mask


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("variant", ["lsq", "trimmed"])
def test_matches_brute_force_reference(seed, variant):
    pred, target, mask = random_inputs(seed)
    loss, residual = SSI_LOSSES[variant](pred, target, mask)
    arrays = (pred.numpy(), target.numpy(), mask.numpy())
    expected_loss, expected_residual = getattr(reference, f"ssi_{variant}_loss")(*arrays)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-9)
    assert torch.allclose(residual, torch.from_numpy(expected_residual), atol=1e-9)
    grad = gradient_matching_loss(residual, mask, scales=4)
    assert grad.item() == pytest.approx(reference.gradient_matching_loss(expected_residual, mask.numpy(), 4), rel=1e-9)


@pytest.mark.parametrize("trim", [0.0, 0.35])
def test_trimmed_reference_at_other_trims(trim):
    pred, target, mask = random_inputs(7)
    loss, _ = ssi_trimmed_loss(pred, target, mask, trim=trim)
    expected, _ = reference.ssi_trimmed_loss(pred.numpy(), target.numpy(), mask.numpy(), trim=trim)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("variant", ["lsq", "trimmed"])
def test_invariant_to_positive_scale_and_shift_of_the_prediction(variant):
    pred, target, mask = random_inputs(4, dtype=torch.float32)
    base = midas_loss(pred, target, mask, variant=variant)
    moved = midas_loss(7.5 * pred - 3.0, target, mask, variant=variant)
    assert base["loss_ssi"].item() > 0.01 and base["loss_grad"].item() > 0.01
    for key in ("loss_ssi", "loss_grad", "objective"):
        assert moved[key].item() == pytest.approx(base[key].item(), rel=1e-4)


@pytest.mark.parametrize("variant", ["lsq", "trimmed"])
def test_zero_for_a_perfect_affine_match(variant):
    pred, _, mask = random_inputs(5, dtype=torch.float32)
    target = 0.2 * pred + 4.0  # also true off the mask, where it must not matter
    target[~mask] = -100.0
    losses = midas_loss(pred, target, mask, variant=variant)
    assert losses["loss_ssi"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["loss_grad"].item() == pytest.approx(0.0, abs=1e-4)


def test_gradient_term_by_hand():
    residual = torch.tensor([[[0.0, 1.0], [3.0, 0.0]]])
    full = torch.ones_like(residual, dtype=torch.bool)
    # x: |1 - 0| + |0 - 3| = 4, y: |3 - 0| + |0 - 1| = 4, 4 valid pixels -> 2; scale 1 is one pixel -> 0
    assert gradient_matching_loss(residual, full, scales=1).item() == pytest.approx(2.0)
    assert gradient_matching_loss(residual, full, scales=2).item() == pytest.approx(2.0)
    partial = torch.tensor([[[True, True], [True, False]]])
    # only (0,0)-(0,1) in x and (0,0)-(1,0) in y remain: (1 + 3) / 3 valid pixels
    assert gradient_matching_loss(residual, partial, scales=1).item() == pytest.approx(4 / 3)


def test_lsq_loss_by_hand():
    # pred (0, 1, 2) vs target (0, 2, 1): scale 1/2, shift 1/2 -> aligned (0.5, 1, 1.5), residual
    # (0.5, -1, 0.5); Σ r² = 1.5 over 2 * 3 pixels -> 0.25
    pred = torch.tensor([[[0.0, 1.0, 2.0]]])
    target = torch.tensor([[[0.0, 2.0, 1.0]]])
    loss, residual = ssi_lsq_loss(pred, target, torch.ones_like(pred, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.25)
    assert residual.flatten().tolist() == pytest.approx([0.5, -1.0, 0.5])


def test_midas_loss_accepts_channel_maps_and_float_masks_and_gradients_flow():
    pred, target, mask = random_inputs(6, dtype=torch.float32)
    pred = pred[:, None].clone().requires_grad_(True)
    losses = midas_loss(pred, target[:, None], mask[:, None].float(), variant="lsq", alpha=0.5)
    expected_ssi, residual = ssi_lsq_loss(pred.detach()[:, 0], target, mask)
    assert losses["loss_ssi"].item() == pytest.approx(expected_ssi.item(), rel=1e-6)
    assert losses["objective"].item() == pytest.approx(losses["loss_ssi"].item() + 0.5 * losses["loss_grad"].item())
    losses["objective"].backward()
    grad = pred.grad[:, 0]
    assert torch.isfinite(grad).all() and grad[mask].abs().sum() > 0
    assert (grad[~mask] == 0).all()  # pixels off the mask do not influence the loss
    for variant in ("trimmed", "lsq"):
        assert midas_loss(pred.detach(), target[:, None], mask[:, None], variant=variant, alpha=0)["loss_grad"] == 0
    with pytest.raises(ValueError, match="variant='l1'"):
        midas_loss(pred, target[:, None], mask[:, None], variant="l1")


def test_empty_masks_give_zero_not_nan():
    pred, target, _ = random_inputs(8, dtype=torch.float32)
    empty = torch.zeros(SHAPE, dtype=torch.bool)
    for variant in ("trimmed", "lsq"):
        losses = midas_loss(pred, target, empty, variant=variant)
        assert losses["objective"].item() == 0.0
