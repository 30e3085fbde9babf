"""PointMapEvaluator: a stub model that returns the ground truth in camera 0's frame (times a constant, which
the alignment must undo) scores accuracy / completion 0 and normal consistency 1; the per-dataset and mean
rows, FPS, loss_med, max_items_per_dataset, ICP thresholds, PLY output and results_test.json."""
import json
import math
import os
from typing import Iterator, List, Optional, Sequence

import pytest
import torch

from recon_trainer.evaluation import point_cloud_metrics
from recon_trainer_plugins.spann3r import evaluator as evaluator_module
from recon_trainer_plugins.spann3r.alignment import points_in_first_camera
from recon_trainer_plugins.spann3r.batch import PointMapBatch, PointMapBatchBuilder
from recon_trainer_plugins.spann3r.evaluator import RECONSTRUCTION_KEYS, PointMapEvaluator
from recon_trainer_plugins.spann3r.model import Reconstruction
from recon_trainer_plugins.spann3r.predictions import SequencePredictions

from .test_batch import make_view, pose, sequence
from .test_model import dust3r, spann3r

HEIGHT, WIDTH, FRAMES = 8, 16, 3  # multiples of the tiny networks' patch size 8
SECONDS = 0.5
SCALE = 3.7
CPU = torch.device("cpu")
ALL_KEYS = set(RECONSTRUCTION_KEYS) | {"fps", "loss", "loss_med"}


def scene_depth(seed: int) -> torch.Tensor:
    """A tilted wall with a bump (metres), a few pixels unknown."""
    rows = torch.linspace(0.0, 1.0, HEIGHT)[:, None]
    cols = torch.linspace(-1.0, 1.0, WIDTH)[None, :]
    depth = 2.0 + 0.5 * rows + 0.2 * cols + 0.3 * torch.exp(-4 * (cols ** 2 + (rows - 0.5) ** 2)) + 0.1 * seed
    depth[0, :2] = 0.0
    return depth


def make_batch(items: Sequence[tuple], valid_pixels: Optional[int] = None) -> PointMapBatch:
    """(dataset, sequence) per item: FRAMES views of the scene from a camera moving sideways and turning
    (valid_pixels: a sequence with that many valid pixels only)."""
    records = []
    for index, (dataset, name) in enumerate(items):
        views = []
        for t in range(FRAMES):
            depth = scene_depth(index)
            if valid_pixels is not None:  # only the first valid_pixels of row 4 of frame 0
                kept = depth[4, :valid_pixels].clone()
                depth.zero_()
                depth[4, :valid_pixels] = kept if t == 0 else 0.0
            views.append(make_view(HEIGHT, WIDTH, seed=t, depth=depth,
                                   camera_to_world=pose(0.3 + 0.05 * t, (0.1 * t, 0.2, -0.1 * t))))
        records.append(sequence(*views, name=name, dataset=dataset))
    return PointMapBatchBuilder()(records)


def predictions_of(points: torch.Tensor) -> SequencePredictions:
    """Predictions whose per-frame points are `points` (B, T, H, W, 3), confidence 1."""
    conf = torch.ones(points.shape[:-1])
    return SequencePredictions(points[:, :-1], conf[:, :-1], points[:, 1:], conf[:, 1:])


class GroundTruthModel(torch.nn.Module):
    """reconstruct(batch): the ground truth in camera 0's frame times `scale` (plus `offset` on frame 1)."""

    def __init__(self, scale: float = SCALE, offset: float = 0.0) -> None:
        super().__init__()
        self.scale, self.offset = scale, offset
        self.calls: List[List[str]] = []

    def reconstruct(self, batch: PointMapBatch) -> Reconstruction:
        assert not self.training and not torch.is_grad_enabled()
        self.calls.append(list(batch.sequence))
        points = points_in_first_camera(batch.points, batch.camera_to_world) * self.scale
        points[:, 1, ..., 0] += self.offset * self.scale
        predictions = predictions_of(points)
        return Reconstruction(*predictions.per_frame(), predictions, SECONDS)


def ply_vertices(path: str) -> int:
    with open(path, "rb") as file:
        header = file.read(200).split(b"end_header")[0].decode("ascii")
    return int(next(line.split()[-1] for line in header.splitlines() if line.startswith("element vertex")))


