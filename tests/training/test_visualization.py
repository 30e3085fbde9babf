"""Images: the trainer's visualisations of a fixed batch, the loggers that take them, and the
visualize hooks of the NVS models and MiDaS."""
import os
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.experiment import Experiment
from recon_trainer.models.base import EvaluationMode
from recon_trainer.training.loggers.base import LoggerSettings, image_file_stem, to_uint8_image
from recon_trainer.training.loggers.image_files import ImageFolderLogger, vis_step_folder

from .helpers import assert_same_state, final_checkpoint
from .toy_plugin import toy_config


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_images_of_a_fixed_batch_every_n_steps_without_changing_training(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = toy_config(tmp_path / "vis", max_epochs=2,
                     logging={"loggers": ["console", "tensorboard"], "visualize_interval": 4})
    experiment = Experiment(**cfg)
    experiment.run()
    folders = sorted(os.listdir(tmp_path / "vis" / "vis"))
    assert folders == ["step_00000004", "step_00000008", "step_00000012"]  # 12 optimizer steps
    for folder in folders:
        assert sorted(os.listdir(tmp_path / "vis" / "vis" / folder)) == ["depth_pred.png", "rgb.png"]
    rgb = read_png(tmp_path / "vis" / "vis" / "step_00000004" / "rgb.png")
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert read_png(tmp_path / "vis" / "vis" / "step_00000008" / "depth_pred.png").shape == (2, 2)
    # the fixed batch: the first val frame, the same at every step
    first_val = experiment.data_source.get_datasets_and_dataloaders()[0].val[0].image_rgb
    expected = (first_val.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for folder in folders:
        assert np.array_equal(read_png(tmp_path / "vis" / "vis" / folder / "rgb.png"), expected)
    assert experiment.model_factory.model.visualize_calls == [(False, False)] * 3  # eval mode, no grad

    events = EventAccumulator(str(tmp_path / "vis" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"vis/rgb", "vis/depth/pred"}
    assert [(e.step, e.width, e.height) for e in events.Images("vis/rgb")] == [(4, 2, 2), (8, 2, 2), (12, 2, 2)]

    Experiment(**toy_config(tmp_path / "plain", max_epochs=2)).run()
    assert_same_state(final_checkpoint(tmp_path / "vis"), final_checkpoint(tmp_path / "plain"))


def test_without_a_val_split_the_first_train_batch_and_no_files_when_not_asked(tmp_path):
    cfg = toy_config(tmp_path / "a", max_epochs=1, logging={"visualize_interval": 6})
    cfg.data_source_ToyDataSource_args.n_val = 0
    experiment = Experiment(**cfg)
    experiment.run()
    assert os.listdir(tmp_path / "a" / "vis") == ["step_00000006"]
    assert len(experiment.model_factory.model.visualize_calls) == 1
    cfg = toy_config(tmp_path / "b", max_epochs=1, logging={"visualize_interval": 6, "save_visualizations": False})
    Experiment(**cfg).run()
    assert not os.path.exists(tmp_path / "b" / "vis")


def test_image_conversion_and_file_names(tmp_path):
    assert to_uint8_image(torch.full((1, 3, 4), 2.0)).shape == (3, 4)  # (1, H, W) is grey; values clamped
    assert to_uint8_image(torch.zeros(3, 2, 5)).shape == (2, 5, 3)
    with pytest.raises(ValueError, match=r"image 'bad' has shape \(4, 2, 2\): expected \(3, H, W\)"):
        to_uint8_image(torch.zeros(4, 2, 2), "bad")
    assert image_file_stem("../depth map/a") == "_depth_map_a"
    ImageFolderLogger(str(tmp_path)).log_images(7, {"x": torch.ones(2, 3)})
    assert read_png(os.path.join(vis_step_folder(str(tmp_path), 7), "x.png")).tolist() == [[255] * 3] * 2
    assert os.listdir(vis_step_folder(str(tmp_path), 7)) == ["x.png"]  # no temporary file left


def test_mlflow_and_visdom_take_images(tmp_path):
    from mlflow.tracking import MlflowClient

    from recon_trainer.training.loggers.mlflow_logger import MlflowLogger
    from recon_trainer.training.loggers.visdom_logger import VisdomLogger

    mlflow_logger = MlflowLogger(LoggerSettings(exp_dir=str(tmp_path)))
    mlflow_logger.log_images(3, {"render": torch.rand(3, 4, 5)})
    mlflow_logger.close()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    listed = [a.path for a in client.list_artifacts(mlflow_logger.run_id, "vis/step_00000003")]
    assert listed == ["vis/step_00000003/render.png"]

    visdom_logger = VisdomLogger.__new__(VisdomLogger)  # no server: a stand-in client
    visdom_logger.env, visdom_logger.viz = "env", mock.Mock()
    visdom_logger.log_images(5, {"render": torch.rand(3, 4, 5), "mask": torch.rand(4, 5)})
    (render, render_kwargs), (mask, _) = [(c.args[0], c.kwargs) for c in visdom_logger.viz.image.call_args_list]
    assert render.shape == (3, 4, 5) and render.dtype == np.uint8 and mask.shape == (4, 5)
    assert render_kwargs["win"] == "vis/render" and render_kwargs["opts"]["title"] == "render (step 5)"


# ------------------------------------------------------------------------------- the models' hooks


def test_nvs_models_show_the_image_beside_render_depth_and_mask():
    from recon_trainer.models.generic_model import GenericModel
    from tests.models.tiny_scene import sphere_batch, tiny_model_args

    torch.manual_seed(0)
    model = GenericModel(**tiny_model_args(GenericModel, render_size=12))
    model.eval()
    with torch.no_grad():
        images = model.visualize(sphere_batch(size=16))
    (panel,) = images.values()
    assert list(images) == ["render"] and panel.shape == (3, 12, 4 * 12)
    assert float(panel.min()) >= 0.0 and float(panel.max()) <= 1.0
    gt = torch.nn.functional.interpolate(sphere_batch(size=16).image_rgb[:1], size=(12, 12), mode="bilinear",
                                         align_corners=False)[0]
    torch.testing.assert_close(panel[:, :, :12], gt.clamp(0, 1))
    with torch.no_grad():
        preds = model(sphere_batch(size=16), evaluation_mode=EvaluationMode.EVALUATION)
    torch.testing.assert_close(panel[:, :, 36:], preds["masks_render"][0].clamp(0, 1).expand(3, -1, -1))


def test_midas_shows_the_image_beside_predicted_and_target_disparity():
    from tests.plugins.midas.test_model import tiny_model, training_batch

    model = tiny_model()
    model.eval()
    batch = training_batch(size=(32, 48))
    with torch.no_grad():
        images = model.visualize(batch)
    (panel,) = images.values()
    assert list(images) == ["disparity"] and panel.shape == (3, 32, 3 * 48)
    torch.testing.assert_close(panel[:, :, :48], batch.image_rgb[0])
    target = panel[:, :, 96:]
    assert torch.equal(target * (batch.depth_mask[0] == 0), torch.zeros_like(target))  # black where unknown
    batch.disparity_map = None
    with torch.no_grad():
        assert model.visualize(batch)["disparity"].shape == (3, 32, 2 * 48)
