"""Symphonies' SSC losses: values worked out by hand (NumPy) on tiny volumes, voxels labelled 255
ignored, the original's edge cases, and parity (values and input gradients) with the original
ssc_loss.py, whose outputs tests/fixtures/symphonies/losses_parity.pt holds (written by a driver
that imports the original file; see the fixture's "source")."""
import os

import numpy as np
import pytest
import torch
from recon_trainer_plugins.symphonies.losses import (
    CRITERIA,
    ce_ssc,
    frustum_proportion,
    geo_scal,
    sem_scal,
    ssc_losses,
)

from recon_trainer.config import ConfigError

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "symphonies", "losses_parity.pt")

# a 1 x 2 x 2 x 1 volume of 3 classes: voxels (x, y) = (0, 0), (0, 1), (1, 0), (1, 1)
LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [-0.5, 0.2, 1.5], [1.0, 1.0, 1.0]])  # (voxel, class)
TARGET = np.array([0, 1, 2, 255])
WEIGHTS = np.array([0.5, 1.0, 2.0])


def volume(logits: np.ndarray = LOGITS, target: np.ndarray = TARGET):
    """(1, C, 2, 2, 1) float32 logits and (1, 2, 2, 1) int64 target of per-voxel rows."""
    x = torch.tensor(logits, dtype=torch.float32).T.reshape(1, -1, 2, 2, 1)
    return x, torch.tensor(target).reshape(1, 2, 2, 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def bce_to_one(value: float) -> float:
    return -max(np.log(value), -100.0)


def test_ce_ssc_by_hand():
    x, t = volume()
    p = softmax(LOGITS)
    valid = [0, 1, 2]
    expected = sum(WEIGHTS[TARGET[v]] * -np.log(p[v, TARGET[v]]) for v in valid) / WEIGHTS[TARGET[valid]].sum()
    assert ce_ssc(x, t, torch.tensor(WEIGHTS)).item() == pytest.approx(expected, rel=1e-6)


def test_sem_scal_by_hand_skips_absent_classes():
    target = np.array([0, 1, 1, 255])  # class 2 absent
    x, t = volume(target=target)
    p = softmax(LOGITS)[:3]
    labels = target[:3]
    terms = []
    for c in (0, 1):
        y = (labels == c).astype(float)
        tp = (p[:, c] * y).sum()
        terms.append(bce_to_one(tp / p[:, c].sum()) + bce_to_one(tp / y.sum())
                     + bce_to_one(((1 - p[:, c]) * (1 - y)).sum() / (1 - y).sum()))
    assert sem_scal(x, t).item() == pytest.approx(sum(terms) / 2, rel=1e-6)


def test_sem_scal_without_negatives_leaves_out_specificity():
    target = np.array([1, 1, 255, 1])  # every valid voxel is class 1
    x, t = volume(target=target)
    p = softmax(LOGITS)[[0, 1, 3], 1]
    expected = bce_to_one(p.sum() / p.sum()) + bce_to_one(p.sum() / 3)
    assert sem_scal(x, t).item() == pytest.approx(expected, rel=1e-6)


def test_geo_scal_by_hand():
    x, t = volume()
    p = softmax(LOGITS)[:3]
    occupied = (TARGET[:3] != 0).astype(float)
    q = 1 - p[:, 0]
    tp = (q * occupied).sum()
    expected = (bce_to_one(tp / q.sum()) + bce_to_one(tp / occupied.sum())
                + bce_to_one(((1 - occupied) * p[:, 0]).sum() / (1 - occupied).sum()))
    assert geo_scal(x, t).item() == pytest.approx(expected, rel=1e-6)


def test_geo_scal_is_defined_where_the_original_divides_by_zero():
    p = softmax(LOGITS)
    x, t = volume(target=np.array([0, 0, 255, 0]))  # nothing occupied: specificity alone
    assert geo_scal(x, t).item() == pytest.approx(bce_to_one(p[[0, 1, 3], 0].mean()), rel=1e-6)
    x, t = volume(target=np.array([1, 2, 255, 2]))  # nothing empty: precision (= 1) and recall
    assert geo_scal(x, t).item() == pytest.approx(bce_to_one(1 - p[[0, 1, 3], 0].mean()), rel=1e-6)


def test_frustum_proportion_by_hand():
    x, _ = volume()
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool).reshape(1, 3, 2, 2, 1)
    counts = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # the third frustum: no counts
    p = softmax(LOGITS)
    expected = 0.0
    for f, voxels in enumerate(([0, 1], [2])):
        q = p[voxels].sum(0) / p[voxels].sum()
        pi = counts[f] / counts[f].sum()
        nz = pi > 0
        expected += (pi[nz] * (np.log(pi[nz]) - np.log(q[nz]))).sum()
    value = frustum_proportion(x, masks, torch.tensor(counts, dtype=torch.float32)[None])
    assert value.item() == pytest.approx(expected / 2, rel=1e-6)


