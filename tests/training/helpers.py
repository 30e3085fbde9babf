"""Comparisons of training checkpoints shared by the trainer's tests."""
import torch

from recon_trainer.training.checkpoints import TrainingCheckpoint, list_checkpoints, load_checkpoint


def final_checkpoint(exp_dir) -> TrainingCheckpoint:
    return load_checkpoint(list_checkpoints(str(exp_dir))[-1].path)


def without_timing(stats):
    """The stats history without the wall-time entry, which differs from run to run."""
    return {s: {k: v for k, v in by_name.items() if k != "sec/it"} for s, by_name in stats["history"].items()}


def assert_same_state(a: TrainingCheckpoint, b: TrainingCheckpoint) -> None:
    """The same position, weights, optimizer state, learning rates and stats (bit for bit)."""
    assert (a.epoch, a.batches_done, a.epoch_finished, a.global_step) == (
        b.epoch, b.batches_done, b.epoch_finished, b.global_step
    )
    assert a.model.keys() == b.model.keys()
    for name in a.model:
        assert torch.equal(a.model[name], b.model[name]), name
    for key, state in a.optimizer["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b.optimizer["state"][key][name])), (key, name)
    assert [g["lr"] for g in a.optimizer["param_groups"]] == [g["lr"] for g in b.optimizer["param_groups"]]
    assert without_timing(a.stats) == without_timing(b.stats)
    assert a.stats["n_updates"] == b.stats["n_updates"]
