"""Symphonies end to end, as a user runs it: recon_runner trains symphonies_nyu +preset=symphonies_quick on
its built-in synthetic rooms (NYU's depthbin + pkl layout) and tests it on 8 unseen rooms (IoU, mIoU, per-class
IoU); the trained model must beat the same network untrained and two baselines (each voxel's and each vertical
column's most frequent training class); recon_visualizer then writes renders and meshes of test samples."""
import json
import os
import subprocess
import sys

import pytest
import torch
from recon_trainer_plugins.symphonies.baseline import column_majority_prior, voxel_majority_prior

from recon_trainer.data.ssc.nyu import NYUv2SSC
from recon_trainer.evaluation.ssc_metrics import SSCMetricAccumulator

QUICK = ["--config-name", "symphonies_nyu", "+preset=symphonies_quick",
         "training_loop_ReconTrainingLoop_args.metric_print_interval=0"]


def run_module(module, args, cwd):
    env = dict(os.environ, RECON_TRAINER_CACHE=str(cwd / "cache"))
    env.pop("NYU_SSC_DATA_ROOT", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)


def metrics(exp_dir):
    return json.loads((exp_dir / "results_test.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The folder holding the cache, an untrained evaluation (untrained/) and a trained run (run/)."""
    root = tmp_path_factory.mktemp("symphonies_e2e")
    trained = run_module("recon_trainer.cli.runner", [*QUICK, "exp_dir=run"], root)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert trained.stdout.startswith("recon_trainer: no data_root given"), trained.stdout[:300]
    untrained = run_module("recon_trainer.cli.runner",
                           [*QUICK, "exp_dir=untrained", "training_loop_ReconTrainingLoop_args.eval_only=true"], root)
    assert untrained.returncode == 0, untrained.stdout[-3000:] + untrained.stderr[-3000:]
    return root


def baselines(cache):
    """{name: SSC scores} of the voxel-prior and column-majority baselines on the quick preset's test rooms."""
    (folder,) = [p for p in cache.rglob("SymphoniesSyntheticRooms-*") if p.is_dir()]
    split = {name: NYUv2SSC(data_root=str(folder / "depthbin"), label_root=str(folder / "preprocess" / "base"),
                            split=name, voxel_size=0.16, with_depth=False) for name in ("train", "test")}
    train = [split["train"][i].extras["voxels"].labels for i in range(len(split["train"]))]
    scores = {}
    for name, prior in (("voxel prior", voxel_majority_prior(train, 12)),
                        ("column majority", column_majority_prior(train, 12))):
        accumulator = SSCMetricAccumulator(12)
        for i in range(len(split["test"])):
            accumulator.update(prior[None], split["test"][i].extras["voxels"].labels[None].long())
        scores[name] = accumulator.compute()
    return scores


def test_results_hold_completion_and_per_class_iou(runs):
    results = json.loads((runs / "run" / "results_test.json").read_text())
    assert set(results["metrics"]) == {"IoU", "Precision", "Recall", "mIoU"}
    assert list(results["per_class_iou"]) == ["empty", "ceiling", "floor", "wall", "window", "chair", "bed", "sofa",
                                              "table", "tvs", "furniture", "objects"]
    assert results["n_samples"] == 8


def test_training_beats_the_untrained_network_and_the_baselines(runs):
    before, after = metrics(runs / "untrained"), metrics(runs / "run")
    scores = baselines(runs / "cache")
    print({"untrained": before, "trained": after, **{name: {k: float(v[k]) for k in ("iou", "miou")}
                                                       for name, v in scores.items()}})
    assert after["mIoU"] > before["mIoU"] + 0.05 and after["IoU"] > before["IoU"]
    for prior in scores.values():
        assert after["mIoU"] > float(prior["miou"]) and after["IoU"] > float(prior["iou"])


def test_the_visualiser_writes_renders_and_meshes(runs):
    result = run_module("recon_trainer.cli.visualizer", ["exp_dir=run", "split=test", "max_items=2"], runs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = sorted(p.name for p in (runs / "run" / "voxels").iterdir())
    for suffix in (".png", "_pred.ply", "_target.ply"):
        assert len([n for n in names if n.endswith(suffix)]) == 2, names


def test_the_priors_take_each_positions_and_each_columns_majority():
    targets = [torch.tensor([[[1, 2]]]), torch.tensor([[[1, 255]]]), torch.tensor([[[3, 255]]])]
    assert voxel_majority_prior(targets, 4).tolist() == [[[1, 2]]]
    assert column_majority_prior(targets, 4).tolist() == [[[1, 1]]]
