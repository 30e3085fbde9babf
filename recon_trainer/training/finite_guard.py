"""The finite-loss guard: a NaN or infinite objective stops the run before the optimizer steps."""
from typing import Any, List, Mapping

import torch
from accelerate import Accelerator


class NonFiniteLossError(RuntimeError):
    """The objective of a training batch is NaN or infinite."""


def check_finite_objective(
    preds: Mapping[str, Any],
    *,
    epoch: int,
    batch_index: int,
    batch: Any,
    accelerator: Accelerator,
    last_checkpoint: str,
) -> None:
    """Raise NonFiniteLossError when preds["objective"] is not finite in any process.

    The processes agree first (one tiny all-reduce when there are several), so that all of
    them stop together instead of some waiting forever in the next gradient exchange. The
    message names the epoch, the batch, its frames (sequence_name/frame_number, when the
    batch has them) and every loss term's value.
    """
    finite = torch.isfinite(preds["objective"].detach()).all().reshape(1)
    if accelerator.num_processes > 1:
        finite = accelerator.gather(finite).all()
    if bool(finite):
        return
    where = f"epoch {epoch}, batch {batch_index}"
    if accelerator.num_processes > 1:
        where += f" (process {accelerator.process_index})"
    frames = _frame_ids(batch)
    if frames:
        where += f", frames {', '.join(frames)}"
    terms = ", ".join(
        f"{name}={_value(value)}"
        for name, value in preds.items()
        if name == "objective" or name.startswith("loss_")
    )
    raise NonFiniteLossError(
        f"Non-finite objective at {where}: {terms}. The optimizer did not step and no checkpoint of "
        f"this state was written (last checkpoint: {last_checkpoint}). Rerun with detect_anomaly=True to "
        f"find the operation that produced it."
    )


def _value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return f"<tensor of shape {tuple(value.shape)}>"
        return f"{value.detach().float().item():.6g}"
    return repr(value)


def _frame_ids(batch: Any) -> List[str]:
    """"sequence/frame" for each frame of a batch with sequence_name and frame_number."""
    names = getattr(batch, "sequence_name", None)
    numbers = getattr(batch, "frame_number", None)
    if names is None or numbers is None:
        return []
    names = [names] if isinstance(names, str) else list(names)
    numbers = numbers.reshape(-1).tolist() if isinstance(numbers, torch.Tensor) else [numbers]
    if len(names) != len(numbers):
        return []
    return [f"{name}/{number}" for name, number in zip(names, numbers)]
