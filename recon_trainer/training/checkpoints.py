"""Training checkpoints: one file per save, holding everything a run needs to continue exactly.

Files in exp_dir (the epoch number has 8 digits, like Implicitron's model_epoch_<8 digits>.pth):

    checkpoint_epoch_00000003.pth                  after epoch 3 (validation and LR step done)
    checkpoint_epoch_00000004_batch_00000040.pth   40 batches into epoch 4 (a mid-epoch save)

Each file is written to a temporary file (`.tmp_...`) in the same folder, flushed to disk and
renamed, so a file with a checkpoint name is always complete; leftover temporary files of a
killed run are ignored and removed by the next purge. A checkpoint holds only tensors and plain
values and is read with `torch.load(weights_only=True)`.
"""
import collections
import dataclasses
import hashlib
import logging
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
import yaml

from recon_trainer.fileio import atomic_path
from recon_trainer.training.distributed import is_main_process

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TEMP_PREFIX = ".tmp_"  # the prefix of atomic_path's temporary files
_NAME = re.compile(r"^checkpoint_epoch_(\d{8})(?:_batch_(\d{8}))?\.pth$")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or lacks what a checkpoint holds."""


@dataclasses.dataclass
class TrainingCheckpoint:
    """The state of a run after `batches_done` batches of epoch `epoch`.

    epoch_finished: the epoch's training, validation and LR step are done; the run continues
        with epoch + 1.
    global_step: optimizer steps taken since the start of the run.
    model / optimizer / scheduler / grad_scaler: state dicts (None when there is none; the
        gradient scaler exists with mixed_precision="fp16").
    stats: `TrainingStats.state_dict()`; rng: `random_state.get_rng_state()` at the save.
    config_yaml / config_digest: the experiment's resolved config and its sha256; a resumed run
        with another digest is told which keys differ.
    path: the file it was read from ("" before it is saved).
    """

    epoch: int
    batches_done: int
    epoch_finished: bool
    global_step: int
    model: Dict[str, torch.Tensor]
    optimizer: Optional[Dict[str, Any]] = None
    scheduler: Optional[Dict[str, Any]] = None
    grad_scaler: Optional[Dict[str, Any]] = None
    stats: Dict[str, Any] = dataclasses.field(default_factory=dict)
    rng: Dict[str, Any] = dataclasses.field(default_factory=dict)
    config_yaml: str = ""
    config_digest: str = ""
    path: str = ""

    @property
    def resume_position(self) -> Tuple[int, int]:
        """(epoch, batch index) where training continues."""
        return (self.epoch + 1, 0) if self.epoch_finished else (self.epoch, self.batches_done)

    def file_name(self) -> str:
        return checkpoint_file_name(self.epoch, None if self.epoch_finished else self.batches_done)


class CheckpointFile(NamedTuple):
    """A checkpoint file found in exp_dir; batches_done is None for an end-of-epoch one."""

    path: str
    epoch: int
    batches_done: Optional[int]

    @property
    def order(self) -> Tuple[int, float]:
        return (self.epoch, float("inf") if self.batches_done is None else self.batches_done)


def checkpoint_file_name(epoch: int, batches_done: Optional[int] = None) -> str:
    """The file name of the checkpoint after epoch `epoch` (or `batches_done` batches into it)."""
    mid_epoch = "" if batches_done is None else f"_batch_{batches_done:08d}"
    return f"checkpoint_epoch_{epoch:08d}{mid_epoch}.pth"


def list_checkpoints(exp_dir: str) -> List[CheckpointFile]:
    """The checkpoint files in exp_dir, oldest first (temporary files are not listed)."""
    if not os.path.isdir(exp_dir):
        return []
    found = []
    for name in os.listdir(exp_dir):
        match = _NAME.match(name)
        if match:
            batches = None if match.group(2) is None else int(match.group(2))
            found.append(CheckpointFile(os.path.join(exp_dir, name), int(match.group(1)), batches))
    return sorted(found, key=lambda f: f.order)


def save_checkpoint(checkpoint: TrainingCheckpoint, exp_dir: str) -> str:
    """Write `checkpoint` into exp_dir atomically (temporary file, fsync, rename); its path."""
    os.makedirs(exp_dir, exist_ok=True)
    path = os.path.join(exp_dir, checkpoint.file_name())
    content = {field.name: getattr(checkpoint, field.name) for field in dataclasses.fields(checkpoint)}
    content.pop("path")
    content["format_version"] = FORMAT_VERSION
    with atomic_path(path) as temp_path:
        torch.save(content, temp_path)
    checkpoint.path = path
    return path


def load_checkpoint(path: str) -> TrainingCheckpoint:
    """Read a checkpoint (tensors on the CPU); CorruptCheckpointError when it is unreadable."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001  (a damaged file fails in the zip reader or the unpickler, variously)
        raise CorruptCheckpointError(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    if not isinstance(content, dict) or content.get("format_version") != FORMAT_VERSION:
        raise CorruptCheckpointError(f"not a checkpoint of format version {FORMAT_VERSION}")
    fields = {field.name for field in dataclasses.fields(TrainingCheckpoint)} - {"path"}
    missing = sorted(fields - set(content))
    if missing:
        raise CorruptCheckpointError(f"missing entries {missing}")
    return TrainingCheckpoint(path=path, **{name: content[name] for name in fields})


def find_checkpoint(exp_dir: str, epoch: Optional[int] = None) -> Optional[TrainingCheckpoint]:
    """The checkpoint to resume from: the newest readable one, or the end of epoch `epoch`.

    An unreadable file is reported (one warning naming it) and the next older one is tried.
    None when there is none. A chosen epoch whose file is missing or unreadable is an error.
    """
    if epoch is not None:
        path = os.path.join(exp_dir, checkpoint_file_name(epoch))
        if not os.path.isfile(path):
            finished = [f.epoch for f in list_checkpoints(exp_dir) if f.batches_done is None]
            raise FileNotFoundError(
                f"resume_epoch={epoch}: there is no checkpoint {path}; end-of-epoch checkpoints in "
                f"{exp_dir}: {finished or 'none'}"
            )
        try:
            return load_checkpoint(path)
        except CorruptCheckpointError as error:
            raise CorruptCheckpointError(f"resume_epoch={epoch}: checkpoint {path} is unreadable ({error})") from None
    for found in reversed(list_checkpoints(exp_dir)):
        try:
            return load_checkpoint(found.path)
        except (CorruptCheckpointError, FileNotFoundError) as error:
            if is_main_process():  # every process reads it; one reports it
                logger.warning("Skipping unreadable checkpoint %s (%s); trying the next older one.", found.path, error)
    return None


def purge_checkpoints(exp_dir: str, keep_last: int) -> None:
    """Delete what is no longer needed: temporary files, mid-epoch checkpoints older than the
    newest checkpoint and all but the newest `keep_last` end-of-epoch ones (0 keeps them all)."""
    for name in os.listdir(exp_dir):
        if name.startswith(TEMP_PREFIX + "checkpoint_epoch_"):
            os.unlink(os.path.join(exp_dir, name))
    files = list_checkpoints(exp_dir)
    if not files:
        return
    newest = files[-1]
    finished = [f for f in files if f.batches_done is None]
    doomed = [f for f in files if f.batches_done is not None and f != newest]
    if keep_last > 0:
        doomed += finished[:-keep_last]
    for found in doomed:
        os.unlink(found.path)


def remove_checkpoints(exp_dir: str) -> int:
    """Delete every checkpoint file in exp_dir (a run that starts afresh); how many there were."""
    files = list_checkpoints(exp_dir)
    for found in files:
        os.unlink(found.path)
    return len(files)


def scheduler_state_dict(scheduler: torch.optim.lr_scheduler.LRScheduler) -> Dict[str, Any]:
    """The scheduler's state dict with Counters (MultiStepLR's milestones) as plain dicts, which
    `weights_only` loading accepts."""
    return {k: dict(v) if isinstance(v, collections.Counter) else v for k, v in scheduler.state_dict().items()}


def load_scheduler_state_dict(scheduler: torch.optim.lr_scheduler.LRScheduler, state: Dict[str, Any]) -> None:
    """Inverse of `scheduler_state_dict`: Counters become Counters again."""
    current = vars(scheduler)
    scheduler.load_state_dict(
        {k: collections.Counter(v) if isinstance(current.get(k), collections.Counter) else v for k, v in state.items()}
    )


def restore_optimizer_and_scheduler(
    checkpoint: TrainingCheckpoint,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
) -> None:
    """Load the optimizer's and the scheduler's states (learning rates included) from `checkpoint`."""
    if checkpoint.optimizer is not None:
        optimizer.load_state_dict(checkpoint.optimizer)
    if scheduler is not None and checkpoint.scheduler is not None:
        load_scheduler_state_dict(scheduler, checkpoint.scheduler)


def config_digest(config_yaml: str) -> str:
    """sha256 of a config's YAML text."""
    return hashlib.sha256(config_yaml.encode("utf-8")).hexdigest()


def config_differences(old_yaml: str, new_yaml: str) -> List[str]:
    """Dotted keys whose values differ between two YAML configs, each as `key: old -> new`."""
    old, new = _flatten(yaml.safe_load(old_yaml) or {}), _flatten(yaml.safe_load(new_yaml) or {})
    missing = object()
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            lines.append(f"{key}: {_show(before, missing)} -> {_show(after, missing)}")
    return lines


def _show(value: Any, missing: object) -> str:
    return "(absent)" if value is missing else repr(value)


def _flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(tree, dict) and tree:
        flat: Dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}
