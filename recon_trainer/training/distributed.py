"""Which process this is when a run is started by `accelerate launch` (or torchrun)."""
import os


def is_main_process() -> bool:
    """True in the process of global rank 0, or when there is only one process.

    Read from the RANK variable the launchers set, so it works before accelerate is set up.
    """
    return int(os.environ.get("RANK", "0")) == 0
