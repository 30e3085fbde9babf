"""Loggers read back: tensorboard event files, a local mlflow store, a real visdom server."""
import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from recon_trainer.config import ConfigError
from recon_trainer.experiment import Experiment

from .helpers import final_checkpoint
from .toy_plugin import toy_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_and_mlflow_together_and_across_a_resume(tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = toy_config(tmp_path, max_epochs=1, logging={"loggers": ["console", "tensorboard", "mlflow"],
                                                        "metric_log_interval_steps": 2})
    Experiment(**cfg).run()
    cfg.training_loop_ReconTrainingLoop_args.max_epochs = 2
    Experiment(**cfg).run()  # resumes: the same mlflow run, tensorboard continues
    history = final_checkpoint(tmp_path).stats["history"]

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    expected = {"train/objective", "train/loss_mse", "train/lr", "train/sec/it", "val/mse", "train_step/objective"}
    assert expected <= set(tags)
    objective = [(e.step, e.value) for e in events.Scalars("train/objective")]
    assert [step for step, _ in objective] == [6, 12]  # the global step at the end of each epoch
    assert [value for _, value in objective] == pytest.approx([history["train"]["objective"][e] for e in (0, 1)])
    assert [e.step for e in events.Scalars("train_step/objective")] == [2, 4, 6, 8, 10, 12]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("recon_trainer")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == tmp_path.name and runs[0].info.status == "FINISHED"
    val = client.get_metric_history(runs[0].info.run_id, "val/mse")
    assert [(m.step, m.value) for m in val] == [(6, pytest.approx(history["val"]["mse"][0])),
                                                (12, pytest.approx(history["val"]["mse"][1]))]
    artifacts = [a.path for a in client.list_artifacts(runs[0].info.run_id)]
    assert artifacts == ["expconfig.yaml"] and os.path.isdir(tmp_path / "mlruns")


@pytest.fixture
def visdom_server(tmp_path):
    """A real visdom server on a free localhost port, started without its web-asset download
    (`python -m visdom.server` fetches JS/CSS from CDNs first, which fails offline; the server's
    own `main()` serves the API without them)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from visdom.server.run_server import main; main()", "-port", str(port),
         "--hostname", "127.0.0.1", "-env_path", str(tmp_path / "visdom_envs"), "-logging_level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    server.kill()
    server.wait()


def test_visdom_plots_read_back_from_a_real_server(tmp_path, visdom_server):
    import visdom

    cfg = toy_config(tmp_path / "run", max_epochs=2,
                     logging={"loggers": ["visdom"], "visdom_port": visdom_server, "visdom_env": "toy"})
    Experiment(**cfg).run()
    history = final_checkpoint(tmp_path / "run").stats["history"]
    viz = visdom.Visdom(port=visdom_server, env="toy", use_incoming_socket=False, raise_exceptions=True)
    traces = {t["name"]: t for t in json.loads(viz.get_window_data(win="objective", env="toy"))["content"]["data"]}
    assert traces["train"]["x"] == [0, 1]
    assert traces["train"]["y"] == pytest.approx([history["train"]["objective"][e] for e in (0, 1)])
    val = json.loads(viz.get_window_data(win="mse", env="toy"))["content"]["data"]
    assert [t["name"] for t in val] == ["val"]
    assert val[0]["y"] == pytest.approx([history["val"]["mse"][e] for e in (0, 1)])


def test_visdom_without_a_server_warns_once_then_stays_silent(tmp_path, caplog, capsys):
    cfg = toy_config(tmp_path, max_epochs=2, logging={"loggers": ["console", "visdom"], "visdom_port": free_port()})
    with caplog.at_level(logging.DEBUG):
        Experiment(**cfg).run()
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1 and "visdom logging is off for this run: no server answers" in problems[0].getMessage()
    captured = capsys.readouterr()
    assert "ConnectionError" not in captured.out + captured.err
    assert len(final_checkpoint(tmp_path).stats["history"]["train"]["objective"]) == 2


def test_unknown_logger_is_named(tmp_path):
    message = r"bad value 'wandb' for 'LoggingSettings.loggers\[1\]'; choices: console, tensorboard"
    with pytest.raises(ConfigError, match=message):
        Experiment(**toy_config(tmp_path, logging={"loggers": ["console", "wandb"]}))
