"""The command line the parity-fixture scripts share: where the original repository is checked
out (put first on the import path, so `import moge` / `import dust3r` is the original) and where
the fixtures go.

Run a script as `python tools/parity/make_X.py --moge_repo /path/to/MoGe --out tests/fixtures/moge`
(the DUSt3R / Spann3R scripts take --dust3r_repo / --spann3r_repo, the Symphonies and SSC-metric ones
--symphonies_repo, the Symphonies decoder one also --mmcv_src), with the original's own dependencies importable
(MoGe: utils3d at its pinned commit, opencv)."""
from __future__ import annotations

import argparse
import glob
import os
import sys


def reference_args(description: str, produces: str, repo: str = "moge_repo",
                   repo_help: str = "checkout of microsoft/MoGe to import the original from") -> argparse.Namespace:
    """Parse --<repo> (default --moge_repo) and --out (created), put the checkout first on sys.path;
    `produces` names the fixture files and `repo_help` the checkout for --help."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--" + repo, required=True, help=repo_help)
    parser.add_argument("--out", required=True, help=f"output folder of {produces}")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(getattr(args, repo)))
    os.makedirs(args.out, exist_ok=True)
    return args


def pytorch3d_args(description: str, produces: str) -> argparse.Namespace:
    """Parse --pytorch3d_repo (optional) and --out (created) for the Implicitron fixture scripts: the
    checkout goes first on sys.path only when it holds a built `pytorch3d/_C*` (else the installed
    pytorch3d is used); prints which pytorch3d imports."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pytorch3d_repo", default=None,
                        help="facebookresearch/pytorch3d checkout, used when built in place (else the installed one)")
    parser.add_argument("--out", required=True, help=f"output folder of {produces}")
    args = parser.parse_args()
    if args.pytorch3d_repo and glob.glob(os.path.join(args.pytorch3d_repo, "pytorch3d", "_C*")):
        sys.path.insert(0, os.path.abspath(args.pytorch3d_repo))
    import pytorch3d

    print(f"pytorch3d {pytorch3d.__version__} from {os.path.dirname(pytorch3d.__file__)}")
    os.makedirs(args.out, exist_ok=True)
    return args
