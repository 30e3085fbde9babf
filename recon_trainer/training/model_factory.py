"""The model_factory slot of Experiment: builds the model to train, restored from a checkpoint."""
import abc
import logging
from typing import Dict, Optional

import torch

from recon_trainer.config import ReplaceableBase, registry, run_auto_creation
from recon_trainer.errors import RunDirectoryError
from recon_trainer.models.base import ModelBase
from recon_trainer.training.checkpoints import TrainingCheckpoint, find_checkpoint

logger = logging.getLogger(__name__)


class ModelFactoryBase(ReplaceableBase):
    """Builds the model to train (and restores it from a checkpoint where that applies)."""

    @abc.abstractmethod
    def __call__(self, *, exp_dir: str) -> torch.nn.Module:
        """The model; `exp_dir` holds the experiment's outputs and checkpoints."""

    def resumed_checkpoint(self) -> Optional[TrainingCheckpoint]:
        """The checkpoint the last call restored the model from (the experiment restores the
        optimizer, scheduler, stats and random state from it); None for a fresh model."""
        return None


@registry.register
class ReconModelFactory(ModelFactoryBase):
    """Builds `model` and, when a checkpoint of this experiment exists, loads its weights.

    The newest readable checkpoint in exp_dir is used (an unreadable one is reported and the
    next older one tried), or the end-of-epoch checkpoint of `resume_epoch`; when checkpoint
    files exist but none can be read, the run refuses to start. With resume=false the model
    starts afresh, and a training run first moves the earlier checkpoints (and that run's
    config files) into exp_dir/earlier_runs/<date_time>/ (see Experiment.run).
    """

    model: ModelBase
    model_class_type: str = "GenericModel"
    resume: bool = True  # continue from the newest readable checkpoint; false: start afresh
    resume_epoch: int = -1  # >= 0: resume from the checkpoint saved after this epoch (it must exist)
    force_resume: bool = False  # resume even if resume=False; fail when exp_dir has no checkpoint

    def __post_init__(self) -> None:
        run_auto_creation(self)
        self._resumed: Optional[TrainingCheckpoint] = None

    def __call__(self, *, exp_dir: str) -> torch.nn.Module:
        model = self.model
        self._resumed = None
        if not (self.resume or self.force_resume):
            return model
        checkpoint = find_checkpoint(exp_dir, self.resume_epoch if self.resume_epoch >= 0 else None)
        if checkpoint is None:
            if self.force_resume:
                raise RunDirectoryError(f"exp_dir {exp_dir} holds no checkpoint to load (force_resume=true)")
            return model
        mismatch = state_dict_mismatch(model, checkpoint.model)
        if mismatch:
            raise RunDirectoryError(
                f"checkpoint {checkpoint.path} does not fit the configured model ({mismatch}): was the model's "
                f"config changed? resume=false starts afresh (the checkpoints are moved aside)"
            )
        model.load_state_dict(checkpoint.model)
        logger.info("Resuming from %s (epoch %d).", checkpoint.path, checkpoint.epoch)
        checkpoint.model = {}  # the weights live in the model now
        self._resumed = checkpoint
        return model

    def resumed_checkpoint(self) -> Optional[TrainingCheckpoint]:
        return self._resumed


def state_dict_mismatch(model: torch.nn.Module, state: Dict[str, torch.Tensor], listed: int = 3) -> str:
    """Why `state` cannot be loaded into `model` strictly, in one line ("" when it can): the
    missing and unexpected keys and the tensors of another shape, a few of each named."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [
        f"{key}: {tuple(getattr(state[key], 'shape', ()))} saved, {tuple(value.shape)} configured"
        for key, value in expected.items()
        if key in state and isinstance(value, torch.Tensor)  # (extra states, e.g. an autodecoder's names, have none)
        and tuple(getattr(state[key], "shape", ())) != tuple(value.shape)
    ]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            more = f", ... ({len(keys) - listed} more)" if len(keys) > listed else ""
            parts.append(f"{len(keys)} {what}: {', '.join(keys[:listed])}{more}")
    return "; ".join(parts)
