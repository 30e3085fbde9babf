"""The run's accelerate.Accelerator and what it wraps (one process, or several under `accelerate launch`)."""
import dataclasses
from typing import TYPE_CHECKING, Any, Optional, Tuple

import torch

from recon_trainer.data.data_source import DataLoaderMap

if TYPE_CHECKING:  # accelerate is imported where a run starts: --cfg job and --help never load it
    from accelerate import Accelerator


def create_accelerator(**kwargs: Any) -> "Accelerator":
    """A new Accelerator with `kwargs` (mixed_precision, gradient_accumulation_steps, ...).

    accelerate keeps one settings state per process and refuses to change it; it is cleared
    first so that another experiment in the same process (tests, notebooks) may choose other
    settings. The process group of a multi-process launch is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(**kwargs)


def prepare_for_training(
    accelerator: "Accelerator",
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataloaders: DataLoaderMap,
) -> Tuple[torch.nn.Module, torch.optim.Optimizer, DataLoaderMap]:
    """Wrap the model (DDP, autocast), the optimizer and the train / val loaders (split across
    processes) for the accelerator. The test loaders stay whole: the main process evaluates them."""
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, dataclasses.replace(
        dataloaders,
        train=_prepare_loader(accelerator, dataloaders.train),
        val=_prepare_loader(accelerator, dataloaders.val),
    )


def _prepare_loader(accelerator: "Accelerator", loader: Optional[Any]) -> Optional[Any]:
    """A torch DataLoader is wrapped; another iterable of batches is returned as it is."""
    return None if loader is None else accelerator.prepare(loader)
