"""MoGeEvaluator: ground truth from the MoGeBatch's fields, per-benchmark and mean metrics, results_test.json.

A stub model predicts the ground truth itself (up to MoGe's invariances), so every metric the images
allow is perfect; the averaging is checked with compute_metrics replaced by a table of values.
"""
import json
import math
import os
from typing import Dict, Tuple

import pytest
import torch

from recon_trainer.config import get_default_args
from recon_trainer_plugins.moge import evaluator as evaluator_module
from recon_trainer_plugins.moge.batch import INVALID, MoGeBatch
from recon_trainer_plugins.moge.evaluator import MoGeEvaluator, evaluation_segments
from recon_trainer_plugins.moge.geometry import depth_to_points, intrinsics_from_focal_center

HEIGHT, WIDTH = 24, 32


def scene(box_depth: float):
    """Clean depth (H, W) of a wall with a box, the GT depth (sky on top, one unknown pixel), segmentation."""
    depth = torch.linspace(3.0, 5.0, HEIGHT)[:, None].repeat(1, WIDTH)
    depth[14:22, 4:12] = box_depth
    segmentation = torch.ones(HEIGHT, WIDTH, dtype=torch.long)
    segmentation[14:22, 4:12] = 2
    segmentation[:12] = 3  # sky
    gt = depth.clone()
    gt[:12] = math.inf
    gt[16, 20] = math.nan
    return depth, gt, segmentation


def make_batch(datasets, box_depths, *, metric, sharp, segments, empty=(), invalid=()):
    """A MoGeBatch of the scenes and their clean depth (B, H, W). Items `empty` have no valid pixel;
    items `invalid` are labelled "invalid" with depth 1 everywhere (as the batch builder makes them)."""
    clean, gt, segmentation = zip(*(scene(d) for d in box_depths), strict=True)
    gt = torch.stack(gt)
    for i in empty:
        gt[i] = math.nan
    for i in invalid:
        gt[i] = 1.0
    n = len(datasets)
    labels = {"wall": 1, "box": 2, "sky": 3}
    return MoGeBatch(
        image=torch.rand(n, 3, HEIGHT, WIDTH),
        depth=gt,
        depth_mask_fin=torch.isfinite(gt),
        depth_mask_inf=torch.isinf(gt),
        intrinsics=intrinsics_from_focal_center(0.8, 1.0, 0.5, 0.5).expand(n, 3, 3),
        is_metric=torch.tensor([metric] * n),
        label_type=[INVALID if i in invalid else "synthetic" for i in range(n)],
        dataset=list(datasets),
        path=[f"{name}/{depth}/{i}" for i, (name, depth) in enumerate(zip(datasets, box_depths, strict=True))],
        sharp_boundary=[sharp] * n,
        segmentation=torch.stack(segmentation) if segments else None,
        segmentation_labels=[labels] * n if segments else None,
    ), torch.stack(clean)


class PerfectModel(torch.nn.Module):
    """MoGe-2-like predictions equal to the clean scene the batch was made from."""

    def __init__(self, *batches: Tuple[MoGeBatch, torch.Tensor]):
        super().__init__()
        self.clean: Dict[Tuple[str, ...], torch.Tensor] = {tuple(b.path): clean for b, clean in batches}

    def predict_geometry(self, batch):
        assert not self.training
        depth = self.clean[tuple(batch.path)]
        return {"points_metric": depth_to_points(depth, batch.intrinsics), "depth_metric": depth,
                "intrinsics": batch.intrinsics.clone(), "mask": torch.ones_like(depth, dtype=torch.bool)}


def evaluator(**fields):
    return MoGeEvaluator(**{**get_default_args(MoGeEvaluator), **fields})


def test_perfect_predictions_per_benchmark_and_mean(tmp_path):
    sintel = make_batch(["Sintel", "Sintel"], [1.5, 2.0], metric=False, sharp=True, segments=True)
    kitti = make_batch(["KITTI"] * 3, [2.5, 1.0, 2.0], metric=True, sharp=False, segments=False, empty=[1], invalid=[2])
    model = PerfectModel(sintel, kitti)
    model.train()
    metrics = evaluator(min_segment_area=20).run(
        model=model, dataloader=[sintel[0], kitti[0]], device=torch.device("cpu"), exp_dir=str(tmp_path), epoch=2,
        dump_to_json=True)
    assert model.training  # restored
    relative = ["depth_scale_invariant", "depth_affine_invariant", "disparity_affine_invariant",
                "points_scale_invariant", "points_affine_invariant"]
    sintel_kinds = relative + ["local_points"]
    kitti_kinds = relative + ["depth_metric", "points_metric"]
    expected_keys = {f"{kind}/{m}" for kind in set(sintel_kinds + kitti_kinds) for m in ("rel", "delta1")}
    expected_keys |= {"fov_x/mae", "fov_x/deviation"} | {f"boundary/radius{r}_f1" for r in (1, 2, 3)}
    sintel_keys = {key for key in expected_keys if key.split("/")[0] in sintel_kinds + ["fov_x", "boundary"]}
    kitti_keys = {key for key in expected_keys if key.split("/")[0] in kitti_kinds + ["fov_x"]}
    assert set(metrics) == expected_keys | {f"Sintel/{k}" for k in sintel_keys} | {f"KITTI/{k}" for k in kitti_keys}
    for key, value in metrics.items():
        perfect = 0.0 if key.endswith(("rel", "mae", "deviation")) else 1.0
        assert value == pytest.approx(perfect, abs=1e-5), key

    with open(os.path.join(tmp_path, "results_test.json")) as f:
        results = json.load(f)
    assert list(results["metrics"]) == ["Sintel", "KITTI", "mean"]
    assert results["metrics"]["Sintel"]["boundary"]["radius2_f1"] == pytest.approx(1.0)
    assert set(results["metrics"]["KITTI"]) == set(kitti_kinds + ["fov_x"])
    assert results["n_images"] == {"Sintel": 2, "KITTI": 1} and results["n_skipped"] == {"Sintel": 0, "KITTI": 2}
    assert results["eval_epoch"] == 2