def test_ground_truth_scores_perfectly_per_dataset_and_over_datasets(tmp_path):
    clouds = tmp_path / "clouds"
    model = GroundTruthModel()
    model.train()
    batches = [make_batch([("SevenScenes", "chess/seq-01")]), make_batch([("SevenScenes", "fire/seq-02")]),
               make_batch([("NRGBD", "kitchen"), ("DTU", "scan1")])]
    metrics = PointMapEvaluator(point_cloud_dir=str(clouds)).run(
        model=model, dataloader=batches, device=CPU, exp_dir=str(tmp_path), epoch=4, dump_to_json=True)
    assert model.training  # restored
    datasets = ["SevenScenes", "NRGBD", "DTU"]
    assert set(metrics) == ALL_KEYS | {f"{d}/{k}" for d in datasets for k in ALL_KEYS}
    for key, value in metrics.items():
        name = key.split("/")[-1]
        if name.startswith(("accuracy", "completion", "chamfer", "loss")):
            assert value == pytest.approx(0.0, abs=1e-4), key
        elif name.startswith("nc"):
            assert value == pytest.approx(1.0, abs=1e-4), key
    assert metrics["SevenScenes/fps"] == pytest.approx(FRAMES / SECONDS)
    assert metrics["DTU/fps"] == pytest.approx(2 * FRAMES / SECONDS)  # B sequences of T frames per forward
    assert metrics["fps"] == pytest.approx((1 + 2 + 2) * FRAMES / SECONDS / 3)

    with open(tmp_path / "results_test.json") as file:
        results = json.load(file)
    assert list(results["metrics"]) == datasets + ["mean"]
    for values in results["metrics"].values():
        assert set(values) == ALL_KEYS
    assert results["n_scenes"] == {"SevenScenes": 2, "NRGBD": 1, "DTU": 1}
    assert list(results["scenes"]["SevenScenes"]) == ["chess/seq-01", "fire/seq-02"]
    assert set(results["scenes"]["DTU"]["scan1"]) == ALL_KEYS - {"loss_med"}
    assert results["eval_epoch"] == 4

    valid = int(batches[0].valid.sum())
    assert valid == FRAMES * (HEIGHT * WIDTH - 2)
    names = ["SevenScenes-chess_seq-01", "SevenScenes-fire_seq-02", "NRGBD-kitchen", "DTU-scan1"]
    assert sorted(os.listdir(clouds)) == sorted(f"{n}-{kind}.ply" for n in names for kind in ("pred", "gt"))
    assert ply_vertices(clouds / "SevenScenes-chess_seq-01-pred.ply") == valid
    assert ply_vertices(clouds / "DTU-scan1-gt.ply") == valid


def test_a_wrong_frame_is_measured():
    batch = make_batch([("SevenScenes", "chess/seq-01")])
    evaluation = PointMapEvaluator().evaluate(model=GroundTruthModel(offset=0.3), dataloader=[batch], device=CPU)
    metrics = evaluation.metrics
    assert metrics["accuracy"] > 1e-2 and metrics["completion"] > 1e-2 and metrics["loss"] > 1e-2
    assert metrics["chamfer"] == pytest.approx((metrics["accuracy"] + metrics["completion"]) / 2)
    assert "SevenScenes" in evaluation.summary and "accuracy" in evaluation.summary


def test_icp_thresholds_per_dataset(monkeypatch):
    thresholds = []
    original = point_cloud_metrics.icp_point_to_point

    def recording(source, target, max_distance, **kwargs):
        thresholds.append(max_distance)
        return original(source, target, max_distance, **kwargs)

    monkeypatch.setattr(point_cloud_metrics, "icp_point_to_point", recording)
    batch = make_batch([("SevenScenes", "a"), ("DTU", "b"), ("NRGBD", "c")])
    PointMapEvaluator().evaluate(model=GroundTruthModel(), dataloader=[batch], device=CPU)
    assert thresholds == [0.1, 100.0, 0.1]
    thresholds.clear()
    evaluator = PointMapEvaluator(icp_threshold=0.2, dataset_icp_thresholds={"NRGBD": 0.05})
    evaluator.evaluate(model=GroundTruthModel(), dataloader=[batch], device=CPU)
    assert thresholds == [0.2, 0.2, 0.05]


