"""TrainingSession: what Experiment.run hands a training loop besides the prepared objects."""
import dataclasses
from typing import TYPE_CHECKING, Optional

from recon_trainer.training.checkpoints import TrainingCheckpoint

if TYPE_CHECKING:  # accelerate is imported where a run starts: --cfg job and --help never load it
    from accelerate import Accelerator


@dataclasses.dataclass
class TrainingSession:
    """What Experiment.run gives a training loop besides the prepared model, optimizer and loaders.

    accelerator: the run's accelerate.Accelerator (device, processes, mixed precision).
    seed: the experiment's seed; epoch e starts by seeding every generator with seed + e.
    config_yaml: the experiment's resolved config, stored in each checkpoint.
    checkpoint: the checkpoint the run resumes from, with the model, optimizer and scheduler
        already restored from it; None for a fresh run.
    """

    accelerator: "Accelerator"
    seed: int
    config_yaml: str = ""
    checkpoint: Optional[TrainingCheckpoint] = None
