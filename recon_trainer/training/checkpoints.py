"""Training checkpoints: one file per save, holding everything a run needs to continue exactly.

Files in exp_dir (the epoch number has 8 digits, like Implicitron's model_epoch_<8 digits>.pth):

    checkpoint_epoch_00000003.pth                  after epoch 3 (validation and LR step done)
    checkpoint_epoch_00000004_batch_00000040.pth   40 batches into epoch 4 (a mid-epoch save)

Each file is written to a temporary file (`.tmp_...`) in the same folder, flushed to disk and
renamed, so a file with a checkpoint name is always complete; a killed run's temporary files are
removed when the next run takes exp_dir's lock. A checkpoint holds only tensors and plain values
and is read with `torch.load(weights_only=True)`. A file that cannot be read is never deleted
and never counts among the checkpoints kept.
"""
import collections
import dataclasses
import hashlib
import logging
import os
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
import yaml

from recon_trainer.errors import RunDirectoryError
from recon_trainer.fileio import atomic_torch_save
from recon_trainer.training.distributed import is_main_process

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
OPTIONAL_ENTRIES = ("ema",)  # entries added after format 1 was fixed: a file without them still loads
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
    ema: `WeightEMA.state_dict()` of the weights' moving average (None without one; a file
        written before it existed loads with None).
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
    ema: Optional[Dict[str, Any]] = None
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
    """Write `checkpoint` into exp_dir atomically (temporary file, fsync, rename); its path.
    WriteError (naming the file and the reason) when the disk refuses it; older files stay intact."""
    path = os.path.join(exp_dir, checkpoint.file_name())
    content = {field.name: getattr(checkpoint, field.name) for field in dataclasses.fields(checkpoint)}
    content.pop("path")
    content["format_version"] = FORMAT_VERSION
    atomic_torch_save(content, path)
    checkpoint.path = path
    return path


