"""TrainingStats: per-epoch averages, the status line, the saved state and the plot."""
from recon_trainer.training.stats import TrainingStats, status_line


def test_epoch_averages_and_update_counts():
    stats = TrainingStats()
    stats.start_epoch(0)
    stats.update("train", {"objective": 1.0, "loss_rgb_psnr": 20.0})
    stats.update("train", {"objective": 3.0})
    stats.update("val", {"psnr": 25.0})
    assert stats.averages("train") == {"objective": 2.0, "loss_rgb_psnr": 20.0}
    finished = stats.end_epoch()
    assert finished == {"train": {"objective": 2.0, "loss_rgb_psnr": 20.0}, "val": {"psnr": 25.0}}
    assert stats.history["train"]["objective"] == {0: 2.0} and stats.n_updates == {"train": {0: 2}, "val": {0: 1}}


def test_state_round_trip_keeps_an_open_epoch():
    stats = TrainingStats()
    stats.start_epoch(4)
    stats.update("train", {"objective": 1.0})
    restored = TrainingStats()
    restored.load_state_dict(stats.state_dict())
    restored.update("train", {"objective": 2.0})
    assert restored.epoch == 4 and restored.end_epoch() == {"train": {"objective": 1.5}}


def test_status_line_format():
    values = {"loss_rgb_psnr": 23.12345, "objective": 0.1234, "lr": 0.0005}
    assert status_line("train", 3, values, 10, 100) == (
        "[train] | epoch   3 | it   10/100 | objective: 0.1234 | rgb_psnr: 23.123 | lr: 0.0005"
    )
    assert status_line("val", 12, {"psnr": 30.0}) == "[val] | epoch  12 | psnr: 30"


def test_plot_writes_a_png(tmp_path):
    stats = TrainingStats()
    for epoch in range(3):
        stats.start_epoch(epoch)
        stats.update("train", {"objective": 1.0 / (epoch + 1)})
        stats.update("val", {"objective": 2.0 / (epoch + 1), "psnr": 20.0 + epoch})
        stats.end_epoch()
    stats.plot(str(tmp_path / "train_stats.png"))
    assert (tmp_path / "train_stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
