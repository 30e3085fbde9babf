"""Kill recon_runner with SIGKILL in the middle of an epoch, run the same command again: the
result equals an uninterrupted run (nothing lost, nothing repeated)."""
import os
import signal
import subprocess
import sys
import time

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recon_trainer.experiment import Experiment
from recon_trainer.training.checkpoints import checkpoint_file_name, list_checkpoints

from .helpers import assert_same_state, final_checkpoint
from .toy_plugin import toy_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "tests", "training", "configs")
LOOP = "training_loop_ReconTrainingLoop_args"
MODEL = "model_factory_ReconModelFactory_args.model_ToyModel_args"


def runner_command(exp_dir, *overrides):
    return [sys.executable, "-m", "tests.training.launch_toy", "--config-path", CONFIGS,
            "--config-name", "toy_experiment", f"exp_dir={exp_dir}", *overrides]


def environment():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RANK", None)
    return env


def run_to_completion(command, cwd):
    """Run a command (with the repository importable); its CompletedProcess."""
    result = subprocess.run(
        command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


def test_killed_run_resumes_exactly(tmp_path):
    Experiment(**toy_config(tmp_path / "whole", checkpoint_interval_steps=2, max_epochs=3)).run()  # the reference
    overrides = [f"{LOOP}.checkpoint_interval_steps=2", f"{LOOP}.max_epochs=3"]

    command = runner_command(
        tmp_path / "killed", *overrides, f"{MODEL}.sleep_per_batch_s=0.1",
        f"{LOOP}.logging_args.loggers=[console,tensorboard]", f"{LOOP}.logging_args.metric_log_interval_steps=2",
    )
    process = subprocess.Popen(command, cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    target = tmp_path / "killed" / checkpoint_file_name(1, 2)  # 2 batches into epoch 1 (of 6)
    deadline = time.monotonic() + 240
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert target.exists(), "the run ended before its mid-epoch checkpoint appeared"
    newest = list_checkpoints(str(tmp_path / "killed"))[-1]
    assert (newest.epoch, newest.batches_done) == (1, 2)  # killed mid-epoch, before the next save

    # the config and the command-line overrides were saved when the run started
    saved = yaml.safe_load((tmp_path / "killed" / "expconfig.yaml").read_text())
    assert saved[LOOP]["checkpoint_interval_steps"] == 2 and "model_factory_ReconModelFactory_args" in saved
    assert "model_GenericModel_args" not in saved["model_factory_ReconModelFactory_args"]  # pruned
    assert yaml.safe_load((tmp_path / "killed" / "overrides.yaml").read_text()) == command[7:]

    result = run_to_completion(command, tmp_path)
    assert f"Resuming from {target}" in result.stdout + result.stderr
    assert_same_state(final_checkpoint(tmp_path / "whole"), final_checkpoint(tmp_path / "killed"))
    # tensorboard shows each step once: what the killed run logged after its checkpoint is purged
    events = EventAccumulator(str(tmp_path / "killed" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train_step/objective")] == list(range(2, 19, 2))
