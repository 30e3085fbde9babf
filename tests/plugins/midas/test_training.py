"""MiDaS end to end, as a user runs it: recon_runner trains on a ReDWeb-layout folder, evaluates,
and recon_visualizer writes depth maps for a folder of images; a mixture samples at its shares.

The data is a tiny synthetic ReDWeb written by the same code as tools/make_depth_datasets.py:
48 views of one rendered room at 64x64, every 4th one held out (new viewpoints of the room).
"""
import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.config import expand_args_fields
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.data.depth.synthetic import render_depth_views, write_depth_datasets, write_redweb
from recon_trainer.experiment import Experiment
from recon_trainer.models.base import EvaluationMode

REDWEB = "ReDWeb(root='ReDWeb_V1', val_every=4, split='{split}'{extra})"
TINY_RUN = [
    f"data_source_MixtureDataSource_args.train=\"{REDWEB.format(split='train', extra=', training_crop=64')}\"",
    "data_source_MixtureDataSource_args.val=''",
    f"data_source_MixtureDataSource_args.test=\"{REDWEB.format(split='val', extra='')}\"",
    "data_source_MixtureDataSource_args.batches_per_epoch=20",
    "model_factory_ReconModelFactory_args.model_MidasModel_args.features=32",
    "optimizer_factory_ReconOptimizerFactory_args.lr=1e-3",
    "optimizer_factory_ReconOptimizerFactory_args.group_learning_rates.encoder=1e-3",
    "training_loop_ReconTrainingLoop_args.max_epochs=20",
    "training_loop_ReconTrainingLoop_args.mixed_precision=no",
]


def run_cli(module, args, cwd):
    env = dict(os.environ, MIDAS_DATA_ROOT=str(cwd / "data"))
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def absrel(exp_dir) -> float:
    (entry,) = json.loads((exp_dir / "results_test.json").read_text())
    assert entry["dataset"] == "ReDWeb" and entry["metric"] == "absrel" and entry["n_images"] == 12
    return entry["value"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The folder holding data/, an untrained evaluation (untrained/) and a trained run (run/)."""
    root = tmp_path_factory.mktemp("midas_e2e")
    write_redweb(str(root / "data" / "ReDWeb_V1"), render_depth_views(48, (64, 64), seed=0, views_per_scene=48))
    base = ["--config-name", "midas_redweb", "+preset=midas_quick", *TINY_RUN]
    evaluate_only = ["exp_dir=untrained", "training_loop_ReconTrainingLoop_args.eval_only=true"]
    untrained = run_cli("recon_trainer.cli.runner", [*base, *evaluate_only], root)
    assert untrained.returncode == 0, untrained.stdout[-3000:] + untrained.stderr[-3000:]
    trained = run_cli("recon_trainer.cli.runner", [*base, "exp_dir=run"], root)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    return root


def test_training_clearly_improves_held_out_absrel(runs):
    before, after = absrel(runs / "untrained"), absrel(runs / "run")
    print(f"held-out AbsRel: untrained {before:.4f}, trained {after:.4f}")
    assert after < 0.7 * before


def test_visualizer_writes_depth_maps_for_a_folder_of_images(runs):
    images = runs / "data" / "ReDWeb_V1" / "Imgs"
    result = run_cli("recon_trainer.cli.visualizer", ["exp_dir=run", f"images_dir={images}"], runs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = sorted(os.listdir(images))
    out = runs / "run" / "depth_maps"
    for name in names[:3]:
        stem = os.path.splitext(name)[0]
        colours = np.asarray(Image.open(out / f"{stem}.png"))
        disparity = np.load(out / f"{stem}.npy")
        assert colours.shape == (64, 64, 3) and disparity.shape == (64, 64)
        assert (disparity >= 0).all() and disparity.std() > 0
        assert colours.reshape(-1, 3).std(axis=0).max() > 10  # a colour map, not a flat image


def test_visualizer_without_images_dir_explains_itself(runs):
    result = run_cli("recon_trainer.cli.visualizer", ["exp_dir=run"], runs)
    assert result.returncode == 2
    assert "images_dir" in result.stderr


@pytest.mark.parametrize(
    "mixing, weights, expected",
    [("equal", [], {"ReDWeb": 4, "NYUv2": 4}), ("weighted", [3, 1], {"ReDWeb": 6, "NYUv2": 2})],
)
def test_mixed_run_samples_each_dataset_at_its_share(tmp_path, monkeypatch, mixing, weights, expected):
    write_depth_datasets(str(tmp_path / "data"), ["redweb", "nyu"], n_images=8, image_size_hw=(48, 64), seed=1)
    monkeypatch.setenv("MIDAS_DATA_ROOT", str(tmp_path / "data"))
    train = (
        "ReDWeb(root='ReDWeb_V1', split='train', training_crop=32)"
        " + NYUv2(root='nyu', split='train', training_crop=32)"
    )
    overrides = [
        "+preset=midas_quick",
        f'data_source_MixtureDataSource_args.train="{train}"',
        f"data_source_MixtureDataSource_args.mixing={mixing}",
        f"data_source_MixtureDataSource_args.weights={weights}",
        "data_source_MixtureDataSource_args.batches_per_epoch=6",
        "data_source_MixtureDataSource_args.test=''",
    ]
    expand_args_fields(Experiment)
    store_root_config(Experiment)
    experiment = Experiment(**compose_config("midas_mix", [f"exp_dir={tmp_path / 'run'}", *overrides]))
    _, loaders = experiment.data_source.get_datasets_and_dataloaders()
    batches = list(loaders.train)
    assert len(batches) == 6
    for batch in batches:
        assert dict(collections.Counter(batch.dataset)) == expected
        assert batch.image_rgb.shape == (8, 3, 32, 32) and torch.isfinite(batch.disparity_map).all()
    model = experiment.model_factory(exp_dir=str(tmp_path / "run"))
    preds = model(batches[0], evaluation_mode=EvaluationMode.TRAINING)
    assert torch.isfinite(preds["objective"])

