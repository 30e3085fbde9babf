"""Benchmark the configuration system: expanding, building defaults, dumping, pruning, composing.

    python tools/bench_config.py [--depth 5] [--width 4] [--repeats 5]

A synthetic hierarchy: every level is a namespace with `width` implementations, each holding
ten plain fields and a slot for the next level, so the default config has about
width**depth args blocks. Prints seconds per operation (best of `repeats`); also composes the
Experiment through Hydra as recon_runner does (with the line-fit example plugin, until built-in
methods fill its slots). Times only, no assertions.
"""
import argparse
import time
from typing import Callable, List

from omegaconf import OmegaConf

import recon_trainer_plugins.examples.line_fit  # noqa: F401  (fills Experiment's slots for the compose timing)
from recon_trainer.config import ReplaceableBase, expand_args_fields, get_default_args, registry
from recon_trainer.config import remove_unused_components
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.experiment import Experiment


def make_hierarchy(depth: int, width: int) -> type:
    """The root namespace's first implementation of a `depth`-level tree of slots."""
    child_namespace = None
    for level in reversed(range(depth)):
        namespace = type(f"Level{level}", (ReplaceableBase,), {"__module__": __name__})
        for index in range(width):
            annotations = {f"value_{k}": float for k in range(10)}
            body = {f"value_{k}": float(k) for k in range(10)}
            if child_namespace is not None:
                annotations["child"] = child_namespace
                body["child_class_type"] = f"Level{level + 1}Impl0"
                annotations["child_class_type"] = str
            body.update(__annotations__=annotations, __module__=__name__)
            registry.register(type(f"Level{level}Impl{index}", (namespace,), body))
        child_namespace = namespace
    return registry.get(child_namespace, "Level0Impl0")


def best_time(function: Callable[[], object], repeats: int) -> float:
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def yaml_lines(cfg) -> int:
    return len(OmegaConf.to_yaml(cfg).splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    def report(label: str, function: Callable[[], object], note: str = "") -> None:
        print(f"  {label:<48} {best_time(function, args.repeats) * 1e3:9.2f} ms{note}")

    root = make_hierarchy(args.depth, args.width)
    start = time.perf_counter()
    expand_args_fields(root)
    first_expand = time.perf_counter() - start
    cfg = get_default_args(root)
    print(f"synthetic hierarchy: depth {args.depth}, width {args.width}, {yaml_lines(cfg)} YAML lines")
    print(f"  {'expand_args_fields (root only, first call)':<48} {first_expand * 1e3:9.2f} ms")
    report("get_default_args (expands the whole tree)", lambda: get_default_args(root))
    report("OmegaConf.to_yaml dump", lambda: OmegaConf.to_yaml(cfg, sort_keys=False))
    report("remove_unused_components", lambda: remove_unused_components(get_default_args(root)),
           "  (includes a fresh get_default_args)")

    start = time.perf_counter()
    store_root_config(Experiment)
    store_time = time.perf_counter() - start
    print(f"Experiment: {yaml_lines(get_default_args(Experiment))} YAML lines")
    print(f"  {'plugin discovery + expand + store in ConfigStore':<48} {store_time * 1e3:9.2f} ms")
    report("get_default_args(Experiment)", lambda: get_default_args(Experiment))
    report("compose_config (Hydra compose + validation)",
           lambda: compose_config("example_line_fit", overrides=["seed=3"]))

if __name__ == "__main__":
    main()
