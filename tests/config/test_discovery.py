"""Plugin discovery: once per process, examples excluded, failures reported every time."""
import sys

import pytest

from recon_trainer.config import PluginImportError
from recon_trainer.config import discovery


def test_builtin_plugins_are_imported_but_not_examples():
    discovery.discover_plugins()
    assert "recon_trainer_plugins" in sys.modules and "plugins" not in sys.modules
    assert all(not name.startswith("recon_trainer_plugins.examples") for name in discovery.discover_plugins())


def test_a_failing_plugin_is_reported_on_every_call(monkeypatch):
    def broken():
        raise PluginImportError("plugin entry point 'x = x' failed to load: ImportError: boom")

    monkeypatch.setattr(discovery, "_discovered", None)
    monkeypatch.setattr(discovery, "_load_entry_points", broken)
    for _ in range(2):
        with pytest.raises(PluginImportError, match="'x = x' failed to load"):
            discovery.discover_plugins()
