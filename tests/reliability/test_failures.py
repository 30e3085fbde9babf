"""Write failures, non-finite values and a changed config on resume, in real processes."""
import os
import resource

import pytest
import yaml

from recon_trainer.training.checkpoints import checkpoint_file_name, load_checkpoint

from ..training.helpers import final_checkpoint
from .helpers import LOOP, OPT, TOY_MODEL, TOY_RUNNER, assert_reported, file_hashes, run

FILE_SIZE_LIMIT = 200_000  # bytes: above the config files, below a checkpoint of the wide toy model
WIDE = f"{TOY_MODEL}.n_hidden=6000"  # about 600 kB per checkpoint (weights and Adam's moments)


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def toy(exp_dir, *overrides):
    return TOY_RUNNER + [f"exp_dir={exp_dir}", *overrides]


def test_a_failed_checkpoint_write_names_the_file_and_the_reason_and_harms_nothing(tmp_path):
    exp_dir = tmp_path / "run"
    assert run(toy(exp_dir, WIDE, f"{LOOP}.max_epochs=1"), cwd=tmp_path).returncode == 0
    before = file_hashes(exp_dir)
    assert os.path.getsize(exp_dir / checkpoint_file_name(0)) > FILE_SIZE_LIMIT

    # the disk refuses the next checkpoint (a file-size limit stands in for a full disk)
    result = run(toy(exp_dir, WIDE, f"{LOOP}.max_epochs=2"), cwd=tmp_path, preexec_fn=limit_file_size)
    line = assert_reported(result)
    assert line == f"recon_runner: error: cannot write {exp_dir / checkpoint_file_name(1)}: File too large"
    after = file_hashes(exp_dir)
    assert after[checkpoint_file_name(0)] == before[checkpoint_file_name(0)]
    assert not [name for name in after if name.startswith(".tmp_")]

    result = run(toy(exp_dir, WIDE, f"{LOOP}.max_epochs=2"), cwd=tmp_path)  # space again: it carries on
    assert result.returncode == 0, result.stderr
    assert final_checkpoint(exp_dir).epoch == 1


def test_non_finite_objective_is_one_message_with_its_own_exit_code(tmp_path):
    result = run(toy(tmp_path / "run", f"{TOY_MODEL}.nan_at_forward=2"), cwd=tmp_path)
    line = assert_reported(result, code=3)
    assert line.startswith("recon_runner: error: Non-finite objective at epoch 0, batch 2, frames toy_train/")
    assert "objective=nan" in line and "The optimizer did not step" in line


def test_diverged_weights_are_caught_before_a_loss_that_would_crash(tmp_path):
    # lr=1e30: the first step blows the weights up; the next forward's mask is NaN, which
    # binary_cross_entropy would reject with an internal error
    result = run(toy(tmp_path / "run", f"{OPT}.lr=1e30", f"{TOY_MODEL}.mask_bce_weight=1.0"), cwd=tmp_path)
    line = assert_reported(result, code=3)
    assert line.startswith("recon_runner: error: Non-finite model output at epoch 0, batch ")
    assert "the toy mask holds" in line and "an earlier optimizer step diverged" in line


def test_resume_applies_a_changed_learning_rate_and_budget_and_says_so(tmp_path):
    exp_dir = tmp_path / "run"
    assert run(toy(exp_dir, f"{LOOP}.max_epochs=1", f"{OPT}.lr=0.01"), cwd=tmp_path).returncode == 0
    result = run(toy(exp_dir, f"{LOOP}.max_epochs=2", f"{OPT}.lr=0.05"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "differs in 2 key(s); the new values apply from here on" in result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert f"{OPT}.lr: 0.01 -> 0.05" in output and f"{LOOP}.max_epochs: 1 -> 2" in output
    state = final_checkpoint(exp_dir)
    assert state.epoch == 1
    assert state.stats["history"]["train"]["lr"] == {0: 0.01, 1: pytest.approx(0.05)}  # the epoch's average
    assert [group["lr"] for group in state.optimizer["param_groups"]] == [0.05]
    saved = yaml.safe_load((exp_dir / "expconfig.yaml").read_text())
    assert saved["optimizer_factory_ReconOptimizerFactory_args"]["lr"] == 0.05
    assert load_checkpoint(str(exp_dir / checkpoint_file_name(0))).optimizer["param_groups"][0]["lr"] == 0.01
