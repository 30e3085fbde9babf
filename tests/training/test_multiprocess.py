"""Two CPU processes (torchrun; accelerate uses gloo): gradients are averaged, so the result
equals one process training on the combined batches; only the main process writes files.

(`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.x unless
mpirun is set up, so the test launches with torchrun, which `accelerate launch --multi_gpu`
also uses underneath.)"""
import json
import os
import socket
import subprocess
import sys

import torch

from recon_trainer.experiment import Experiment

from .helpers import final_checkpoint
from .test_kill_resume import CONFIGS, LOOP, MODEL, environment
from .toy_plugin import toy_config

DATA = "data_source_ToyDataSource_args"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_with_the_combined_batch(tmp_path):
    common = {"max_epochs": 1, "test_when_finished": True}
    exp_dir = tmp_path / "two"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "tests.training.launch_toy", "--config-path", CONFIGS, "--config-name", "toy_experiment",
        f"exp_dir={exp_dir}", f"{DATA}.batch_size=4", f"{DATA}.shuffle=false", f"{MODEL}.input_noise_std=0.0",
        "optimizer_factory_ReconOptimizerFactory_args.breed=SGD",
        *[f"{LOOP}.{key}={str(value).lower()}" for key, value in common.items()],
    ]
    writes_log = tmp_path / "writes"
    env = dict(environment(), RECON_TEST_WRITES_LOG=str(writes_log), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    one = toy_config(tmp_path / "one", **common)
    one[DATA].batch_size = 8
    one[DATA].shuffle = False
    one.model_factory_ReconModelFactory_args.model_ToyModel_args.input_noise_std = 0.0
    one.optimizer_factory_ReconOptimizerFactory_args.breed = "SGD"
    Experiment(**one).run()

    two_state, one_state = final_checkpoint(exp_dir), final_checkpoint(tmp_path / "one")
    assert two_state.global_step == one_state.global_step == 3
    for name, value in one_state.model.items():
        torch.testing.assert_close(two_state.model[name], value, rtol=1e-5, atol=1e-6)
    # validation: each process scores its half of the val split; the averages agree
    val_two, val_one = two_state.stats["history"]["val"]["mse"][0], one_state.stats["history"]["val"]["mse"][0]
    assert abs(val_two - val_one) < 1e-5
    assert json.loads((exp_dir / "results_test.json").read_text())[0]["metrics"]["mse"] > 0

    # process 1 wrote nothing into exp_dir; process 0 wrote the config, checkpoints, plot and results
    with open(f"{writes_log}.rank1") as f:
        rank1_writes = json.load(f)
    assert [path for path in rank1_writes if str(exp_dir) in path] == []  # the lock file included: taken once
    assert (exp_dir / ".lock").read_text() == ""  # released by process 0
    assert {"expconfig.yaml", "overrides.yaml", "train_stats.png", "results_test.json"} <= set(os.listdir(exp_dir))