def load_checkpoint(path: str, *, mmap: bool = False) -> TrainingCheckpoint:
    """Read a checkpoint (tensors on the CPU); CorruptCheckpointError when it is unreadable.
    `mmap` maps the tensors instead of reading them (a cheap check of the file)."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001  (a damaged file fails in the zip reader or the unpickler, variously)
        first_sentence = str(error).strip().split("\n")[0].split(". ")[0]
        raise CorruptCheckpointError(f"{type(error).__name__}: {first_sentence}")
    if not isinstance(content, dict) or content.get("format_version") != FORMAT_VERSION:
        raise CorruptCheckpointError(f"not a checkpoint of format version {FORMAT_VERSION}")
    fields = {field.name for field in dataclasses.fields(TrainingCheckpoint)} - {"path"}
    missing = sorted(fields - set(content) - set(OPTIONAL_ENTRIES))
    if missing:
        raise CorruptCheckpointError(f"missing entries {missing}")
    return TrainingCheckpoint(path=path, **{name: content[name] for name in fields if name in content})


def checkpoint_problem(path: str) -> Optional[str]:
    """Why the checkpoint at `path` cannot be read, or None when it can (tensors are mapped,
    not read: a quick check)."""
    try:
        load_checkpoint(path, mmap=True)
    except (CorruptCheckpointError, OSError) as error:
        return str(error) or type(error).__name__
    return None


def find_checkpoint(exp_dir: str, epoch: Optional[int] = None) -> Optional[TrainingCheckpoint]:
    """The checkpoint to resume from: the newest readable one, or the end of epoch `epoch`.

    An unreadable file is reported (one warning naming it) and the next older one is tried;
    when there are checkpoint files but none is readable, RunDirectoryError lists each file and
    why, and says how to start afresh. None when there is no checkpoint file. A chosen epoch
    whose file is missing or unreadable is a RunDirectoryError.
    """
    if epoch is not None:
        path = os.path.join(exp_dir, checkpoint_file_name(epoch))
        if not os.path.isfile(path):
            finished = [f.epoch for f in list_checkpoints(exp_dir) if f.batches_done is None]
            raise RunDirectoryError(
                f"resume_epoch={epoch}: there is no checkpoint {path}; end-of-epoch checkpoints in "
                f"{exp_dir}: {finished or 'none'}"
            )
        try:
            return load_checkpoint(path)
        except CorruptCheckpointError as error:
            raise RunDirectoryError(f"resume_epoch={epoch}: checkpoint {path} is unreadable ({error})") from None
    unreadable = []
    for found in reversed(list_checkpoints(exp_dir)):
        try:
            checkpoint = load_checkpoint(found.path)
        except (CorruptCheckpointError, FileNotFoundError) as error:
            unreadable.append(f"{found.path}: {error}")
            continue
        if is_main_process():  # every process reads them; one reports them
            for skipped in unreadable:
                logger.warning("Skipping unreadable checkpoint %s; resuming from the older %s.", skipped, found.path)
        return checkpoint
    if unreadable:
        listed = "\n  ".join(unreadable)
        raise RunDirectoryError(
            f"exp_dir {exp_dir} holds {len(unreadable)} checkpoint file(s) and none can be read; nothing was "
            f"changed:\n  {listed}\nIf they were written by another version of torch or are still being copied, "
            f"fix that and run again; to start afresh instead, add resume=false to the model factory's args "
            f"(the files are moved into {os.path.join(exp_dir, 'earlier_runs')}/, not deleted)"
        )
    return None


def purge_checkpoints(exp_dir: str, keep_last: int, readable: Callable[[str], bool]) -> List[str]:
    """Delete what is no longer needed: mid-epoch checkpoints older than the newest checkpoint
    and all but the newest `keep_last` end-of-epoch ones (0 keeps them all); the deleted paths.

    Only files for which `readable(path)` is true are counted or deleted: an unreadable file
    neither takes the place of a good one nor disappears.
    """
    files = list_checkpoints(exp_dir)
    if not files:
        return []
    newest = files[-1]
    good = [f for f in files if readable(f.path)]
    finished = [f for f in good if f.batches_done is None]
    doomed = [f for f in good if f.batches_done is not None and f != newest]
    if keep_last > 0:
        doomed += finished[:-keep_last]
    for found in doomed:
        os.unlink(found.path)
    return [found.path for found in doomed]


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
) -> List[str]:
    """Load the optimizer's state (moments, step counts) and the scheduler's position from
    `checkpoint`, keeping the hyperparameters the optimizer was just built with, so that a
    resumed run uses the config's learning rates, weight decay, betas, momentum.

    A group whose configured initial rate differs from the saved one has its current rate
    scaled by new / old (exact for schedules whose rate is initial x factor(step), as the
    framework's LambdaLR policies are). When the saved optimizer has other hyperparameter
    names (another optimizer type), its state is not loaded. Returns notes on what was not
    carried over (empty when everything was).
    """
    configured = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    if checkpoint.optimizer is not None:
        saved_keys = [set(group) - {"params"} for group in checkpoint.optimizer["param_groups"]]
        if saved_keys != [set(group) for group in configured]:
            return [f"the optimizer state (moments, step counts) of {checkpoint.path} was not restored: it belongs "
                    f"to an optimizer with other settings ({sorted(saved_keys[0]) if saved_keys else []})"]
        try:
            optimizer.load_state_dict(checkpoint.optimizer)
        except ValueError as error:
            raise RunDirectoryError(
                f"checkpoint {checkpoint.path}: its optimizer state does not fit the configured model's parameter "
                f"groups ({error}); resume=false starts afresh"
            ) from None
        for group, settings in zip(optimizer.param_groups, configured):
            saved_initial, saved_rate = group.get("initial_lr"), group["lr"]
            group.update({key: value for key, value in settings.items() if key not in ("lr", "initial_lr")})
            if "initial_lr" in settings and saved_initial:
                group["lr"] = settings["initial_lr"] * (saved_rate / saved_initial)
                group["initial_lr"] = settings["initial_lr"]
            elif "initial_lr" not in settings:
                group["lr"] = settings["lr"]
    if scheduler is not None and checkpoint.scheduler is not None:
        load_scheduler_state_dict(scheduler, checkpoint.scheduler)
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return []


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
