"""Fixtures shared by the data tests: a tiny dataset exported once by the command-line tool."""
import os
import subprocess
import sys

import pytest

from recon_trainer.data.providers import rendered_mesh

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Keenan Crane's public-domain cow, shipped as package data (recon_trainer/data/assets/cow_mesh/README.md).
COW_OBJ = rendered_mesh.COW_OBJ
# The settings of the exported dataset, as BuiltinScene fields.
EXPORT_SETTINGS = {"scene": COW_OBJ, "n_views": 8, "holdout_every": 4, "resolution": 32, "seed": 3}


@pytest.fixture(autouse=True)
def _no_home_cache(tmp_path, monkeypatch):
    """Every test that falls back to the default cache root writes under its tmp_path."""
    monkeypatch.setenv("RECON_TRAINER_CACHE", str(tmp_path / "default_cache"))


@pytest.fixture(scope="session")
def exported_cow(tmp_path_factory):
    """The cow rendered by tools/export_blender_dataset.py (run once as a subprocess): its folder."""
    out = tmp_path_factory.mktemp("export") / "cow"
    s = EXPORT_SETTINGS
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", "export_blender_dataset.py"), "--out", str(out)]
    for key in ("scene", "n_views", "holdout_every", "resolution", "seed"):
        command += ["--" + key.replace("_", "-"), str(s[key])]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    return str(out)
