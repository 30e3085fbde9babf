"""Timing helpers shared by the benchmarks in tools/ (imported as `bench_timing`: run the benchmarks
as scripts, `python tools/bench_X.py`, so that tools/ is on the import path)."""
from __future__ import annotations

import resource
import time
from typing import Any, Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(call: Callable[[], object], steps: int, device: torch.device) -> float:
    """Mean wall time of `call` over `steps` calls, after one untimed warm-up call."""
    call()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        call()
    sync(device)
    return (time.perf_counter() - start) / steps


def training_step(model: torch.nn.Module, batch: Any, optimizer: torch.optim.Optimizer, autocast: Any,
                  before: Optional[Callable[[], None]] = None) -> Callable[[], None]:
    """A call for seconds_per_call: `before()` (if given), the model's forward on `batch` in TRAINING
    mode under `autocast` (a torch.autocast context), backward of preds["objective"], optimizer step."""
    from recon_trainer.models.base import EvaluationMode  # imported here: the package is slow to import

    def step() -> None:
        if before is not None:
            before()
        with autocast:
            preds = model(batch, evaluation_mode=EvaluationMode.TRAINING)
        optimizer.zero_grad(set_to_none=True)
        preds["objective"].backward()
        optimizer.step()

    return step


def flops_of(call: Callable[[], object], device: torch.device) -> float:
    """FLOPs of one `call`, counted by torch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        call()
    sync(device)
    return float(counter.get_total_flops())


def peak_memory_mib(device: torch.device) -> float:
    """Peak allocated memory (CUDA) or peak resident memory of the process (CPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(device: torch.device) -> str:
    """The GPU's name, or "cpu"."""
    return torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
