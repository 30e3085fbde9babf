"""exp_dir in real processes: nothing of an earlier run is deleted, one run at a time, leftovers
of killed writers cleaned, a folder that cannot be made is one line."""
import json
import os
import signal
import subprocess
import time

from omegaconf import OmegaConf

from recon_trainer.config import get_default_args
from recon_trainer.experiment import Experiment
from recon_trainer.training.checkpoints import checkpoint_file_name, list_checkpoints
from recon_trainer.training.run_directory import EARLIER_RUNS, LOCK_FILE

from .helpers import LOOP, MF, TOY_MODEL, TOY_RUNNER, VISUALIZER, assert_reported, environment, file_hashes, run


def toy_run(exp_dir, *overrides, cwd):
    return run(TOY_RUNNER + [f"exp_dir={exp_dir}", f"{LOOP}.max_epochs=2", *overrides], cwd=cwd)


def checkpoints(exp_dir):
    return [os.path.basename(found.path) for found in list_checkpoints(str(exp_dir))]


def test_unreadable_checkpoints_refuse_to_start_and_resume_false_moves_them_aside(tmp_path):
    exp_dir = tmp_path / "run"
    assert toy_run(exp_dir, cwd=tmp_path).returncode == 0
    for name in checkpoints(exp_dir):  # e.g. written by another torch version, or a copy cut short
        path = exp_dir / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    before = file_hashes(exp_dir)

    result = toy_run(exp_dir, cwd=tmp_path)
    line = assert_reported(result)
    assert "holds 2 checkpoint file(s) and none can be read; nothing was changed" in line
    listed = result.stderr[result.stderr.index(line):]
    assert all(str(exp_dir / name) in listed for name in checkpoints(exp_dir)) and "resume=false" in listed
    assert file_hashes(exp_dir) == {**before, ".lock": file_hashes(exp_dir)[".lock"]}  # not one byte changed

    result = toy_run(exp_dir, f"{MF}.resume=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (earlier,) = os.listdir(exp_dir / EARLIER_RUNS)
    moved = file_hashes(exp_dir / EARLIER_RUNS / earlier)
    assert {name: moved[name] for name in before if name != ".lock"} == {
        name: digest for name, digest in before.items() if name != ".lock"
    }
    assert f"moved 5 file(s) to {exp_dir / EARLIER_RUNS / earlier}" in result.stdout + result.stderr
    assert checkpoints(exp_dir) == [checkpoint_file_name(0), checkpoint_file_name(1)]  # the new run's


def test_a_second_run_in_the_same_exp_dir_is_refused_at_once(tmp_path):
    exp_dir = tmp_path / "run"
    first = subprocess.Popen(
        TOY_RUNNER + [f"exp_dir={exp_dir}", f"{LOOP}.max_epochs=100", f"{TOY_MODEL}.sleep_per_batch_s=0.5"],
        cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lock = exp_dir / LOCK_FILE
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    holder = json.loads(lock.read_text())
    assert holder["pid"] == first.pid

    second = toy_run(exp_dir, cwd=tmp_path)
    line = assert_reported(second)
    assert f"is in use by another run: PID {first.pid} on host {holder['host']}" in line
    assert "Resuming" not in second.stdout + second.stderr  # it read nothing, wrote nothing
    assert first.poll() is None, "the first run goes on"
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 143, first_err
    assert lock.read_text() == ""  # released


def test_lock_of_a_killed_run_is_taken_over_and_its_temporary_files_removed(tmp_path):
    exp_dir = tmp_path / "run"
    killed = subprocess.Popen(
        TOY_RUNNER + [f"exp_dir={exp_dir}", f"{TOY_MODEL}.sleep_per_batch_s=0.3"],
        cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    lock = exp_dir / LOCK_FILE
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    # what a writer killed between its temporary file and the rename leaves
    (exp_dir / ".tmp_overrides.yamlk2j3h4").write_text("- half")
    (exp_dir / ".tmp_checkpoint_epoch_00000000.pthx8y9").write_bytes(b"PK\x03\x04")
    (exp_dir / "notes.txt").write_text("mine")

    result = toy_run(exp_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Taking over the lock of exp_dir {exp_dir} from PID {killed.pid}" in result.stdout + result.stderr
    assert not [name for name in os.listdir(exp_dir) if name.startswith(".tmp_")]
    assert (exp_dir / "notes.txt").read_text() == "mine"


def test_exp_dir_under_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "results").write_text("a file, not a folder")
    exp_dir = tmp_path / "results" / "run"
    line = assert_reported(toy_run(exp_dir, cwd=tmp_path))
    assert line == f"recon_runner: error: exp_dir={exp_dir}: cannot create the folder: Not a directory"


def test_visualizer_on_a_run_without_checkpoint_is_one_line(tmp_path):
    exp_dir = tmp_path / "run"
    exp_dir.mkdir()
    # what `recon_runner ... training_loop_ReconTrainingLoop_args.store_checkpoints=false` leaves
    OmegaConf.save(Experiment(**get_default_args(Experiment)).resolved_config(), exp_dir / "expconfig.yaml")
    line = assert_reported(run(VISUALIZER + [f"exp_dir={exp_dir}"], cwd=tmp_path), prog="recon_visualizer")
    assert line.startswith(f"recon_visualizer: error: exp_dir {exp_dir} holds no checkpoint to visualise")
    line = assert_reported(run(VISUALIZER + [f"exp_dir={tmp_path / 'nothing'}"], cwd=tmp_path), prog="recon_visualizer")
    assert "no saved config at" in line


def test_debug_flag_adds_the_traceback(tmp_path):
    (tmp_path / "results").write_text("a file, not a folder")
    result = run(TOY_RUNNER + ["--debug", f"exp_dir={tmp_path / 'results' / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("recon_runner: error: exp_dir=")
