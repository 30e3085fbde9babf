"""Checkpoint files: atomic writes, listing, skipping unreadable ones, purging, config diffs."""
import logging
import os
import random

import numpy as np
import pytest
import torch

from recon_trainer.errors import RunDirectoryError
from recon_trainer.fileio import remove_temporary_files
from recon_trainer.training.checkpoints import (
    TrainingCheckpoint,
    checkpoint_file_name,
    checkpoint_problem,
    config_differences,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    purge_checkpoints,
    restore_optimizer_and_scheduler,
    save_checkpoint,
    scheduler_state_dict,
)
from recon_trainer.training.random_state import get_rng_state, set_rng_state


def make_checkpoint(epoch, batches_done=None, value=0.0):
    return TrainingCheckpoint(
        epoch=epoch,
        batches_done=batches_done or 0,
        epoch_finished=batches_done is None,
        global_step=10 * epoch + (batches_done or 0),
        model={"w": torch.full((2,), value)},
        rng=get_rng_state(),
        config_yaml="a: 1\n",
    )


def names(folder):
    return sorted(os.listdir(folder))


def readable(path):
    return checkpoint_problem(path) is None


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_save_is_atomic_and_loads_with_weights_only(tmp_path):
    path = save_checkpoint(make_checkpoint(3, value=1.5), str(tmp_path))
    assert names(tmp_path) == ["checkpoint_epoch_00000003.pth"]  # no temporary file left
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert loaded.epoch == 3 and loaded.epoch_finished and loaded.resume_position == (4, 0)
    assert torch.equal(loaded.model["w"], torch.full((2,), 1.5)) and loaded.path == path
    mid = load_checkpoint(save_checkpoint(make_checkpoint(4, batches_done=7), str(tmp_path)))
    assert mid.resume_position == (4, 7) and not mid.epoch_finished


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    checkpoint = make_checkpoint(0)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    path = save_checkpoint(checkpoint, str(tmp_path))
    random.random(), np.random.rand(), torch.rand(3)  # move every generator on
    set_rng_state(load_checkpoint(path).rng)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_listing_orders_mid_epoch_before_the_epoch_end_and_ignores_temporary_files(tmp_path):
    for name in [checkpoint_file_name(1), checkpoint_file_name(2, 5), checkpoint_file_name(2), checkpoint_file_name(0),
                 ".tmp_" + checkpoint_file_name(3) + "abc", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    found = [(f.epoch, f.batches_done) for f in list_checkpoints(str(tmp_path))]
    assert found == [(0, None), (1, None), (2, 5), (2, None)]


def test_partial_temporary_file_is_ignored_by_resume(tmp_path):
    save_checkpoint(make_checkpoint(1, value=1.0), str(tmp_path))
    (tmp_path / (".tmp_" + checkpoint_file_name(2) + "x1y2")).write_bytes(b"PK\x03\x04 half a zip")
    assert find_checkpoint(str(tmp_path)).epoch == 1
    assert remove_temporary_files(str(tmp_path)) == [".tmp_" + checkpoint_file_name(2) + "x1y2"]  # the next start
    assert names(tmp_path) == [checkpoint_file_name(1)]


def test_truncated_checkpoint_is_skipped_with_one_warning_naming_it(tmp_path, caplog):
    save_checkpoint(make_checkpoint(1, value=1.0), str(tmp_path))
    newest = save_checkpoint(make_checkpoint(2, value=2.0), str(tmp_path))
    truncate(newest)
    with caplog.at_level(logging.WARNING):
        found = find_checkpoint(str(tmp_path))
    assert found.epoch == 1 and torch.equal(found.model["w"], torch.ones(2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"Skipping unreadable checkpoint {newest}: ")


def test_chosen_epoch(tmp_path):
    for epoch in range(3):
        save_checkpoint(make_checkpoint(epoch, value=float(epoch)), str(tmp_path))
    assert find_checkpoint(str(tmp_path), epoch=1).epoch == 1
    with pytest.raises(RunDirectoryError, match=r"resume_epoch=7: .*end-of-epoch checkpoints in .*: \[0, 1, 2\]"):
        find_checkpoint(str(tmp_path), epoch=7)


def test_only_unreadable_checkpoints_refuse_and_list_every_file(tmp_path):
    paths = [save_checkpoint(make_checkpoint(epoch), str(tmp_path)) for epoch in range(2)]
    truncate(paths[0])
    (tmp_path / checkpoint_file_name(1)).write_bytes(b"not a zip")
    with pytest.raises(RunDirectoryError) as raised:
        find_checkpoint(str(tmp_path))
    message = str(raised.value)
    assert "none can be read; nothing was changed" in message and "resume=false" in message
    assert all(path in message for path in paths) and names(tmp_path) == [os.path.basename(p) for p in paths]


def test_no_checkpoint(tmp_path):
    assert find_checkpoint(str(tmp_path)) is None and find_checkpoint(str(tmp_path / "absent")) is None


def test_keep_last_k_and_mid_epoch_purge(tmp_path):
    folder = str(tmp_path)
    for epoch in range(4):
        save_checkpoint(make_checkpoint(epoch, batches_done=3), folder)
        purge_checkpoints(folder, keep_last=2, readable=readable)
        save_checkpoint(make_checkpoint(epoch, batches_done=6), folder)
        purge_checkpoints(folder, keep_last=2, readable=readable)
        # only the newest mid-epoch checkpoint is kept
        assert names(tmp_path)[-1] == checkpoint_file_name(epoch, 6)
        assert checkpoint_file_name(epoch, 3) not in names(tmp_path)
        save_checkpoint(make_checkpoint(epoch), folder)
        purge_checkpoints(folder, keep_last=2, readable=readable)
    assert names(tmp_path) == [checkpoint_file_name(2), checkpoint_file_name(3)]
    purge_checkpoints(folder, keep_last=1, readable=readable)
    assert names(tmp_path) == [checkpoint_file_name(3)]


def test_keep_all(tmp_path):
    for epoch in range(3):
        save_checkpoint(make_checkpoint(epoch), str(tmp_path))
        purge_checkpoints(str(tmp_path), keep_last=0, readable=readable)
    assert len(names(tmp_path)) == 3


def test_unreadable_files_are_neither_counted_nor_deleted(tmp_path):
    folder = str(tmp_path)
    for epoch in range(3):
        save_checkpoint(make_checkpoint(epoch), folder)
    truncate(os.path.join(folder, checkpoint_file_name(2)))
    save_checkpoint(make_checkpoint(3), folder)
    purge_checkpoints(folder, keep_last=2, readable=readable)
    # the good epochs 1 and 3 are the two kept; the unreadable epoch 2 stays, epoch 0 goes
    assert names(tmp_path) == [checkpoint_file_name(epoch) for epoch in (1, 2, 3)]


def test_config_differences_lists_dotted_keys():
    old = "seed: 1\nopt:\n  lr: 0.1\n  betas: [0.9, 0.99]\nloop:\n  gone: 1\n"
    new = "seed: 1\nopt:\n  lr: 0.2\n  betas: [0.9, 0.999]\nloop:\n  added: true\n"
    assert config_differences(old, new) == [
        "loop.added: (absent) -> True",
        "loop.gone: 1 -> (absent)",
        "opt.betas: [0.9, 0.99] -> [0.9, 0.999]",
        "opt.lr: 0.1 -> 0.2",
    ]
    assert config_differences(old, old) == []


def test_restore_keeps_the_configured_hyperparameters_and_rescales_the_rate():
    param = torch.nn.Parameter(torch.zeros(2))

    def build(lr, weight_decay):
        optimizer = torch.optim.Adam([param], lr=lr, weight_decay=weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5**epoch)

    optimizer, scheduler = build(0.1, 0.0)
    for _ in range(2):
        param.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
    saved = TrainingCheckpoint(epoch=1, batches_done=0, epoch_finished=True, global_step=2, model={},
                               optimizer=optimizer.state_dict(), scheduler=scheduler_state_dict(scheduler))
    resumed, resumed_scheduler = build(0.4, 0.01)  # the config changed lr and weight_decay
    assert restore_optimizer_and_scheduler(saved, resumed, resumed_scheduler) == []
    group = resumed.param_groups[0]
    assert group["lr"] == pytest.approx(0.4 * 0.25) and group["weight_decay"] == 0.01 and group["initial_lr"] == 0.4
    assert torch.equal(resumed.state[param]["exp_avg"], optimizer.state[param]["exp_avg"])
    resumed_scheduler.step()
    assert group["lr"] == pytest.approx(0.4 * 0.125)

    sgd = torch.optim.SGD([param], lr=0.3)  # another optimizer type: its moments start afresh
    (note,) = restore_optimizer_and_scheduler(saved, sgd, None)
    assert "was not restored" in note and not sgd.state and sgd.param_groups[0]["lr"] == 0.3
