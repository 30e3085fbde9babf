"""The finite guard: a NaN or infinite objective or model output stops the run before the
optimizer steps, with one message that says where, what, and what to try."""
from typing import TYPE_CHECKING, Any, List, Mapping, Optional

import torch

from recon_trainer.errors import NonFiniteError

if TYPE_CHECKING:  # accelerate is imported where a run starts: --cfg job and --help never load it
    from accelerate import Accelerator

DIVERGED_MAGNITUDE = 1e8  # parameters this large are taken as a sign of a diverged optimizer step


class NonFiniteLossError(NonFiniteError):
    """The objective or a model output of a training batch is NaN or infinite."""


def check_finite_step(
    preds: Mapping[str, Any],
    output_problem: Optional[str],
    *,
    epoch: int,
    batch_index: int,
    batch: Any,
    accelerator: "Accelerator",
    model: torch.nn.Module,
    last_checkpoint: str,
) -> None:
    """Raise NonFiniteLossError when, in any process, the model reported a non-finite output
    (`output_problem`, from a NonFiniteError the forward raised before a loss that would fail
    on it) or preds["objective"] is not finite.

    The processes agree first (one tiny all-reduce when there are several), so that all of
    them stop together instead of some waiting forever in the next gradient exchange. The
    message names the epoch, the batch, its frames (sequence_name/frame_number, when the
    batch has them), every loss term's value or the bad output, and whether the model's
    parameters are still finite (when not, the previous optimizer step diverged).
    """
    if output_problem is None:
        finite = torch.isfinite(preds["objective"].detach()).all().reshape(1)
    else:
        finite = torch.zeros(1, dtype=torch.bool, device=accelerator.device)
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
    if output_problem is not None:
        what = f"Non-finite model output at {where}: {output_problem}"
    elif "objective" in preds and torch.isfinite(preds["objective"].detach()).all():
        what = f"Non-finite objective in another process at {where}"
    else:
        terms = ", ".join(
            f"{name}={_value(value)}"
            for name, value in preds.items()
            if name == "objective" or name.startswith("loss_")
        )
        what = f"Non-finite objective at {where}: {terms}"
    raise NonFiniteLossError(
        f"{what}.{_parameter_health(model)} The optimizer did not step and no checkpoint of this state was written "
        f"(last checkpoint: {last_checkpoint}). Rerun with detect_anomaly=true to find the operation that produced it."
    )


def _parameter_health(model: torch.nn.Module) -> str:
    """" The parameters ...": how many parameter tensors hold NaN or inf, else the largest
    magnitude, with a hint when they look diverged ("" for a model without parameters)."""
    params = [p.detach() for p in model.parameters() if p.numel()]
    if not params:
        return ""
    bad = sum(not bool(torch.isfinite(p).all()) for p in params)
    largest = max(float(p.abs().max()) for p in params) if not bad else float("inf")
    if bad:
        state = f"{bad} of {len(params)} parameter tensors hold NaN or inf"
    else:
        state = f"The largest parameter magnitude is {largest:.3g}"
    if largest < DIVERGED_MAGNITUDE:
        return f" {state}."
    return f" {state}: an earlier optimizer step diverged (lower the learning rate, or clip gradients with clip_grad)."


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


def gradients_finite(model: torch.nn.Module) -> bool:
    """Whether every gradient of `model` is finite (one device sync). After the backward pass of
    several processes the gradients are averaged, so every process gets the same answer."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())