def fake_metrics(table):
    """compute_metrics stand-in: the metrics of an image are table[its box depth]."""
    def compute(pred, gt):
        return table[float(gt["depth"][20, 8])]
    return compute


def test_means_per_benchmark_then_over_benchmarks(monkeypatch, capsys):
    table = {
        1.0: {"points_affine_invariant": {"rel": 0.1, "delta1": 0.9}, "fov_x": {"mae": 2.0, "deviation": -2.0}},
        2.0: {"points_affine_invariant": {"rel": 0.3, "delta1": math.nan}, "local_points": {"rel": 0.2}},
        3.0: {"points_affine_invariant": {"rel": 0.5, "delta1": 0.5}},
    }
    monkeypatch.setattr(evaluator_module, "compute_metrics", fake_metrics(table))
    a = make_batch(["A", "A", "B"], [1.0, 2.0, 3.0], metric=False, sharp=False, segments=False)
    b = make_batch(["A", "B"], [3.0, 1.0], metric=False, sharp=False, segments=False)
    evaluation = evaluator(max_images_per_dataset=2).evaluate(
        model=PerfectModel(a, b), dataloader=[a[0], b[0]], device=torch.device("cpu"), epoch=None)
    # A: images 1.0 and 2.0 (its third image is beyond max_images_per_dataset); B: 3.0 and 1.0
    assert evaluation.metrics == pytest.approx({
        "A/points_affine_invariant/rel": 0.2, "A/points_affine_invariant/delta1": 0.9,
        "A/fov_x/mae": 2.0, "A/fov_x/deviation": -2.0, "A/local_points/rel": 0.2,
        "B/points_affine_invariant/rel": 0.3, "B/points_affine_invariant/delta1": 0.7,
        "B/fov_x/mae": 2.0, "B/fov_x/deviation": -2.0,
        "points_affine_invariant/rel": 0.25, "points_affine_invariant/delta1": 0.8,
        "fov_x/mae": 2.0, "fov_x/deviation": -2.0, "local_points/rel": 0.2,
    })
    assert evaluation.results["n_images"] == {"A": 2, "B": 2}
    assert evaluation.results["metrics"]["mean"]["local_points"] == {"rel": 0.2}
    assert "points_affine_invariant/rel" in evaluation.summary and "mean" in evaluation.summary


def test_nan_becomes_null_in_results(monkeypatch):
    monkeypatch.setattr(evaluator_module, "compute_metrics", fake_metrics({1.0: {"fov_x": {"mae": math.nan}}}))
    batch = make_batch(["A"], [1.0], metric=False, sharp=False, segments=False)
    evaluation = evaluator().evaluate(model=PerfectModel(batch), dataloader=[batch[0]],
                                      device=torch.device("cpu"))
    assert math.isnan(evaluation.metrics["fov_x/mae"])
    assert evaluation.results["metrics"] == {"A": {"fov_x": {"mae": None}}, "mean": {"fov_x": {"mae": None}}}
    json.dumps(evaluation.results, allow_nan=False)


def test_evaluation_segments_as_moge_eval_loader():
    segmentation = torch.tensor([[1, 1, 1, 2], [1, 1, 2, 2], [3, 3, 4, 5], [4, 4, 4, 4]])
    labels = {"sky": 1, "cup": 2, "table": 3, "floor": 4, "pen": 5, "ghost": 6}
    # sky dropped; by area floor 5, cup 3, table 2, pen 1, ghost 0
    assert list(evaluation_segments(segmentation, labels, min_area=2, max_segments=10)) == ["floor", "cup", "table"]
    assert evaluation_segments(segmentation, labels, min_area=1, max_segments=2) == {"floor": 4, "cup": 2}


def test_user_errors():
    batch, _ = make_batch(["A"], [1.0], metric=False, sharp=False, segments=False)
    with pytest.raises(TypeError, match="batch_builder_class_type must be MoGeBatchBuilder"):
        evaluator().process(PerfectModel().eval(), {"image": batch.image})
    with pytest.raises(TypeError, match="predict_geometry"):
        evaluator().process(torch.nn.Linear(1, 1), batch)

    class Small(PerfectModel):
        def predict_geometry(self, batch):
            return {"depth_scale_invariant": torch.ones(1, 12, 16)}

    with pytest.raises(ValueError, match=r"'depth_scale_invariant' has shape \(1, 12, 16\); expected \(1, 24, 32\)"):
        evaluator().process(Small().eval(), batch)
    batch.dataset = ["mean"]
    with pytest.raises(ValueError, match="named 'mean'"):
        evaluator().process(PerfectModel().eval(), batch)
