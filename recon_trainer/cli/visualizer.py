"""recon_visualizer: film a trained experiment, or write a model's predictions for your own images.

    recon_visualizer exp_dir=runs/nerf n_eval_cameras=40 render_size=[64,64] video_size=[256,256]
    recon_visualizer exp_dir=runs/midas images_dir=photos/

Arguments are `key=value` (OmegaConf's command-line syntax); every key of
`visualize_reconstruction` may be given. A novel-view model is rendered along a fly-around:
videos of RGB, depth and mask go to exp_dir/video/. With images_dir, a model that predicts from
single images writes its predictions for each image (MiDaS: coloured depth maps and raw .npy
disparities in exp_dir/depth_maps/).

A model takes part through optional members: `write_image_predictions(image_paths, out_dir,
device) -> [written paths]` with the folder name `IMAGE_PREDICTIONS_FOLDER`, for images_dir;
`write_dataset_predictions(dataloader, out_dir, device, max_items) -> {name: path}` with the folder
name `DATASET_PREDICTIONS_FOLDER`, for models that predict per sample of a split (e.g. voxel renders
and meshes of a scene completion model: `recon_visualizer exp_dir=... split=test max_items=8`); and
full-grid renders of cameras ("images_render", "depths_render", "masks_render"), for the fly-around.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recon_trainer.cli.reporting import pop_debug_flag, reported_errors
from recon_trainer.config import ConfigError, enable_get_default_args, expand_args_fields, get_default_args
from recon_trainer.config.errors import did_you_mean
from recon_trainer.config.saved import load_saved_config
from recon_trainer.errors import RunDirectoryError
from recon_trainer.experiment import Experiment
from recon_trainer.training.checkpoints import list_checkpoints
from recon_trainer.training.ema import load_averaged_weights
from recon_trainer.training.run_directory import EXPCONFIG_FILE
from recon_trainer.visualization.flyaround import film_flyaround
from recon_trainer.visualization.images import list_images

PROG = "recon_visualizer"


def visualize_reconstruction(
    exp_dir: str = "",
    output_directory: Optional[str] = None,
    render_size: Tuple[int, int] = (128, 128),
    video_size: Optional[Tuple[int, int]] = None,
    n_eval_cameras: int = 40,
    fps: int = 20,
    split: str = "train",
    n_source_views: int = 9,
    device: str = "auto",
    drop_unknown_keys: bool = False,
    images_dir: Optional[str] = None,
    max_items: int = 8,
) -> Dict[str, str]:
    """Render the experiment in `exp_dir` (saved config, latest checkpoint) along a circle.

    render_size: (H, W) the model renders at; video_size: (H, W) of the videos (render_size if
    None); split: whose cameras the circle is fitted to; n_source_views: frames of that split, evenly
    spaced, that image-conditioned models (a view pooler) read as source views; output_directory:
    exp_dir/video if None;
    drop_unknown_keys: ignore keys of an expconfig.yaml written by another version;
    images_dir: a folder of images to predict from instead (output_directory: exp_dir/<the model's
    IMAGE_PREDICTIONS_FOLDER> if None).
    Returns the paths of the "rgb", "depth" and "mask" videos, or image path -> its first output file.
    """
    if not exp_dir:
        raise ConfigError("exp_dir is required: the folder of a run (it holds expconfig.yaml)")
    expand_args_fields(Experiment)
    cfg = load_saved_config(os.path.join(exp_dir, EXPCONFIG_FILE), Experiment, drop_unknown_keys)
    if not list_checkpoints(exp_dir):
        raise RunDirectoryError(f"exp_dir {exp_dir} holds no checkpoint to visualise: train first (recon_runner ... "
                                f"exp_dir={exp_dir}), or point exp_dir at a run that saved one")
    cfg.exp_dir = exp_dir
    _prepare_for_rendering(cfg, render_size)
    experiment = Experiment(**cfg)
    run_device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    model = experiment.model_factory(exp_dir=exp_dir).to(run_device)
    checkpoint = experiment.model_factory.resumed_checkpoint()
    if checkpoint is not None and checkpoint.ema is not None and getattr(experiment.training_loop,
                                                                          "ema_for_evaluation", False):
        load_averaged_weights(model, checkpoint.ema)  # the weights the run evaluated with
        print(f"{PROG}: using the moving average of the weights kept in {checkpoint.path}")
    if images_dir is not None:
        writer = getattr(model, "write_image_predictions", None)
        if writer is None:
            raise ConfigError(f"images_dir={images_dir!r}: {type(model).__name__} does not predict from single images "
                              "(it has no write_image_predictions); leave images_dir out to film a fly-around")
        images = list_images(images_dir)
        out_dir = output_directory or os.path.join(exp_dir, getattr(model, "IMAGE_PREDICTIONS_FOLDER", "predictions"))
        written = writer(images, out_dir, run_device)
        print(f"{PROG}: wrote the predictions for {len(written)} images to {out_dir}")
        return dict(zip(images, written))
    datasets, loaders = experiment.data_source.get_datasets_and_dataloaders()
    dataset = getattr(datasets, split, None)
    if dataset is None:
        raise ConfigError(f"split={split!r} has no dataset in this experiment; choose train, val or test")
    dataset_writer = getattr(model, "write_dataset_predictions", None)
    if dataset_writer is not None:
        out_dir = output_directory or os.path.join(exp_dir, getattr(model, "DATASET_PREDICTIONS_FOLDER", "predictions"))
        written = dataset_writer(getattr(loaders, split), out_dir, run_device, max_items)
        print(f"{PROG}: wrote the predictions for {len(written)} samples of the {split} split to {out_dir}")
        return written
    size = tuple(video_size) if video_size is not None else tuple(render_size)
    out_dir = output_directory or os.path.join(exp_dir, "video")
    paths = film_flyaround(model, dataset, out_dir, tuple(render_size), size, n_eval_cameras, fps, n_source_views,
                           run_device)
    print(f"{PROG}: wrote {', '.join(paths.values())} ({n_eval_cameras} frames, {size[0]}x{size[1]})")
    return paths


enable_get_default_args(visualize_reconstruction)


def _prepare_for_rendering(cfg, render_size: Sequence[int]) -> None:
    """Load the latest checkpoint (it must exist) and render at `render_size` (H, W)."""
    factory = cfg[f"model_factory_{cfg.model_factory_class_type}_args"]
    if "force_resume" in factory:
        factory.force_resume = True
    model_args = factory.get(f"model_{factory.get('model_class_type')}_args")
    if model_args is not None and "render_image_height" in model_args:
        model_args.render_image_height, model_args.render_image_width = int(render_size[0]), int(render_size[1])


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of recon_visualizer: `key=value` arguments."""
    argv, _ = pop_debug_flag(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.strip())
        print("\narguments and defaults:\n" + OmegaConf.to_yaml(get_default_args(visualize_reconstruction)))
        return
    defaults = get_default_args(visualize_reconstruction)
    with reported_errors(PROG):
        try:
            cli = OmegaConf.from_cli(argv)
            for key in cli.keys():
                if key not in defaults:
                    raise ConfigError(f"unknown argument '{key}'{did_you_mean(str(key), defaults.keys())}")
            args = OmegaConf.merge(defaults, cli)
        except OmegaConfBaseException as error:
            raise ConfigError(f"bad argument: {str(error).splitlines()[0]}") from None
        visualize_reconstruction(**args)


if __name__ == "__main__":
    main()