def test_frustum_proportion_pools_the_batch():
    """B = 2 is the loss of one volume holding both samples (counts summed), not the mean of the two."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 2, 2, generator=g)
    masks = torch.rand(2, 2, 3, 2, 2, generator=g) < 0.5
    counts = torch.randint(0, 4, (2, 2, 4), generator=g).float()
    pooled = frustum_proportion(x, masks, counts)
    joined = frustum_proportion(torch.cat(list(x), dim=1)[None], torch.cat(list(masks), dim=1)[None],
                                counts.sum(0, keepdim=True))
    assert pooled.item() == pytest.approx(joined.item(), rel=1e-6)
    separate = [frustum_proportion(x[i:i + 1], masks[i:i + 1], counts[i:i + 1]).item() for i in range(2)]
    assert abs(pooled.item() - np.mean(separate)) > 1e-3


@pytest.mark.parametrize("name", ["ce_ssc", "sem_scal", "geo_scal"])
def test_voxels_labelled_255_take_no_part(name):
    fn = {"ce_ssc": lambda x, t: ce_ssc(x, t, torch.tensor(WEIGHTS)), "sem_scal": sem_scal, "geo_scal": geo_scal}[name]
    x, t = volume()
    changed = x.clone()
    changed[..., 1, 1, 0] = torch.tensor([9.0, -4.0, 0.5])  # the voxel labelled 255
    assert fn(changed, t).item() == pytest.approx(fn(x, t).item(), rel=1e-7)
    x.requires_grad_(True)
    fn(x, t).backward()
    assert torch.all(x.grad[..., 1, 1, 0] == 0) and x.grad.abs().sum() > 0


def test_frustum_voxels_outside_every_mask_take_no_part():
    x, _ = volume()
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool).reshape(1, 2, 2, 2, 1)
    counts = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    changed = x.clone()
    changed[..., 1, 1, 0] = 5.0
    assert frustum_proportion(changed, masks, counts).item() == pytest.approx(
        frustum_proportion(x, masks, counts).item(), rel=1e-7)


def test_nothing_valid_gives_zero_with_a_graph():
    x, _ = volume()
    x.requires_grad_(True)
    t = torch.full((1, 2, 2, 1), 255)
    values = [ce_ssc(x, t, torch.tensor(WEIGHTS)), sem_scal(x, t), geo_scal(x, t),
              frustum_proportion(x, torch.zeros(1, 4, 2, 2, 1, dtype=torch.bool), torch.zeros(1, 4, 3))]
    assert all(v.item() == 0.0 and v.dtype == torch.float32 for v in values)
    sum(values).backward()
    assert torch.all(x.grad == 0)


def test_low_precision_logits_give_float32_losses():
    x, t = volume()
    out = ssc_losses([x.bfloat16()], t, torch.tensor(WEIGHTS), torch.ones(1, 1, 2, 2, 1, dtype=torch.bool),
                     torch.tensor([[[1.0, 1.0, 1.0]]]))
    assert set(out) == {f"loss_{name}" for name in CRITERIA}
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in out.values())


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, map_location="cpu", weights_only=True)


def ours(name, inputs, logits):
    if name == "ce_ssc":
        return ce_ssc(logits, inputs["target"], inputs["class_weights"])
    if name == "frustum":
        return frustum_proportion(logits, inputs["frustum_masks"], inputs["class_counts"])
    return {"sem_scal": sem_scal, "geo_scal": geo_scal}[name](logits, inputs["target"])


@pytest.mark.parametrize("case", ["b1", "b2"])
@pytest.mark.parametrize("name", CRITERIA)
def test_parity_with_the_original_values_and_gradients(fixture, case, name):
    inputs, expected = fixture[case]["inputs"], fixture[case]["outputs"]
    assert (inputs["target"] == 255).any()
    logits = inputs["logits"].clone().requires_grad_(True)
    value = ours(name, inputs, logits)
    value.backward()
    torch.testing.assert_close(value.detach(), expected[f"value_{name}"], rtol=1e-6, atol=0)
    torch.testing.assert_close(logits.grad, expected[f"grad_{name}"], rtol=1e-5, atol=1e-8)


def test_parity_of_the_layer_weighting(fixture):
    inputs = fixture["b2"]["inputs"]
    outputs = list(fixture["aux"]["outputs"])
    out = ssc_losses(outputs, inputs["target"], inputs["class_weights"], inputs["frustum_masks"],
                     inputs["class_counts"], CRITERIA, aux_weight=0.5)
    assert set(out) == set(fixture["aux"]["losses"])
    for key, value in fixture["aux"]["losses"].items():
        torch.testing.assert_close(out[key], value, rtol=1e-6, atol=0)


def test_ssc_losses_weights_earlier_layers_by_aux_weight():
    x, t = volume()
    y = x.flip(1)
    w = torch.tensor(WEIGHTS)
    out = ssc_losses([y, x], t, w, criteria=("ce_ssc", "sem_scal"), aux_weight=0.25)
    assert set(out) == {"loss_ce_ssc", "loss_sem_scal"}
    assert out["loss_ce_ssc"].item() == pytest.approx(ce_ssc(x, t, w).item() + 0.25 * ce_ssc(y, t, w).item(), rel=1e-6)
    assert out["loss_sem_scal"].item() == pytest.approx(sem_scal(x, t).item() + 0.25 * sem_scal(y, t).item(), rel=1e-6)


def test_ssc_losses_refuses_unknown_criteria_and_missing_frustums():
    x, t = volume()
    with pytest.raises(ConfigError, match="'sem_scl'.*did you mean 'sem_scal'"):
        ssc_losses([x], t, torch.tensor(WEIGHTS), criteria=("sem_scl",))
    with pytest.raises(ValueError, match="frustum_masks"):
        ssc_losses([x], t, torch.tensor(WEIGHTS), criteria=("frustum",))
