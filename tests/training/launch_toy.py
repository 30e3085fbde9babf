"""recon_runner with the toy plugin registered, for tests that run it in subprocesses.

    python -m tests.training.launch_toy --config-path tests/training/configs --config-name toy_experiment ...

With RECON_TEST_WRITES_LOG set, a process of rank > 0 records every file it opens for writing
(and every rename / mkdir) and writes the list there as JSON when it exits.
"""
import atexit
import json
import os
import sys

import tests.training.toy_plugin  # noqa: F401  (registers the toy implementations)
from recon_trainer.cli.runner import main

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def record_writes(log_path: str) -> None:
    """Audit this process's file writes (Python-level opens, renames, mkdirs, removals)."""
    written = []

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
            if writes:
                written.append(os.fsdecode(args[0]))
        elif event in ("os.rename", "os.mkdir", "os.remove", "shutil.rmtree"):
            written.append(f"{event}: {os.fsdecode(args[0])}")

    def dump():
        with open(log_path, "w") as f:
            json.dump(written, f)

    sys.addaudithook(hook)
    atexit.register(dump)


if __name__ == "__main__":
    if os.environ.get("RECON_TEST_WRITES_LOG") and int(os.environ.get("RANK", "0")) > 0:
        record_writes(f"{os.environ['RECON_TEST_WRITES_LOG']}.rank{os.environ['RANK']}")
    main()
