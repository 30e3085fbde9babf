"""The full default Experiment config, field order included, is pinned by a checked-in YAML.

Any change to the schema (a field added, removed, renamed, reordered or given a new default)
shows up as a diff of tests/config/data/experiment.yaml in review. After an intended change run

    RECON_TRAINER_UPDATE_GOLDEN=1 python -m pytest tests/config/test_golden_config.py

and commit the updated file with the change.
"""
import difflib
import os
import subprocess
import sys

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "experiment.yaml")
UPDATE_ENV = "RECON_TRAINER_UPDATE_GOLDEN"
# Run in a fresh process: other tests register extra implementations into this process's registry.
DUMP = """
from omegaconf import OmegaConf
from recon_trainer.config import expand_args_fields, get_default_args
from recon_trainer.config.discovery import discover_plugins
from recon_trainer.experiment import Experiment
discover_plugins()
expand_args_fields(Experiment)
print(OmegaConf.to_yaml(get_default_args(Experiment), sort_keys=False), end="")
"""


def default_experiment_yaml() -> str:
    result = subprocess.run([sys.executable, "-c", DUMP], capture_output=True, text=True, check=True)
    return result.stdout


def test_default_experiment_config_matches_the_golden_yaml():
    current = default_experiment_yaml()
    if os.environ.get(UPDATE_ENV):
        with open(GOLDEN, "w", encoding="utf-8") as f:
            f.write(current)
    with open(GOLDEN, encoding="utf-8") as f:
        golden = f.read()
    diff = "".join(difflib.unified_diff(golden.splitlines(True), current.splitlines(True), "golden", "current", n=1))
    assert current == golden, (
        f"The default Experiment config differs from {GOLDEN}. If the change is intended, run "
        f"{UPDATE_ENV}=1 python -m pytest {__file__} and commit the file.\n{diff[:6000]}"
    )
