"""SSC metrics (recon_trainer/evaluation/ssc_metrics.py): hand-computed cases and parity with the
original Symphonies `SSCMetrics`.

tests/fixtures/symphonies/ssc_metric_parity.npz was written by running the original
ssc_pl/evaluation/ssc_metric.py (torchmetrics 1.9, outside this repository) on fixed random
batches: for case c20 (20 classes, 3 batches of (2, 8, 8, 4)) and c5 (5 classes, 2 batches of
(2, 6, 5, 4), class 3 neither predicted nor present) it holds <case>_pred / <case>_target (uint8
(batches, B, X, Y, Z), the argmax of the logits it was given and the targets with 255) and its
outputs <case>_Precision, _Recall, _IoU, _mIoU and _iou_per_class (C,).
"""
import os

import numpy as np
import pytest
import torch

from recon_trainer.evaluation.ssc_metrics import SSCMetricAccumulator, ssc_counts, ssc_counts_reference

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "symphonies", "ssc_metric_parity.npz")


def _case():
    """A 2x2x2 volume, 3 classes: target / prediction voxel by voxel (x-major), one ignored voxel."""
    target = torch.tensor([0, 0, 1, 1, 2, 2, 255, 1]).reshape(1, 2, 2, 2)
    prediction = torch.tensor([0, 1, 1, 2, 2, 0, 2, 1]).reshape(1, 2, 2, 2)
    return prediction, target


def test_hand_computed_counts_and_metrics():
    prediction, target = _case()
    # valid voxels (target, prediction): (0,0) (0,1) (1,1) (1,2) (2,2) (2,0) (1,1); (255, 2) is skipped
    counts = ssc_counts(prediction, target, 3)
    assert (int(counts["tp_sc"]), int(counts["fp_sc"]), int(counts["fn_sc"])) == (4, 1, 1)
    assert counts["tp_ssc"].tolist() == [1, 2, 1]
    assert counts["fp_ssc"].tolist() == [1, 1, 1]
    assert counts["fn_ssc"].tolist() == [1, 1, 1]
    metric = SSCMetricAccumulator(3)
    metric.update(prediction, target)
    result = metric.compute()
    assert result["precision"] == pytest.approx(4 / 5)
    assert result["recall"] == pytest.approx(4 / 5)
    assert result["iou"] == pytest.approx(4 / 6)
    expected = [1 / 3, 2 / 4, 1 / 3]
    assert result["per_class_iou"] == pytest.approx(expected, rel=1e-5)
    assert result["miou"] == pytest.approx((expected[1] + expected[2]) / 2, rel=1e-5)  # class 0 left out


def test_ignored_voxels_change_nothing():
    prediction, target = _case()
    base = ssc_counts(prediction, target, 3)
    other = prediction.clone()
    other[target == 255] = 0  # whatever is predicted at an ignored voxel
    changed = ssc_counts(other, target, 3)
    assert all(torch.equal(base[k], changed[k]) for k in base)


def test_absent_class_scores_zero_and_counts_in_the_mean():
    target = torch.tensor([0, 1, 1, 0]).reshape(1, 1, 2, 2)
    metric = SSCMetricAccumulator(3)
    metric.update(target.clone(), target)  # perfect on classes 0 and 1; class 2 appears nowhere
    result = metric.compute()
    assert result["per_class_iou"][2] == 0.0
    assert result["per_class_iou"][1] == pytest.approx(1.0, rel=1e-5)
    assert result["miou"] == pytest.approx(0.5, rel=1e-5)
    assert result["iou"] == pytest.approx(1.0)


def test_no_occupied_true_positive_gives_zero_completion_scores():
    target = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    metric = SSCMetricAccumulator(4)
    metric.update(torch.ones_like(target), target)
    result = metric.compute()
    assert (result["iou"], result["precision"], result["recall"]) == (0.0, 0.0, 0.0)


def test_logits_are_argmaxed():
    prediction, target = _case()
    logits = torch.nn.functional.one_hot(prediction, 3).permute(0, 4, 1, 2, 3).float()
    a, b = SSCMetricAccumulator(3), SSCMetricAccumulator(3)
    a.update(prediction, target)
    b.update(logits, target)
    assert a.compute() == b.compute()


def test_bad_inputs_raise():
    prediction, target = _case()
    metric = SSCMetricAccumulator(3)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(prediction[:, :1], target)
    with pytest.raises(ValueError, match="outside"):
        metric.update(torch.full_like(prediction, 7), target)


def test_confusion_counts_match_plain_reference():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (3, 5, 4, 3), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.2] = 255
    prediction = torch.randint(0, 6, target.shape, generator=generator)
    fast, plain = ssc_counts(prediction, target, 6), ssc_counts_reference(prediction, target, 6)
    assert all(torch.equal(fast[k], plain[k]) for k in fast)


def test_merge_and_state_dict_equal_one_pass():
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(4):
        target = torch.randint(0, 4, (2, 4, 4, 2), generator=generator)
        target[torch.rand(target.shape, generator=generator) < 0.1] = 255
        batches.append((torch.randint(0, 4, target.shape, generator=generator), target))
    whole = SSCMetricAccumulator(4)
    for batch in batches:
        whole.update(*batch)
    first, second = SSCMetricAccumulator(4), SSCMetricAccumulator(4)
    for batch in batches[:2]:
        first.update(*batch)
    for batch in batches[2:]:
        second.update(*batch)
    assert first.merge(second).compute() == whole.compute()
    restored = SSCMetricAccumulator(4)
    restored.load_state_dict(whole.state_dict())
    assert restored.compute() == whole.compute()
    restored.all_reduce()  # no process group: nothing changes
    assert restored.compute() == whole.compute()
    with pytest.raises(ValueError, match="expected"):
        SSCMetricAccumulator(5).merge(whole)


@pytest.mark.parametrize("case", ["c20", "c5"])
def test_parity_with_original_ssc_metrics(case):
    data = np.load(FIXTURE)
    num_classes = len(data[f"{case}_iou_per_class"])
    metric = SSCMetricAccumulator(num_classes)
    for prediction, target in zip(data[f"{case}_pred"], data[f"{case}_target"]):
        metric.update(torch.from_numpy(prediction.astype(np.int64)), torch.from_numpy(target))
    result = metric.compute()
    assert result["precision"] == pytest.approx(float(data[f"{case}_Precision"]), rel=1e-6)
    assert result["recall"] == pytest.approx(float(data[f"{case}_Recall"]), rel=1e-6)
    assert result["iou"] == pytest.approx(float(data[f"{case}_IoU"]), rel=1e-6)
    assert result["per_class_iou"] == pytest.approx(data[f"{case}_iou_per_class"].tolist(), rel=1e-5, abs=1e-7)
    assert result["miou"] == pytest.approx(float(data[f"{case}_mIoU"]), rel=1e-5)
    if case == "c5":
        assert result["per_class_iou"][3] == 0.0
