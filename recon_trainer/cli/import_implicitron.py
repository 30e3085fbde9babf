"""recon_import_implicitron: turn a trained Implicitron exp_dir into a run directory of ours.

    recon_import_implicitron IMPLICITRON_EXP_DIR OUR_EXP_DIR [--epoch N]

IMPLICITRON_EXP_DIR holds the expconfig.yaml and model_epoch_<8 digits>.pth that pytorch3d's
implicitron_trainer wrote (the newest epoch is taken unless --epoch says otherwise). OUR_EXP_DIR
must not exist yet (an empty folder is fine); it gets expconfig.yaml, the checkpoint and
implicitron_import.yaml (the source and every Implicitron key that was left out). Then:

    recon_runner --config-dir OUR_EXP_DIR --config-name expconfig training_loop_ReconTrainingLoop_args.eval_only=true
    recon_visualizer exp_dir=OUR_EXP_DIR

A user's mistake (no expconfig.yaml, no model file, an implicit function or setting that cannot
be imported, tensors that do not fit, an existing destination) ends in one line and exit code 2.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from recon_trainer.cli.reporting import pop_debug_flag, reported_errors
from recon_trainer.errors import UserError

PROG = "recon_import_implicitron"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, like every tool here
        raise UserError(f"{message} (usage: {PROG} IMPLICITRON_EXP_DIR OUR_EXP_DIR [--epoch N])")


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of recon_import_implicitron; `argv` defaults to the process's arguments."""
    argv, _ = pop_debug_flag(argv)
    with reported_errors(PROG):
        parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
        parser.add_argument("src", metavar="IMPLICITRON_EXP_DIR", help="the Implicitron run's exp_dir")
        parser.add_argument("dst", metavar="OUR_EXP_DIR", help="the run directory to create")
        parser.add_argument("--epoch", type=int, default=None, help="import model_epoch_<epoch>.pth (default: newest)")
        args = parser.parse_args(argv)
        from recon_trainer.models.implicitron_import import IMPORT_RECORD, import_implicitron

        result = import_implicitron(args.src, args.dst, args.epoch)
        print(f"{PROG}: wrote {result.exp_dir} (GenericModel with {result.implicit_function}, epoch {result.epoch}, "
              f"{result.n_tensors} tensors)")
        if result.left_out:
            print(f"{PROG}: {len(result.left_out)} Implicitron key(s) have no counterpart here and were left out "
                  f"(listed in {IMPORT_RECORD}); none of them changes the model's renders")
        print(f"{PROG}: evaluate with: recon_runner --config-dir {result.exp_dir} --config-name expconfig "
              "training_loop_ReconTrainingLoop_args.eval_only=true")


if __name__ == "__main__":
    main()
