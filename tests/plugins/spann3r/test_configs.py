"""The spann3r and dust3r_pairs configs: they compose with the papers' settings, and with no data
path their training, validation and test expressions read the built-in stand-ins written in every
dataset's own layout under the folders the expressions name."""
import pytest

from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.experiment import Experiment
from recon_trainer_plugins.spann3r.batch import PointMapBatch

BUILTIN = "data_source_MixtureDataSource_args.builtin_data_Spann3RSyntheticScenes_args"
TINY_BUILTIN = [f"{BUILTIN}.n_scenes=2", f"{BUILTIN}.n_frames=12", f"{BUILTIN}.image_size=[48,64]"]
SPANN3R_TRAIN = ["Co3d", "Co3d#2", "BlendMVS", "Scannetpp", "habitat", "Scannet", "ArkitScene"]


@pytest.fixture
def compose(tmp_path, monkeypatch):
    for name in ("SPANN3R_DATA_ROOT", "DUST3R_DATA_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path))
    store_root_config(Experiment)
    return lambda name, overrides=(): compose_config(name, [*TINY_BUILTIN, *overrides])


def test_spann3r_config_has_the_papers_settings_and_reads_every_layout(compose):
    cfg = compose("spann3r", ["data_source_MixtureDataSource_args.num_workers=0"])
    optimizer = cfg.optimizer_factory_ReconOptimizerFactory_args
    assert (optimizer.breed, optimizer.lr, tuple(optimizer.betas), optimizer.weight_decay) == ("AdamW", 5e-5,
                                                                                              (0.9, 0.95), 0.05)
    assert optimizer.no_decay_1d and optimizer.lr_policy == "WarmupCosine"
    assert optimizer.schedule_args.min_factor * optimizer.lr == pytest.approx(1e-6)
    loop = cfg.training_loop_ReconTrainingLoop_args
    assert (loop.max_epochs, loop.clip_grad) == (120, 1.0)
    assert cfg.model_factory_ReconModelFactory_args.model_Spann3RModel_args.max_epochs == 120
    source = MixtureDataSource(**cfg.data_source_MixtureDataSource_args)
    datasets, loaders = source.get_datasets_and_dataloaders()
    assert [child.dataset.label() for child in datasets.train.children] == [name.split("#")[0]
                                                                           for name in SPANN3R_TRAIN]
    assert len(datasets.train) == 70_000
    assert list(loaders.test_sets) == ["SevenScenes", "NRGBD", "DTU"]
    for split in ("train", "val", "test"):
        batch = next(iter(getattr(loaders, split)))
        assert isinstance(batch, PointMapBatch) and batch.images.shape[-2:] == (224, 224)
        assert bool(batch.valid.any()) and batch.images.min() >= -1 and batch.images.max() <= 1
    assert next(iter(loaders.train)).num_frames == 5


def test_dust3r_pairs_config_trains_on_pairs(compose):
    cfg = compose("dust3r_pairs", ["data_source_MixtureDataSource_args.num_workers=0"])
    model = cfg.model_factory_ReconModelFactory_args
    assert model.model_class_type == "DUSt3RPairModel"
    assert model.model_DUSt3RPairModel_args.conf_alpha == "0.2"
    assert model.model_DUSt3RPairModel_args.network.head_type == "linear"
    source = MixtureDataSource(**cfg.data_source_MixtureDataSource_args)
    _, loaders = source.get_datasets_and_dataloaders()
    batch = next(iter(loaders.train))
    assert batch.num_frames == 2 and len(batch) == 16
