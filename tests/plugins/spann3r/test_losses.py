"""Spann3R / DUSt3R losses, test criterion and evaluation alignment: parity with the original loss
classes (tests/fixtures/spann3r/losses.pt, made by tools/parity/make_spann3r_loss_fixtures.py), the
batch-size fix at B > 1, and hand-computed cases."""
import math
import os

import pytest
import torch

from recon_trainer_plugins.spann3r import alignment, losses
from recon_trainer_plugins.spann3r.predictions import SequencePredictions

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "spann3r", "losses.pt")
PRED_KEYS = ("ref_points", "tgt_points", "ref_conf", "tgt_conf")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def load_case(fixture, name, grad=False):
    """(predictions, gt_points, valid, camera_to_world) of a fixture case; prediction leaves need grad."""
    preds = {k: fixture[f"{name}/{k}"].clone().requires_grad_(grad) for k in PRED_KEYS}
    return (SequencePredictions(**preds), fixture[f"{name}/gt_points"], fixture[f"{name}/valid"],
            fixture[f"{name}/camera_to_world"])


def close(actual, expected, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float32), expected, rtol=rtol, atol=atol)


def gradients(total, predictions):
    return dict(zip(PRED_KEYS, torch.autograd.grad(total, [getattr(predictions, k) for k in PRED_KEYS])))


# --- parity with the original -------------------------------------------------------------------

@pytest.mark.parametrize("batch_quirk", [False, True])
def test_spann3r_loss_matches_original_at_batch_one(fixture, batch_quirk):
    predictions, gt, valid, poses = load_case(fixture, "b1", grad=True)
    total, details = losses.spann3r_loss(predictions, gt, valid, poses, alpha=float(fixture["spann3r/b1/alpha"]),
                                         batch_quirk=batch_quirk)
    close(total.detach(), fixture["spann3r/b1/total"])
    close(details["loss_conf"], fixture["spann3r/b1/loss_conf"])
    close(details["loss_scale"], fixture["spann3r/b1/loss_factor"])
    assert details["loss_scale"] > 0  # the case's prediction is larger than the GT
    regr = torch.stack([details[f"regr_{n}"] for n in ("ref0", "ref1", "tgt1", "ref2", "tgt2", "tgt3")])
    close(regr, fixture["spann3r/b1/regr_mean"])
    for key, grad in gradients(total, predictions).items():
        close(grad, fixture[f"spann3r/b1/grad_{key}"], atol=1e-7)


@pytest.mark.parametrize("case", ["b2", "b2_large"])
def test_batch_quirk_reproduces_original_at_batch_two(fixture, case):
    predictions, gt, valid, poses = load_case(fixture, case, grad=True)
    total, details = losses.spann3r_loss(predictions, gt, valid, poses, alpha=float(fixture[f"spann3r/{case}/alpha"]),
                                         batch_quirk=True)
    close(total.detach(), fixture[f"spann3r/{case}/total"])
    close(details["loss_scale"], fixture[f"spann3r/{case}/loss_factor"])
    for key, grad in gradients(total, predictions).items():
        close(grad, fixture[f"spann3r/{case}/grad_{key}"], atol=1e-7)


@pytest.mark.parametrize("case", ["b2", "b2_large"])
def test_default_fixes_batch_quirk(fixture, case):
    """Per-sample normalisation equals the original run on each sample alone (assembled in the fixture)."""
    predictions, gt, valid, poses = load_case(fixture, case)
    total, _ = losses.spann3r_loss(predictions, gt, valid, poses, alpha=float(fixture[f"spann3r/{case}/alpha"]))
    close(total, fixture[f"spann3r/{case}/per_sample_total"])
    assert abs(float(total) - float(fixture[f"spann3r/{case}/total"])) > 0.1  # the quirk matters here


