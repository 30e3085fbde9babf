"""The mlflow logger: metrics `<stat set>/<name>` of one mlflow run per exp_dir; images as
artifacts vis/step_<8 digits>/<name>.png.

With no tracking URI the store is an SQLite file exp_dir/mlflow.db with artifacts in
exp_dir/mlruns (mlflow 3 refuses its plain-folder store unless MLFLOW_ALLOW_FILE_STORE is set).
A resumed run logs into the run it started (found by the tag holding exp_dir).
"""
import os
import time
from typing import Mapping

import torch

from recon_trainer.training.loggers.base import (
    LoggerSettings,
    MetricLogger,
    exp_dir_name,
    image_file_stem,
    to_uint8_image,
)

EXP_DIR_TAG = "recon_trainer.exp_dir"
DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlruns"


def default_tracking_uri(exp_dir: str) -> str:
    return "sqlite:///" + os.path.join(os.path.abspath(exp_dir), DEFAULT_DB)


class MlflowLogger(MetricLogger):
    """Logs through `mlflow.tracking.MlflowClient` (no global mlflow state is touched)."""

    def __init__(self, settings: LoggerSettings) -> None:
        from mlflow.tracking import MlflowClient

        exp_dir = os.path.abspath(settings.exp_dir)
        self.tracking_uri = settings.mlflow_tracking_uri or default_tracking_uri(exp_dir)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name(settings.mlflow_experiment_name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None if settings.mlflow_tracking_uri else "file://" + os.path.join(exp_dir, DEFAULT_ARTIFACTS)
            experiment_id = self.client.create_experiment(settings.mlflow_experiment_name, artifact_location=location)
        earlier = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{EXP_DIR_TAG}` = '{exp_dir}'", max_results=1
        )
        if earlier:
            self.run_id = earlier[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                experiment_id, run_name=settings.mlflow_run_name or exp_dir_name(exp_dir), tags={EXP_DIR_TAG: exp_dir}
            )
            self.run_id = run.info.run_id
            if settings.config_yaml:
                self.client.log_text(self.run_id, settings.config_yaml, "expconfig.yaml")

    def _log(self, prefix: str, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        batch = [Metric(f"{prefix}/{name}", float(value), now_ms, step) for name, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_epoch(self, stat_set: str, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        self._log(stat_set, step, metrics)

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self._log("train_step", step, metrics)

    def log_images(self, step: int, images: Mapping[str, torch.Tensor]) -> None:
        for name, image in images.items():
            artifact = f"vis/step_{step:08d}/{image_file_stem(name)}.png"
            self.client.log_image(self.run_id, to_uint8_image(image, name), artifact_file=artifact)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
