"""With no data_root, the midas configs train and evaluate on MiDaS's built-in data: synthetic
copies of its seven datasets in their own layouts, written once into the cache and announced."""
import os

import torch

from recon_trainer.config import expand_args_fields
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.experiment import Experiment
from recon_trainer.models.base import EvaluationMode

DS = "data_source_MixtureDataSource_args"
SMALL = [f"{DS}.builtin_data_MidasSyntheticDatasets_args.n_images=6",
         f"{DS}.builtin_data_MidasSyntheticDatasets_args.height=32",
         f"{DS}.builtin_data_MidasSyntheticDatasets_args.width=40",
         f"{DS}.train=\"ReDWeb(root='ReDWeb_V1', split='train', training_crop=32)\"",
         f"{DS}.batch_size=2"]


def test_the_midas_config_without_data_reads_the_builtin_datasets_written_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MIDAS_DATA_ROOT", raising=False)
    expand_args_fields(Experiment)
    store_root_config(Experiment)
    cfg = compose_config("midas_redweb", [f"exp_dir={tmp_path / 'run'}", "+preset=midas_quick", *SMALL])
    assert cfg[DS].data_root == ""
    experiment = Experiment(**cfg)
    datasets, loaders = experiment.data_source.get_datasets_and_dataloaders()
    announced = capsys.readouterr().out.splitlines()[0]
    assert announced.startswith("recon_trainer: no data_root given") and "MidasSyntheticDatasets-" in announced
    folder = announced.rsplit("cached in ", 1)[1]
    assert sorted(os.listdir(folder)) == ["DIW", "ReDWeb_V1", "eth3d", "kitti", "nyu", "sintel", "tum"]
    assert [label for label in datasets.test.labels()] == ["KITTI", "Sintel", "TUM", "NYUv2", "ETH3D", "DIW"]
    batch = next(iter(loaders.train))
    model = experiment.model_factory(exp_dir=str(tmp_path / "run"))
    assert torch.isfinite(model(batch, evaluation_mode=EvaluationMode.TRAINING)["objective"])
    stamp = os.stat(folder).st_mtime_ns
    Experiment(**cfg).data_source.get_datasets_and_dataloaders()  # a second run reuses the cache
    assert os.stat(folder).st_mtime_ns == stamp and capsys.readouterr().out.count("cached in " + folder) == 1
