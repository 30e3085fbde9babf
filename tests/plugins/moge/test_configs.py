"""The released configs: moge_v1 and moge_v2 compose with MoGe's settings, and with no data path
their expressions read the built-in stand-ins written under the same dataset names."""
import pytest

from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.experiment import Experiment

BENCHMARKS = ["NYUv2", "KITTI", "ETH3D", "iBims-1", "GSO", "Sintel", "DDAD", "DIODE", "Spring", "HAMMER"]
TINY_BUILTIN = [f"data_source_MixtureDataSource_args.builtin_data_MoGeSyntheticDatasets_args.{key}"
                for key in ("n_train=1", "n_sfm=1", "n_eval=1", "height=16", "width=16")]


@pytest.mark.parametrize("config, n_train", [("moge_v1", 1), ("moge_v2", 24)])
def test_released_config_reads_its_builtin_stand_ins(tmp_path, monkeypatch, config, n_train):
    monkeypatch.delenv("MOGE_DATA_ROOT", raising=False)
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path))
    store_root_config(Experiment)
    cfg = compose_config(config, TINY_BUILTIN)
    model = cfg.model_factory_ReconModelFactory_args.model_MoGeModel_args
    assert model.version == config[-2:] and cfg.training_loop_ReconTrainingLoop_args.ema_decay == 0.999
    optimizer = cfg.optimizer_factory_ReconOptimizerFactory_args
    assert (optimizer.breed, optimizer.lr, optimizer.group_learning_rates.backbone) == ("AdamW", 1e-4, 1e-5)
    source = MixtureDataSource(**cfg.data_source_MixtureDataSource_args)
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert len(datasets.train.children) == n_train == len(source.weights)
    assert list(loaders.test_sets) == BENCHMARKS and all(len(loader) == 1 for loader in loaders.test_sets.values())
