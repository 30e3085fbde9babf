"""Start-up time of recon_runner: the median of N fresh processes for `--cfg job` and `--help`.

    python tools/bench_startup.py                    # this checkout, 5 runs each
    python tools/bench_startup.py --rev HEAD~3       # also a git revision (exported to a temporary folder)
    python tools/bench_startup.py --tree /some/checkout --runs 7 --config-name repro_singleseq_nerf

Each command runs in a new Python process, as a user types it; the times are wall-clock seconds
(what a user waits) and CPU seconds (user + system of the process, less sensitive to other load on
the machine). `python -c "import torch"` is timed too, as the floor every command that builds a
model pays. The load average is printed before and after: numbers taken on a loaded machine are
slower, compare them only with numbers taken beside them.

Bytecode: a user's Python caches compiled modules (`__pycache__`), so only their first run
compiles the project's sources. Where PYTHONDONTWRITEBYTECODE is set (as in some CI and sandbox
shells) every run compiles all of them again, about 0.5 s more. `--bytecode cached` (the default)
gives the children a bytecode cache under a temporary PYTHONPYCACHEPREFIX (filled by the warm-up
run; the checkout is not written to); `--bytecode env` keeps this shell's setting.

This checkout runs through its `recon_runner` console script when one is installed beside this
Python (else as `python -m recon_trainer.cli.runner`). `--rev` / `--tree` run another tree
through a bootstrap that maps `recon_trainer`, `recon_trainer.configs` and
`recon_trainer_plugins` to that tree's folders (as the editable install maps this checkout's),
so both run with the same interpreter and installed packages.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs recon_runner from the tree in argv[1] (the remaining arguments are recon_runner's).
BOOTSTRAP = """
import importlib.util, os, sys
tree = sys.argv.pop(1)
folders = {"recon_trainer": "recon_trainer", "recon_trainer.configs": "configs", "recon_trainer_plugins": "plugins"}

class TreeFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in folders:
            return None
        folder = os.path.join(tree, folders[name])
        return importlib.util.spec_from_file_location(
            name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])

sys.meta_path.insert(0, TreeFinder)
sys.argv[0] = "recon_runner"
from recon_trainer.cli.runner import main
main()
"""


def runner_command(tree: Optional[str]) -> List[str]:
    """The command that starts recon_runner from `tree` (None: this checkout as installed)."""
    if tree is not None:
        return [sys.executable, "-c", BOOTSTRAP, tree]
    script = os.path.join(os.path.dirname(sys.executable), "recon_runner")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "recon_trainer.cli.runner"]


def timed_run(command: Sequence[str], cwd: str, env: Optional[Dict[str, str]] = None) -> Tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command`; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(list(command), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench(commands: Dict[str, List[str]], runs: int, cwd: str,
          env: Optional[Dict[str, str]] = None) -> Dict[str, Tuple[List[float], List[float]]]:
    """{label: (wall times, CPU times)}; the commands take turns, so slow phases of the machine's
    load are shared among them. One warm-up run of each first (file and bytecode caches), not counted."""
    for command in commands.values():
        timed_run(command, cwd, env)
    times = {label: ([], []) for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            wall, cpu = timed_run(command, cwd, env)
            times[label][0].append(wall)
            times[label][1].append(cpu)
    return times


def export_revision(rev: str, folder: str) -> str:
    """The tracked files of git revision `rev` of this repository, extracted into `folder`."""
    os.makedirs(folder, exist_ok=True)
    archive = os.path.join(folder, "tree.tar")
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", REPO, "archive", "--format=tar", rev], stdout=f, check=True)
    tree = os.path.join(folder, "tree")
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {len(os.sched_getaffinity(0))} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command (median reported)")
    parser.add_argument("--config-name", default="repro_singleseq_nerf", help="the config of the --cfg job command")
    parser.add_argument("--rev", action="append", default=[], help="also time this git revision (repeatable)")
    parser.add_argument("--tree", action="append", default=[], help="also time the checkout in this folder")
    parser.add_argument("--no-current", action="store_true", help="skip this checkout")
    parser.add_argument("--bytecode", choices=("cached", "env"), default="cached",
                        help="cached: a bytecode cache as a user has (default); env: this shell's setting")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="bench_startup_")
    try:
        trees: Dict[str, Optional[str]] = {} if args.no_current else {"this checkout": None}
        for rev in args.rev:
            trees[f"rev {rev}"] = export_revision(rev, os.path.join(scratch, f"rev{len(trees)}"))
        for tree in args.tree:
            trees[f"tree {tree}"] = os.path.abspath(tree)
        commands = {"python -c 'import torch'": [sys.executable, "-c", "import torch"]}
        for name, tree in trees.items():
            base = runner_command(tree)
            commands[f"{name}: --config-name {args.config_name} --cfg job"] = base + [
                "--config-name", args.config_name, "--cfg", "job"]
            commands[f"{name}: --help"] = base + ["--help"]
        env = dict(os.environ)
        if args.bytecode == "cached":
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(scratch, "pycache")
        print(f"bytecode: {args.bytecode} (PYTHONDONTWRITEBYTECODE={env.get('PYTHONDONTWRITEBYTECODE', '')!r}, "
              f"PYTHONPYCACHEPREFIX={env.get('PYTHONPYCACHEPREFIX', '')!r})")
        print(f"load average before: {load_average()}")
        times = bench(commands, args.runs, cwd=scratch, env=env)
        print(f"load average after:  {load_average()}")
        width = max(len(label) for label in commands)
        print(f"\n{'command':<{width}}  median wall s  median CPU s  (wall s of each run)")
        for label, (wall, cpu) in times.items():
            raw = " ".join(f"{t:.2f}" for t in wall)
            print(f"{label:<{width}}  {statistics.median(wall):13.2f}  {statistics.median(cpu):12.2f}  ({raw})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
