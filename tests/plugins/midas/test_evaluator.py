"""DepthEvaluator: per-item metrics from a DepthBatch's typed fields, per-dataset means, results_test.json.

The fake model returns the first image channel as its disparity, so each frame's prediction is set
by its image. Expected values are the hand example of test_depth_metrics.py: pred [[1, 0], [0, -1]]
against gt depth [[1, 2], [4, 0]] (last pixel invalid) gives δ>1.25 = 33.33 % with cap 2 and
AbsRel = 2/9 without a cap; an affine function of 1 / depth scores 0.
"""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recon_trainer.config import get_default_args
from recon_trainer.data.depth.base import DepthDataset, DepthSample
from recon_trainer.data.frame_data import FrameData
from recon_trainer.evaluation import depth_metrics
from recon_trainer_plugins.midas.batch import DepthBatch
from recon_trainer_plugins.midas.evaluator import DepthEvaluator

PRED = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
GT_DEPTH = torch.tensor([[1.0, 2.0], [4.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])


class FirstChannelModel(torch.nn.Module):
    """disparity = image channel 0, optionally every `stride`-th pixel; checks the ground truth is withheld."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, batch, evaluation_mode):
        assert batch.depth_map is None and batch.disparity_map is None and batch.depth_mask is None
        assert not self.training
        return {"disparity": batch.image_rgb[:, :1, :: self.stride, :: self.stride]}


def frame(pred, dataset, metric, cap=0.0, path="", **fields):
    meta = {"dataset": dataset, "eval_metric": metric, "depth_cap": cap}
    if "ordinal_pairs" in fields:
        meta["ordinal_pairs"] = fields.pop("ordinal_pairs")
    return FrameData(image_rgb=pred[None].expand(3, -1, -1), image_path=path, meta=meta, **fields)


def loader():
    perfect_gt = torch.tensor([[1.0, 2.0], [1.0, 1.5]])  # within the cap of 2
    kitti = [
        frame(PRED, "KITTI", "delta1.25", 2.0, "k0", depth_map=GT_DEPTH[None], depth_mask=MASK[None]),
        frame(3 / perfect_gt + 1, "KITTI", "delta1.25", 2.0, "k1", depth_map=perfect_gt[None],
              depth_mask=torch.ones(1, 2, 2)),
    ]
    sintel = frame(PRED, "Sintel", "absrel", 0.0, "s0", depth_map=GT_DEPTH[None], depth_mask=MASK[None])
    redweb = frame(PRED, "ReDWeb", "absrel", 0.0, "r0", disparity_map=torch.where(MASK > 0, 1 / GT_DEPTH, 0)[None],
                   depth_mask=MASK[None])
    pairs = torch.tensor([[0, 0, 0, 1, -1], [0, 1, 1, 0, 1], [1, 0, 1, 1, -1]])
    diw = frame(torch.tensor([[3.0, 1.0], [2.0, 2.0]]), "DIW", "whdr", ordinal_pairs=pairs, path="d0")
    return [DepthBatch.from_frames(kitti), DepthBatch.from_frames([sintel]), DepthBatch.from_frames([redweb]), DepthBatch.from_frames([diw])]


def run(tmp_path, batches, model=None, **fields):
    evaluator = DepthEvaluator(**{**get_default_args(DepthEvaluator), **fields})
    model = model or FirstChannelModel()
    model.train()
    metrics = evaluator.run(model=model, dataloader=batches, device=torch.device("cpu"), exp_dir=str(tmp_path),
                            epoch=4, dump_to_json=True)
    assert model.training  # restored
    with open(os.path.join(tmp_path, "results_test.json")) as f:
        return metrics, json.load(f)


def test_per_dataset_values_and_results_json(tmp_path, capsys):
    metrics, results = run(tmp_path, loader())
    assert metrics == pytest.approx(
        {"KITTI/delta1.25": 50 / 3, "Sintel/absrel": 2 / 9, "ReDWeb/absrel": 2 / 9, "DIW/whdr": 100 / 3}
    )
    assert [(e["dataset"], e["metric"], e["unit"], e["n_images"]) for e in results] == [
        ("KITTI", "delta1.25", "%", 2), ("Sintel", "absrel", "ratio", 1), ("ReDWeb", "absrel", "ratio", 1),
        ("DIW", "whdr", "%", 1),
    ]
    kitti = results[0]
    assert kitti["depth_cap"] == 2.0 and kitti["eval_epoch"] == 4
    assert kitti["value"] == pytest.approx(50 / 3)
    assert [row["image_path"] for row in kitti["per_image"]] == ["k0", "k1"]
    assert [row["value"] for row in kitti["per_image"]] == pytest.approx([100 / 3, 0.0], abs=1e-9)
    assert results[3]["per_image"] == [{"image_path": "d0", "value": pytest.approx(100 / 3)}]
    table = capsys.readouterr().out
    assert "Depth evaluation, epoch 4" in table and "KITTI" in table and "16.6667" in table


def test_max_images_per_dataset(tmp_path):
    metrics, results = run(tmp_path, loader(), max_images_per_dataset=1)
    assert metrics["KITTI/delta1.25"] == pytest.approx(100 / 3)
    assert results[0]["n_images"] == 1


def test_prediction_is_resized_bilinearly_to_the_ground_truth(tmp_path):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(8, 12, generator=generator)
    depth = 0.5 + torch.rand(8, 12, generator=generator) * 3
    mask = (torch.rand(8, 12, generator=generator) > 0.2).float()
    batch = DepthBatch.from_frames([frame(image, "NYU", "delta1.25", 3.0, "n0", depth_map=depth[None], depth_mask=mask[None])])
    metrics, _ = run(tmp_path, [batch], model=FirstChannelModel(stride=2))
    small = image[None, None, ::2, ::2]
    resized = F.interpolate(small, size=(8, 12), mode="bilinear", align_corners=False)[0, 0]
    aligned = depth_metrics.aligned_depth_from_disparity(resized, depth, mask > 0, 3.0)
    expected = depth_metrics.delta_bad_percent(aligned, depth, mask > 0)
    assert 0 < expected < 100
    assert metrics["NYU/delta1.25"] == pytest.approx(expected)


def test_a_depth_dataset_end_to_end(tmp_path):
    """Items of a DepthDataset subclass (uint8 images, depth with a cap) through MiDaS's batch builder."""

    class TinyDepth(DepthDataset):
        eval_metric: str = "delta1.25"

        def list_samples(self):
            return [0, 1]

        def load_sample(self, record):
            x = np.arange(6, dtype=np.float32)[None].repeat(4, 0)
            depth = 1.0 / (0.1 + 0.1 * x)  # disparity 0.1 .. 0.6, affine in the red channel below
            if record == 1:
                depth[:, :3] *= 2.0  # three columns twice as far: beyond 1.25 after alignment
            depth[0, 0] = 50.0  # beyond the cap: invalid
            image = np.zeros((4, 6, 3), dtype=np.uint8)
            image[..., 0] = (40 * x).astype(np.uint8)
            return DepthSample(image=image, path=f"img{record}.png", depth=depth)

    dataset = TinyDepth(name="Tiny", depth_cap=20.0)
    batches = [DepthBatch.from_frames([dataset[0]]), DepthBatch.from_frames([dataset[1]])]
    metrics, results = run(tmp_path, batches)
    assert results[0]["per_image"][0] == {"image_path": "img0.png", "value": pytest.approx(0.0, abs=1e-6)}
    assert 0 < results[0]["per_image"][1]["value"] <= 100
    assert results[0]["depth_cap"] == 20.0
    assert metrics["Tiny/delta1.25"] == pytest.approx(results[0]["per_image"][1]["value"] / 2)


def test_frames_without_valid_pixels_are_null_and_left_out(tmp_path):
    empty = frame(PRED, "KITTI", "delta1.25", 2.0, "e0", depth_map=GT_DEPTH[None], depth_mask=torch.zeros(1, 2, 2))
    metrics, results = run(tmp_path, [loader()[0], DepthBatch.from_frames([empty])])
    assert metrics["KITTI/delta1.25"] == pytest.approx(50 / 3)
    assert results[0]["n_images"] == 3 and results[0]["per_image"][2]["value"] is None


def test_malformed_batches_name_the_problem(tmp_path):
    not_midas = FrameData(image_rgb=torch.zeros(1, 3, 2, 2), depth_map=GT_DEPTH[None, None])
    with pytest.raises(TypeError, match="batch_builder_class_type must be MidasDepthBatch"):
        run(tmp_path, [not_midas])
    training_item = DepthBatch.from_frames([FrameData(image_rgb=torch.zeros(3, 2, 2), meta={"dataset": "ReDWeb"})])
    with pytest.raises(ValueError, match="a ReDWeb item has eval_metric ''"):
        run(tmp_path, [training_item])
    no_pairs = frame(PRED, "DIW", "whdr")
    with pytest.raises(ValueError, match="no ordinal_pairs"):
        run(tmp_path, [DepthBatch.from_frames([no_pairs])])