def test_duplicated_sample_gives_the_single_sample_loss(fixture):
    predictions, gt, valid, poses = load_case(fixture, "b1")
    twice = SequencePredictions(*(torch.cat([getattr(predictions, k)] * 2) for k in
                                  ("ref_points", "ref_conf", "tgt_points", "tgt_conf")))
    args = (torch.cat([gt] * 2), torch.cat([valid] * 2), torch.cat([poses] * 2))
    single, _ = losses.spann3r_loss(predictions, gt, valid, poses, alpha=0.3)
    double, _ = losses.spann3r_loss(twice, *args, alpha=0.3)
    quirk, _ = losses.spann3r_loss(twice, *args, alpha=0.3, batch_quirk=True)
    close(double, single)
    assert abs(float(quirk) - float(single)) > 0.1


@pytest.mark.parametrize("case", ["pair", "b1_pair"])
def test_dust3r_pair_loss_matches_original(fixture, case):
    if case == "pair":
        predictions, gt, valid, poses = load_case(fixture, "pair", grad=True)
    else:  # the first pair of the b1 sequence, as the fixture script cuts it
        preds = {k: fixture[f"b1/{k}"][:, :1].clone().requires_grad_() for k in PRED_KEYS}
        predictions = SequencePredictions(**preds)
        gt, valid, poses = (fixture[f"b1/{k}"][:, :2] for k in ("gt_points", "valid", "camera_to_world"))
    loss, details = losses.dust3r_pair_loss(predictions, gt, valid, poses)
    close(loss.detach(), fixture[f"dust3r/{case}/loss"])
    close(details["loss_conf_ref0"] + details["loss_conf_tgt1"], loss.detach())
    for key, grad in gradients(loss, predictions).items():
        close(grad, fixture[f"dust3r/{case}/grad_{key}"], atol=1e-7)


@pytest.mark.parametrize("case", ["b1", "b2"])
def test_scale_shift_invariant_error_matches_original(fixture, case):
    value, details = losses.scale_shift_invariant_error(*load_case(fixture, case))
    close(value, fixture[f"test/{case}/loss"])
    close(sum(details.values()), value)


@pytest.mark.parametrize("case", ["b1", "b2"])
def test_alignment_matches_original_eval(fixture, case):
    predictions, gt, valid, poses = load_case(fixture, case)
    aligned = alignment.align_to_ground_truth(predictions, gt, valid, poses)
    close(aligned.points, fixture[f"align/{case}/points"], atol=1e-5)
    close(aligned.gt_points[valid], fixture[f"align/{case}/gt_points"][valid], atol=1e-5)
    close(aligned.gt_points[valid], gt[valid], atol=1e-5)  # the GT's round trip through camera 0


# --- hand-computed cases ------------------------------------------------------------------------

def hand_case():
    """T = 2, three pixels; camera 0 at (1, 0, 0) with identity rotation, camera 1's pose unused.

    GT in camera 0: frame 0 z = 1, 3, 2; frame 1 z = 2, 2, (invalid) -> factor (1+3+2+2+2)/5 = 2.
    Prediction = 2 x GT with pixel (frame 0, 1) rotated by 60 degrees about x (same norm) -> factor 4,
    normalised error 3 sin(30 deg) = 1.5 at that pixel, 0 elsewhere; the invalid pixel's value is wild.
    """
    gt_cam0 = torch.tensor([[[0, 0, 1], [0, 0, 3], [0, 0, 2]], [[0, 0, 2], [0, 0, 2], [9, 9, 9]]], dtype=torch.float32)
    valid = torch.tensor([[True, True, True], [True, True, False]])
    angle = math.pi / 3
    ref = 2 * gt_cam0[0].clone()
    ref[1] = torch.tensor([0.0, 6 * math.sin(angle), 6 * math.cos(angle)])
    tgt = 2 * gt_cam0[1].clone()
    tgt[2] = torch.tensor([100.0, 0.0, 0.0])
    conf_ref = torch.ones(3)
    conf_tgt = torch.tensor([1.0, math.e, 5.0])
    poses = torch.eye(4).repeat(1, 2, 1, 1)
    poses[0, 0, 0, 3] = 1.0
    poses[0, 1, :3, 3] = torch.tensor([5.0, -2.0, 3.0])
    world = gt_cam0 + torch.tensor([1.0, 0.0, 0.0])
    world[1, 2] = float("nan")
    predictions = SequencePredictions(ref.view(1, 1, 1, 3, 3), conf_ref.view(1, 1, 1, 3),
                                      tgt.view(1, 1, 1, 3, 3), conf_tgt.view(1, 1, 1, 3))
    return predictions, world.view(1, 2, 1, 3, 3), valid.view(1, 2, 1, 3), poses


