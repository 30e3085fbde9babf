"""MoGe end to end, as a user runs it: recon_runner trains moge_v1 +preset=moge_quick on its built-in
synthetic rooms, evaluates every MoGe metric on two unseen benchmarks, and recon_visualizer turns a
folder of images into point maps, depth, masks, normals, FOV, PLY and GLB files.

Shorter than the preset (20 epochs of 10 steps instead of 30), to keep the suite fast.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

QUICK = ["--config-name", "moge_v1", "+preset=moge_quick", "training_loop_ReconTrainingLoop_args.max_epochs=20",
         "training_loop_ReconTrainingLoop_args.metric_print_interval=0"]
METRIC_KEYS = {
    "points_scale_invariant", "points_affine_invariant", "depth_scale_invariant", "depth_affine_invariant",
    "disparity_affine_invariant", "local_points", "fov_x",
}


def run_cli(module, args, cwd):
    env = dict(os.environ, RECON_TRAINER_CACHE=str(cwd / "cache"))
    env.pop("MOGE_DATA_ROOT", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def results(exp_dir):
    return json.loads((exp_dir / "results_test.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The folder holding the cache, an untrained evaluation (untrained/) and a trained run (run/)."""
    root = tmp_path_factory.mktemp("moge_e2e")
    trained = run_cli("recon_trainer.cli.runner", [*QUICK, "exp_dir=run"], root)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert trained.stdout.startswith("recon_trainer: no data_root given"), trained.stdout[:300]
    untrained = run_cli("recon_trainer.cli.runner",
                        [*QUICK, "exp_dir=untrained", "training_loop_ReconTrainingLoop_args.eval_only=true"], root)
    assert untrained.returncode == 0, untrained.stdout[-3000:] + untrained.stderr[-3000:]
    return root


def test_results_hold_every_metric_per_benchmark_and_their_mean(runs):
    metrics = results(runs / "run")["metrics"]
    assert sorted(metrics) == ["NYUv2", "Sintel", "mean"]
    for benchmark in ("NYUv2", "Sintel"):
        assert METRIC_KEYS <= set(metrics[benchmark])
        assert set(metrics[benchmark]["points_affine_invariant"]) == {"rel", "delta1"}
    assert set(metrics["Sintel"]["boundary"]) == {"radius1_f1", "radius2_f1", "radius3_f1"}  # sharp boundaries
    assert "boundary" not in metrics["NYUv2"]
    assert metrics["mean"]["fov_x"]["mae"] >= 0


def test_training_lowers_the_held_out_point_and_depth_errors(runs):
    before, after = results(runs / "untrained")["metrics"]["mean"], results(runs / "run")["metrics"]["mean"]
    points = before["points_affine_invariant"]["rel"], after["points_affine_invariant"]["rel"]
    depth = before["depth_affine_invariant"]["rel"], after["depth_affine_invariant"]["rel"]
    print(f"held-out affine-invariant rel, untrained -> trained: points {points[0]:.4f} -> {points[1]:.4f}, "
          f"depth {depth[0]:.4f} -> {depth[1]:.4f}")
    assert points[1] < 0.95 * points[0] and depth[1] < 0.9 * depth[0]


def test_visualisations_are_written_during_training(runs):
    steps = sorted(os.listdir(runs / "run" / "vis"))
    assert steps and all(name.startswith("step_") for name in steps)
    assert sorted(os.listdir(runs / "run" / "vis" / steps[-1])) == ["geometry_0.png", "geometry_1.png"]


def test_visualizer_writes_geometry_for_a_folder_of_images(runs):
    images = next((runs / "cache").glob("MoGeSyntheticDatasets-*")) / "eval" / "NYUv2" / "room_000"
    folder = runs / "photos"
    folder.mkdir()
    for view in sorted(os.listdir(images))[:2]:
        os.link(images / view / "image.jpg", folder / f"{view}.jpg")
    result = run_cli("recon_trainer.cli.visualizer", ["exp_dir=run", f"images_dir={folder}"], runs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = runs / "run" / "moge_predictions" / "view_0"
    assert {"points.npy", "depth.npy", "mask.png", "normal.png", "fov.json", "pointcloud.ply", "mesh.glb"} <= set(
        os.listdir(out))
    points, depth = np.load(out / "points.npy"), np.load(out / "depth.npy")
    assert points.shape == (96, 128, 3) and depth.shape == (96, 128)
    fov = json.loads((out / "fov.json").read_text())
    assert 10 < fov["fov_x"] < 170
