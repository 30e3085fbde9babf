"""Ctrl-C and SIGTERM in real processes: the step finishes, a checkpoint is written, one line says
where, the exit code is 128 + the signal, and running the same command again ends exactly where
an uninterrupted run ends. A second Ctrl-C stops at once."""
import os
import re
import signal
import subprocess
import time

import pytest

from recon_trainer.experiment import Experiment
from recon_trainer.training.checkpoints import checkpoint_file_name, list_checkpoints

from ..training.helpers import assert_same_state, final_checkpoint
from ..training.toy_plugin import toy_config
from .helpers import LOOP, TOY_MODEL, TOY_RUNNER, environment, run

EPOCHS = 3
INTERRUPTED = re.compile(
    r"recon_runner: interrupted \((SIGINT|SIGTERM)\) (at epoch (\d+), batch (\d+) of 6|at the end of epoch (\d+)): "
    r"saved (\S+); run the same command to resume"
)


def start(exp_dir, cwd, *overrides, sleep=0.2):
    """The toy run in its own process group (as a shell job), slowed down to `sleep` s a batch."""
    command = TOY_RUNNER + [
        f"exp_dir={exp_dir}", f"{LOOP}.max_epochs={EPOCHS}", f"{TOY_MODEL}.sleep_per_batch_s={sleep}", *overrides
    ]
    return subprocess.Popen(command, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(path), "the run ended before " + str(path)


def reference(tmp_path, **data_args):
    cfg = toy_config(tmp_path / "whole", max_epochs=EPOCHS)
    for key, value in data_args.items():
        cfg.data_source_ToyDataSource_args[key] = value
    Experiment(**cfg).run()
    return final_checkpoint(tmp_path / "whole")


@pytest.mark.parametrize(
    "signum, to_group, overrides",
    [
        (signal.SIGINT, True, ["data_source_ToyDataSource_args.num_workers=2"]),  # Ctrl-C: the whole job, workers too
        (signal.SIGTERM, False, []),  # a scheduler's notice to the main process
    ],
)
def test_signal_saves_mid_epoch_and_the_rerun_ends_exactly(tmp_path, signum, to_group, overrides):
    exp_dir = tmp_path / "run"
    process = start(exp_dir, tmp_path, *overrides)
    wait_for(exp_dir / checkpoint_file_name(0), process)
    time.sleep(0.3)  # into epoch 1
    (os.killpg if to_group else os.kill)(process.pid, signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err
    match = INTERRUPTED.search(err)
    assert match, err
    assert match.group(1) == signal.Signals(signum).name
    saved = match.group(6)
    assert os.path.exists(saved) and list_checkpoints(str(exp_dir))[-1].path == saved
    if match.group(3) is not None:  # mid-epoch: the batches done are in the file's name
        assert saved.endswith(checkpoint_file_name(int(match.group(3)), int(match.group(4))))

    result = run(TOY_RUNNER + [f"exp_dir={exp_dir}", f"{LOOP}.max_epochs={EPOCHS}", *overrides], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Resuming from {saved}" in result.stdout + result.stderr
    expected = reference(tmp_path, **({"num_workers": 2} if overrides else {}))
    assert_same_state(expected, final_checkpoint(exp_dir))


def test_second_ctrl_c_stops_at_once(tmp_path):
    exp_dir = tmp_path / "run"
    process = start(exp_dir, tmp_path, f"{LOOP}.checkpoint_interval_steps=1", sleep=8.0)
    wait_for(exp_dir / checkpoint_file_name(0, 1), process)  # the first step is done: inside the second
    before = [found.path for found in list_checkpoints(str(exp_dir))]
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.2)
    stopped = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - stopped < 5, "the second Ctrl-C must not wait for the 8 s step to end"
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert re.search(r"recon_runner: interrupted again \(SIGINT\): stopped at once (at epoch \d+, batch \d+ without "
                     r"saving|outside training steps)", err), err
    assert [found.path for found in list_checkpoints(str(exp_dir))] == before
    assert not [name for name in os.listdir(exp_dir) if name.startswith(".tmp_")]