def fake_losses(values: Sequence[float]):
    """scale_shift_invariant_error stand-in returning `values` in the order the items are scored."""
    remaining: Iterator[float] = iter(values)

    def criterion(predictions, points, valid, camera_to_world):
        assert predictions.ref_points.shape[0] == points.shape[0] == 1
        return torch.tensor(next(remaining)), {}

    return criterion


def test_loss_median_and_max_items_per_dataset(monkeypatch):
    monkeypatch.setattr(evaluator_module, "scale_shift_invariant_error", fake_losses([1.0, 10.0, 5.0, 2.0, 7.0]))
    model = GroundTruthModel()
    batches = [make_batch([("A", "a")]), make_batch([("A", "b"), ("B", "x")]), make_batch([("A", "c")]),
               make_batch([("A", "d")]), make_batch([("A", "e"), ("B", "y")])]
    evaluation = PointMapEvaluator(reconstruction_metrics=False, max_items_per_dataset=3).evaluate(
        model=model, dataloader=batches, device=CPU)
    # A: a 1, b 10, c 2 (d, e beyond the limit); B: x 5, y 7 (scored although A is full)
    assert model.calls == [["a"], ["b", "x"], ["c"], ["e", "y"]]  # the batch of d alone is not run
    assert evaluation.results["n_scenes"] == {"A": 3, "B": 2}
    assert list(evaluation.results["scenes"]["A"]) == ["a", "b", "c"]
    assert evaluation.metrics == pytest.approx({
        "A/loss": 13 / 3, "A/loss_med": 2.0, "A/fps": FRAMES / SECONDS * 4 / 3,
        "B/loss": 6.0, "B/loss_med": 6.0, "B/fps": 2 * FRAMES / SECONDS,
        "loss": (13 / 3 + 6) / 2, "loss_med": 4.0, "fps": FRAMES / SECONDS * 5 / 3,
    })


def test_a_sequence_without_enough_points_is_nan_in_metrics_and_null_in_json():
    batches = [make_batch([("Sparse", "s")], valid_pixels=2), make_batch([("Dense", "d")])]
    evaluation = PointMapEvaluator().evaluate(model=GroundTruthModel(), dataloader=batches, device=CPU)
    assert math.isnan(evaluation.metrics["Sparse/accuracy"]) and math.isnan(evaluation.metrics["Sparse/nc1"])
    assert evaluation.metrics["accuracy"] == evaluation.metrics["Dense/accuracy"]  # the mean skips NaN
    assert evaluation.results["metrics"]["Sparse"]["accuracy"] is None
    assert evaluation.results["scenes"]["Sparse"]["s"]["completion"] is None
    json.dumps(evaluation.results, allow_nan=False)


def test_wrong_batches_and_models_are_named():
    evaluator = PointMapEvaluator()
    with pytest.raises(TypeError, match="PointMapBatchBuilder"):
        evaluator.process(GroundTruthModel(), {"images": torch.zeros(1)})
    with pytest.raises(TypeError, match="Linear.*reconstruct"):
        evaluator.process(torch.nn.Linear(1, 1), make_batch([("A", "a")]))


@pytest.mark.parametrize("make, frames", [(spann3r, FRAMES), (dust3r, 2)])
def test_the_models_evaluate_end_to_end(make, frames):
    batch = make_batch([("SevenScenes", "a"), ("NRGBD", "b")])
    if frames != FRAMES:
        batch = batch.frames(range(frames))
    evaluation = PointMapEvaluator(normal_neighbours=8).evaluate(model=make(), dataloader=[batch], device=CPU)
    assert set(evaluation.metrics) == ALL_KEYS | {f"{d}/{k}" for d in ("SevenScenes", "NRGBD") for k in ALL_KEYS}
    assert all(math.isfinite(value) for value in evaluation.metrics.values())
    assert evaluation.metrics["accuracy"] > 0 and 0 <= evaluation.metrics["nc1"] <= 1
