"""DataLoader workers fit the machine: a config's num_workers above the CPU cores this process may use
is lowered to them (one line says so, once), so no "8 workers on 2 cores" warning; 0 stays 0."""
import warnings

import pytest
import torch

from recon_trainer.config import ConfigError, expand_args_fields
from recon_trainer.data import data_loader_map_provider as loaders
from recon_trainer.data.data_loader_map_provider import SimpleDataLoaderMapProvider, dataloader_workers
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.splits import DatasetMap


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(loaders, "available_cpu_cores", lambda: 2)
    loaders._note_fewer_workers.cache_clear()
    yield
    loaders._note_fewer_workers.cache_clear()


def test_workers_above_the_cores_are_lowered_with_one_notice(two_cores, capsys):
    assert dataloader_workers(8, "X.num_workers") == 2
    assert dataloader_workers(8, "X.num_workers") == 2
    assert capsys.readouterr().out == (
        "recon_trainer: X.num_workers=8 but this process has 2 CPU core(s); using 2 DataLoader worker(s)\n"
    )
    assert dataloader_workers(2, "X.num_workers") == 2 and dataloader_workers(0, "X.num_workers") == 0
    assert capsys.readouterr().out == ""


def test_a_negative_number_of_workers_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^X.num_workers=-1: expected a number of worker processes >= 0"):
        dataloader_workers(-1, "X.num_workers")


def test_the_providers_loaders_start_no_more_workers_than_cores(two_cores, capsys):
    expand_args_fields(SimpleDataLoaderMapProvider)
    frames = torch.utils.data.TensorDataset(torch.arange(6.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when num_workers exceeds the cores
        loader_map = SimpleDataLoaderMapProvider(num_workers=8).get_data_loader_map(DatasetMap(train=frames))
    assert loader_map.train.num_workers == 2
    assert "SimpleDataLoaderMapProvider.num_workers=8" in capsys.readouterr().out
    expand_args_fields(MixtureDataSource)
    assert MixtureDataSource(num_workers=8)._workers() == 2
    assert MixtureDataSource()._workers() == 0  # the default: load in the main process


def test_the_real_cores_are_counted():
    assert loaders.available_cpu_cores() >= 1
