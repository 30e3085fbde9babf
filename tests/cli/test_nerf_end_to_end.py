"""NeRF end to end, as a user runs it: recon_runner trains and evaluates, recon_visualizer films.

One tiny run (built-in scene at 32x32, a small NeRF, a few hundred steps) is shared by the tests.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from recon_trainer.config import expand_args_fields
from recon_trainer.data.providers.builtin_scene import BuiltinScene
from recon_trainer.visualization.video import read_video

SCENE = {"resolution": 32, "n_views": 30, "holdout_every": 5}  # 24 train, 3 val, 3 test views
SCENE_ARGS = "data_source_ReconDataSource_args.builtin_scene_args"
MODEL_ARGS = "model_factory_ReconModelFactory_args.model_GenericModel_args"
TINY_RUN = [
    *(f"{SCENE_ARGS}.{key}={value}" for key, value in SCENE.items()),
    "data_source_ReconDataSource_args.data_loader_map_provider_SequenceDataLoaderMapProvider_args.dataset_length_train=50",
    f"{MODEL_ARGS}.render_image_width=32",
    f"{MODEL_ARGS}.render_image_height=32",
    f"{MODEL_ARGS}.raysampler_AdaptiveRaySampler_args.n_rays_per_image_sampled_from_mask=512",
    f"{MODEL_ARGS}.raysampler_AdaptiveRaySampler_args.n_pts_per_ray_training=24",
    f"{MODEL_ARGS}.raysampler_AdaptiveRaySampler_args.n_pts_per_ray_evaluation=24",
    f"{MODEL_ARGS}.renderer_MultiPassEmissionAbsorptionRenderer_args.n_pts_per_ray_fine_training=24",
    f"{MODEL_ARGS}.renderer_MultiPassEmissionAbsorptionRenderer_args.n_pts_per_ray_fine_evaluation=24",
    f"{MODEL_ARGS}.implicit_function_NeuralRadianceFieldImplicitFunction_args.n_hidden_neurons_xyz=64",
    f"{MODEL_ARGS}.implicit_function_NeuralRadianceFieldImplicitFunction_args.n_hidden_neurons_dir=32",
    f"{MODEL_ARGS}.implicit_function_NeuralRadianceFieldImplicitFunction_args.n_layers_xyz=3",
    f"{MODEL_ARGS}.implicit_function_NeuralRadianceFieldImplicitFunction_args.append_xyz=[1]",
    "optimizer_factory_ReconOptimizerFactory_args.lr=0.005",
    "optimizer_factory_ReconOptimizerFactory_args.exponential_lr_step_size=10",
    "training_loop_ReconTrainingLoop_args.max_epochs=6",
    "training_loop_ReconTrainingLoop_args.validation_interval=100",
]


def run_cli(module, args, cwd, env):
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(exp_dir, env, completed process) of one tiny repro_singleseq_nerf_blender +preset=quick run."""
    root = tmp_path_factory.mktemp("nerf_e2e")
    env = dict(os.environ, RECON_TRAINER_CACHE=str(root / "cache"))
    args = ["--config-name", "repro_singleseq_nerf_blender", "+preset=quick", "exp_dir=run", *TINY_RUN]
    result = run_cli("recon_trainer.cli.runner", args, root, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "run", env, result


def mean_colour_baseline_psnr(cache_dir) -> float:
    """PSNR on the test views of predicting every pixel as the mean training colour."""
    expand_args_fields(BuiltinScene)
    datasets = BuiltinScene(**SCENE, cache_dir=str(cache_dir), bg_color=(1.0, 1.0, 1.0)).get_dataset_map()
    train = torch.stack([frame.image_rgb for frame in datasets.train])
    mean = train.mean(dim=(0, 2, 3))
    test = torch.stack([frame.image_rgb for frame in datasets.test])
    per_frame = ((test - mean[None, :, None, None]) ** 2).mean(dim=(1, 2, 3))
    return float((-10 * torch.log10(per_frame)).mean())


def test_first_line_says_it_trains_on_the_builtin_scene(trained):
    _, _, result = trained
    first = result.stdout.splitlines()[0]
    assert first.startswith("recon_trainer: no dataset path given (BlenderDatasetMapProvider.base_dir)")
    assert "built-in scene 'builtin'" in first


def test_held_out_psnr_clearly_beats_the_mean_colour(trained):
    exp_dir, env, _ = trained
    results = json.loads((exp_dir / "results_test.json").read_text())
    test_entry = next(entry for entry in results if entry["subset"] == "test")
    psnr = test_entry["metrics"]["psnr_full_image"]
    baseline = mean_colour_baseline_psnr(env["RECON_TRAINER_CACHE"])
    assert len(test_entry["per_frame"]) == 3
    assert psnr > baseline + 4.0, (psnr, baseline)
    assert "lpips_full_image" not in test_entry["metrics"]  # no backbone weights given


def test_run_folder_holds_config_checkpoints_and_plot(trained):
    exp_dir, _, _ = trained
    names = os.listdir(exp_dir)
    assert {"expconfig.yaml", "overrides.yaml", "train_stats.png", "results_test.json"} <= set(names)
    assert "+preset=quick" in (exp_dir / "overrides.yaml").read_text()


def test_visualizer_writes_decodable_videos(trained):
    exp_dir, env, _ = trained
    args = [f"exp_dir={exp_dir}", "n_eval_cameras=6", "render_size=[32,32]", "video_size=[64,48]"]
    result = run_cli("recon_trainer.cli.visualizer", args, exp_dir.parent, env)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("rgb", "depth", "mask"):
        frames = read_video(str(exp_dir / "video" / f"{name}.mp4"))
        assert frames.shape == (6, 64, 48, 3)
    rgb = read_video(str(exp_dir / "video" / "rgb.mp4")).astype(float)
    assert rgb.std() > 5  # the scene, not a blank image
    assert np.abs(rgb[0] - rgb[2]).mean() > 2  # the views differ


def test_visualizer_lists_unknown_keys_of_an_old_config(trained, tmp_path):
    exp_dir, env, _ = trained
    old = tmp_path / "old_run"
    old.mkdir()
    text = (exp_dir / "expconfig.yaml").read_text()
    (old / "expconfig.yaml").write_text(text + "removed_option: 3\n")
    result = run_cli("recon_trainer.cli.visualizer", [f"exp_dir={old}"], tmp_path, env)
    assert result.returncode == 2
    assert "does not know" in result.stderr and "removed_option" in result.stderr
    assert "Traceback" not in result.stderr
