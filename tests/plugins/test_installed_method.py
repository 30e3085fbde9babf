"""A method is one folder: a toy method written into a temporary folder, installed as a package
that advertises itself with a `recon_trainer.plugins` entry point and ships its own YAML, runs with
`recon_runner --config-name <its config>`; nothing outside its folder is touched."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

from tests.reliability.helpers import REPO, RUNNER, environment

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "toy-line-method"
version = "0.1.0"

[project.entry-points."recon_trainer.plugins"]
toy_line = "toy_line"

[tool.setuptools]
packages = ["toy_line"]

[tool.setuptools.package-data]
toy_line = ["configs/*.yaml"]
"""

METHOD = '''
"""Fit y = a x + b to noisy points: a data source, a model and an evaluator in one package."""
import torch

from recon_trainer.config import registry
from recon_trainer.data.data_source import DataLoaderMap, DatasetMap, DataSourceBase
from recon_trainer.evaluation.evaluator import EvaluatorBase, Evaluation
from recon_trainer.models.base import EvaluationMode, ModelBase


@registry.register
class ToyLineData(DataSourceBase):
    n_points: int = 64  # points on the line
    batch_size: int = 16

    def get_datasets_and_dataloaders(self):
        x = torch.linspace(-1.0, 1.0, self.n_points)[:, None]
        data = torch.utils.data.TensorDataset(x, 3.0 * x + 1.0)
        train = torch.utils.data.DataLoader(data, batch_size=self.batch_size, shuffle=True)
        test = torch.utils.data.DataLoader(data, batch_size=self.n_points)
        return DatasetMap(train=data, test=data), DataLoaderMap(train=train, test=test)


@registry.register
class ToyLineModel(ModelBase):
    def __post_init__(self) -> None:
        self.line = torch.nn.Linear(1, 1)

    def forward(self, batch, evaluation_mode=EvaluationMode.EVALUATION):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.line(x), y)
        return {"objective": loss, "slope": self.line.weight.detach().reshape(())}


@registry.register
class ToyLineEvaluator(EvaluatorBase):
    def reset(self, device):
        self.errors = []

    def process(self, model, batch):
        self.errors.append(float(model(batch)["objective"]))
        self.slope = float(model.line.weight)

    def compute(self, epoch=None):
        metrics = {"mse": sum(self.errors) / len(self.errors), "slope": self.slope}
        return Evaluation(metrics=metrics, results=metrics, summary=f"line: {metrics}")
'''

CONFIG = """
# The toy line method: recon_runner --config-name toy_line_fit exp_dir=runs/line
defaults:
  - default_config
  - _self_
exp_dir: ./runs/toy_line
data_source_class_type: ToyLineData
model_factory_ReconModelFactory_args:
  model_class_type: ToyLineModel
optimizer_factory_ReconOptimizerFactory_args:
  lr: 0.1
training_loop_ReconTrainingLoop_args:
  evaluator_class_type: ToyLineEvaluator
  max_epochs: 30
  validation_interval: 0
  test_when_finished: true
  metric_print_interval: 0
  progress_bar: false
"""


def tree_digest(root: str) -> str:
    """A digest of every file's path and content under root (caches and .git left out)."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        skipped = (".git", "__pycache__", ".pytest_cache")
        dirs[:] = sorted(d for d in dirs if d not in skipped and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def write_method(folder) -> None:
    (folder / "toy_line" / "configs").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(PYPROJECT)
    (folder / "toy_line" / "__init__.py").write_text(textwrap.dedent(METHOD))
    (folder / "toy_line" / "configs" / "toy_line_fit.yaml").write_text(CONFIG)


def test_a_method_installed_from_its_own_folder_runs_by_its_config_name(tmp_path):
    source, site, work = tmp_path / "toy_line_method", tmp_path / "site", tmp_path / "work"
    write_method(source)
    work.mkdir()
    before = tree_digest(REPO)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(site), str(source)], capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = {"PYTHONPATH": str(site) + os.pathsep + environment()["PYTHONPATH"]}
    listed = subprocess.run([*RUNNER, "--list-plugins"], cwd=work, env=environment(env), capture_output=True,
                            text=True, timeout=300)
    assert "ToyLineModel" in listed.stdout, listed.stdout + listed.stderr
    result = subprocess.run([*RUNNER, "--config-name", "toy_line_fit", "exp_dir=run"], cwd=work,
                            env=environment(env), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(work / "run" / "results_test.json") as f:
        results = json.load(f)
    assert results["mse"] < 0.05 and abs(results["slope"] - 3.0) < 0.3
    assert tree_digest(REPO) == before  # nothing outside the method's folder (and the run's) changed
