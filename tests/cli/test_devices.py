"""The --device option of the command-line tools (recon_trainer/cli/devices.py)."""
import pytest
import torch

from recon_trainer.cli.devices import device_from_option
from recon_trainer.errors import UserError


def test_device_from_option(monkeypatch):
    assert device_from_option("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_from_option(None) == torch.device("cpu") and device_from_option("") == torch.device("cpu")
    with pytest.raises(UserError, match=r"^--device 'cuda:0': CUDA is not available here; use --device cpu$"):
        device_from_option("cuda:0")
    with pytest.raises(UserError, match=r"^--gpu 'nonsense': "):
        device_from_option("nonsense", "--gpu")