def test_hand_computed_spann3r_loss():
    alpha = 0.4
    total, details = losses.spann3r_loss(*hand_case(), alpha=alpha)
    # ref0: mean(0, 1.5, 0) = 0.5; tgt1: mean(0 - α log 1, 0 - α log e) = -α / 2; loss_conf = 2 x mean.
    close(details["regr_ref0"], torch.tensor(0.5))
    close(details["regr_tgt1"], torch.tensor(0.0))
    close(details["loss_conf"], torch.tensor(0.5 - alpha / 2))
    close(details["pred_factor"], torch.tensor(4.0))
    close(details["gt_factor"], torch.tensor(2.0))
    close(details["loss_scale"], torch.tensor(2.0))
    close(total, torch.tensor(0.5 - alpha / 2 + 2.0))


def test_hand_computed_dust3r_loss():
    loss, details = losses.dust3r_pair_loss(*hand_case())
    close(loss, torch.tensor(0.5 - losses.DUST3R_ALPHA / 2))
    assert "loss_scale" not in details


def test_scale_loss_only_where_prediction_is_larger():
    pred, gt = torch.tensor([3.0, 1.0, 5.0]), torch.tensor([2.0, 2.0, 2.0])
    close(losses.scale_loss(pred, gt), torch.tensor((1.0 + 3.0) / 2))
    close(losses.scale_loss(pred, gt, batch_quirk=True), torch.tensor((1.0 + 3.0) / 2))  # equal GT factors
    close(losses.scale_loss(pred, torch.tensor([2.0, 2.0, 4.0]), batch_quirk=True),
          torch.tensor((1 + 1 + 1 + 3 + 3 + 1) / 6))
    close(losses.scale_loss(gt, pred[[0, 0, 2]]), torch.tensor(0.0))


def test_invariances_of_test_criterion_and_alignment(fixture):
    """A prediction equal to the camera-0 GT up to scale and z shift scores 0 and aligns onto the GT."""
    _, gt, valid, poses = load_case(fixture, "b1")
    gt_cam0 = alignment.points_in_first_camera(torch.nan_to_num(gt), poses)
    pred = 3.0 * gt_cam0 + torch.tensor([0.0, 0.0, 5.0])
    predictions = SequencePredictions(pred[:, :-1], torch.ones(valid[:, 1:].shape), pred[:, 1:],
                                      torch.ones(valid[:, 1:].shape))
    value, _ = losses.scale_shift_invariant_error(predictions, gt, valid, poses)
    assert float(value) < 1e-5
    aligned = alignment.align_to_ground_truth(predictions, gt, valid, poses)
    close(aligned.points[valid], gt[valid], atol=1e-5)
    close(aligned.params.gt_scale / aligned.params.pred_scale, torch.tensor([1 / 3]))


def test_frame_without_valid_pixels_contributes_zero(fixture):
    predictions, gt, valid, poses = load_case(fixture, "b1")
    valid = valid.clone()
    valid[:, 2] = False
    total, details = losses.spann3r_loss(predictions, gt, valid, poses, alpha=0.4)
    assert torch.isfinite(total)
    assert float(details["loss_conf_ref2"]) == 0.0 and float(details["loss_conf_tgt2"]) == 0.0


def test_bad_inputs_raise(fixture):
    predictions, gt, valid, poses = load_case(fixture, "b1")
    with pytest.raises(ValueError, match="gt_points"):
        losses.spann3r_loss(predictions, gt[:, :3], valid, poses, alpha=0.4)
    with pytest.raises(ValueError, match="alpha"):
        losses.spann3r_loss(predictions, gt, valid, poses, alpha=0.0)
    with pytest.raises(ValueError, match="T = 4"):
        losses.dust3r_pair_loss(predictions, gt, valid, poses)
