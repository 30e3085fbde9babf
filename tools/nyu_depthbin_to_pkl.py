"""MonoScene's NYUv2 pre-processing: SSCNet depthbin volumes to MonoScene's pkl labels.

    python tools/nyu_depthbin_to_pkl.py --data-root NYU/depthbin --out NYU/preprocess/base
    python tools/nyu_depthbin_to_pkl.py --data-root NYU/depthbin --out NYU/preprocess/base --splits test --overwrite

Reads data-root/NYU<split>/<name>.bin and writes out/NYU<split>/<name>.pkl: cam_pose, voxel_origin,
name, target_1_4 (60, 36, 60) and target_1_16 (15, 9, 15) in the 12 classes
(recon_trainer/data/formats/nyu_ssc.py, depthbin_to_pkl_content). Each file is written through a
temporary file and a rename; existing pkl files are kept unless --overwrite. A missing folder or
an unreadable volume ends the run with one line and exit code 2.
"""
import argparse
import os
import sys
from typing import List, Optional

from recon_trainer.cli.reporting import reported_errors
from recon_trainer.data.formats import nyu_ssc
from recon_trainer.errors import DataFileError

PROG = "nyu_depthbin_to_pkl"


def convert(data_root: str, out: str, splits: List[str], overwrite: bool = False) -> None:
    """Convert every split (module doc); prints one line per split."""
    for split in splits:
        folder = os.path.join(data_root, f"NYU{split}")
        if not os.path.isdir(folder):
            raise DataFileError(f"{folder}: no such folder (expected the depthbin split NYU{split} under --data-root)")
        names = nyu_ssc.list_depthbins(data_root, split)
        if not names:
            raise DataFileError(f"{folder}: no SSCNet volumes (<name>.bin) in this folder")
        written = kept = 0
        for name in names:
            target = os.path.join(out, f"NYU{split}", f"{name}.pkl")
            if os.path.exists(target) and not overwrite:
                kept += 1
                continue
            nyu_ssc.write_pkl(target, nyu_ssc.depthbin_to_pkl_content(nyu_ssc.depthbin_path(data_root, split, name)))
            written += 1
        print(f"NYU{split}: {written} written, {kept} kept (existing) -> {os.path.join(out, f'NYU{split}')}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-root", required=True, help="SSCNet depthbin root holding NYUtrain/ and NYUtest/")
    parser.add_argument("--out", required=True, help="output root (MonoScene's preprocess/base)")
    parser.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing pkl files")
    args = parser.parse_args(argv)
    with reported_errors(PROG):
        convert(args.data_root, args.out, args.splits, args.overwrite)


if __name__ == "__main__":
    sys.exit(main())
