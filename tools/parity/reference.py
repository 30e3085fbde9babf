"""The command line every parity-fixture script shares: where the original repository is checked
out (put first on the import path, so `import moge` is the original) and where the fixtures go.

Run a script as `python tools/parity/make_X.py --moge_repo /path/to/MoGe --out tests/fixtures/moge`,
with the original's own dependencies importable (MoGe: utils3d at its pinned commit, opencv)."""
from __future__ import annotations

import argparse
import os
import sys


def reference_args(description: str, produces: str) -> argparse.Namespace:
    """Parse --moge_repo and --out (created), put the checkout first on sys.path; `produces`
    names the fixture files for --help."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--moge_repo", required=True, help="checkout of microsoft/MoGe to import the original from")
    parser.add_argument("--out", required=True, help=f"output folder of {produces}")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.moge_repo))
    os.makedirs(args.out, exist_ok=True)
    return args
