"""Reading a saved expconfig.yaml back: unknown keys are listed, keys of dict fields are free."""
import pytest
from omegaconf import OmegaConf

from recon_trainer.config import ConfigError, expand_args_fields, get_default_args
from recon_trainer.config.discovery import discover_plugins
from recon_trainer.config.saved import load_saved_config
from recon_trainer.experiment import Experiment

MODEL = "model_factory_ReconModelFactory_args.model_GenericModel_args"


@pytest.fixture
def saved_config(tmp_path):
    discover_plugins()
    expand_args_fields(Experiment)
    cfg = get_default_args(Experiment)
    OmegaConf.update(cfg, f"{MODEL}.loss_weights.loss_eikonal", 0.1)  # a dict field takes any key
    path = tmp_path / "expconfig.yaml"
    OmegaConf.save(cfg, path)
    return path


def test_keys_of_dict_fields_are_not_unknown(saved_config):
    cfg = load_saved_config(str(saved_config), Experiment)
    assert OmegaConf.select(cfg, f"{MODEL}.loss_weights.loss_eikonal") == 0.1


def test_unknown_keys_are_all_listed_or_dropped(saved_config, capsys):
    cfg = OmegaConf.load(saved_config)
    OmegaConf.update(cfg, f"{MODEL}.old_field", 1, force_add=True)
    OmegaConf.update(cfg, "old_top", 2, force_add=True)
    OmegaConf.save(cfg, saved_config)
    with pytest.raises(ConfigError, match=r"(?s)old_field.*old_top"):
        load_saved_config(str(saved_config), Experiment)
    loaded = load_saved_config(str(saved_config), Experiment, drop_unknown_keys=True)
    assert "old_top" not in loaded and "ignoring 2 unknown key(s)" in capsys.readouterr().out
