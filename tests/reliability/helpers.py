"""Running the command-line tools in real processes, and what the reliability tests assert of them."""
import hashlib
import os
import subprocess
import sys
from typing import Dict, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIGS = os.path.join(REPO, "tests", "training", "configs")
RUNNER = [sys.executable, "-m", "recon_trainer.cli.runner"]
VISUALIZER = [sys.executable, "-m", "recon_trainer.cli.visualizer"]
TOY_RUNNER = [sys.executable, "-m", "tests.training.launch_toy", "--config-path", TOY_CONFIGS,
              "--config-name", "toy_experiment"]
LOOP = "training_loop_ReconTrainingLoop_args"
OPT = "optimizer_factory_ReconOptimizerFactory_args"
MF = "model_factory_ReconModelFactory_args"
TOY_MODEL = f"{MF}.model_ToyModel_args"


def environment(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment with the repository importable, as one process of one run."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "HYDRA_FULL_ERROR", "RECON_DEBUG"):
        env.pop(key, None)
    env.update(extra or {})
    return env


def run(command: Sequence[str], cwd, timeout: float = 300, env_extra=None, **kwargs) -> subprocess.CompletedProcess:
    """Run a command to its end; its CompletedProcess (text output)."""
    return subprocess.run(list(map(str, command)), cwd=cwd, env=environment(env_extra), capture_output=True,
                          text=True, timeout=timeout, check=False, **kwargs)


def assert_reported(result: subprocess.CompletedProcess, code: int = 2, prog: str = "recon_runner") -> str:
    """The run ended with `code` and a last line `<prog>: error: ...` on stderr, no traceback; that line."""
    assert result.returncode == code, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{prog}: ")]
    assert lines, result.stderr
    return lines[-1]


def file_hashes(folder) -> Dict[str, str]:
    """sha256 of every file under `folder`, by path relative to it."""
    hashes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return hashes
