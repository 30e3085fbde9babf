"""The map's arrows (design.md), checked on the source: no import cycles in recon_trainer/, the
core never imports a plugin, no plugin imports another, and heavy packages stay out of start-up.

Imports are read from the syntax tree (module level and inside functions; `if TYPE_CHECKING:`
blocks left out, they never run), so an import hidden in a function to dodge a cycle still counts.
"""
import ast
import re
import os
import subprocess
import sys
from typing import Dict, List, Set

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"recon_trainer": os.path.join(REPO, "recon_trainer"),
            "recon_trainer_plugins": os.path.join(REPO, "plugins")}


def module_files(package: str) -> Dict[str, str]:
    """{dotted module name: path} of every .py file of `package`."""
    root = PACKAGES[package]
    modules = {}
    for folder, _, files in os.walk(root):
        for file in files:
            if file.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, file), root)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join([package, *parts])] = os.path.join(folder, file)
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(module: str, path: str) -> Set[str]:
    """Absolute names of every module `module` imports (and of `from X import y`, both X and X.y)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    names: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph(package: str) -> Dict[str, Set[str]]:
    """{module: modules of the same package it imports} (a package import counts as its __init__)."""
    modules = module_files(package)
    graph = {}
    for module, path in modules.items():
        graph[module] = {name for name in imported_names(module, path) if name in modules and name != module}
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_recon_trainer_has_no_import_cycles():
    graph = import_graph("recon_trainer")
    assert len(graph) > 100
    assert find_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_a_plugin():
    for module, path in module_files("recon_trainer").items():
        plugin_imports = [name for name in imported_names(module, path)
                          if name.split(".")[0] in ("recon_trainer_plugins", "plugins")]
        assert plugin_imports == [], f"{module} imports {plugin_imports}"


def test_no_plugin_imports_another_plugin():
    for module, path in module_files("recon_trainer_plugins").items():
        parts = module.split(".")
        if len(parts) < 2:
            continue
        own = parts[1]
        others = {name.split(".")[1] for name in imported_names(module, path)
                  if name.startswith("recon_trainer_plugins.") and name.split(".")[1] != own}
        assert others == set(), f"{module} imports the plugin(s) {sorted(others)}"


HEAVY = ("torchvision", "timm", "h5py", "scipy", "mlflow", "visdom", "lpips", "tensorboard", "open3d", "matplotlib",
         "trimesh")
STARTUP = """
import sys
import recon_trainer
from recon_trainer.config import expand_args_fields
from recon_trainer.config.hydra_app import compose_config, store_root_config
from recon_trainer.experiment import Experiment
expand_args_fields(Experiment)  # discovery: every built-in plugin and entry point imported
store_root_config(Experiment)
for name in ("repro_singleseq_nerf", "repro_singleseq_nerf_blender", "midas_redweb", "moge_v1", "spann3r",
             "symphonies_nyu"):
    compose_config(name)  # what `recon_runner --config-name NAME --cfg job` does
print("IMPORTED:" + ",".join(sorted(name for name in {heavy} if name in sys.modules)))
"""
HELP = """
import sys
from recon_trainer.cli.runner import main
main(["--help"])
print("IMPORTED:" + ",".join(sorted(name for name in {heavy} if name in sys.modules)))
"""


def test_heavy_packages_are_imported_where_used_not_at_start_up():
    """`import recon_trainer`, plugin discovery and composing configs import none of HEAVY (each
    costs 0.1-1.2 s at start-up: torchvision alone ~1.2 s); `--help` does not even import torch."""
    result = subprocess.run([sys.executable, "-c", STARTUP.format(heavy=HEAVY)], capture_output=True, text=True,
                            check=True, cwd=REPO)
    assert result.stdout.splitlines()[-1] == "IMPORTED:"
    result = subprocess.run([sys.executable, "-c", HELP.format(heavy=HEAVY + ("torch", "numpy"))],
                            capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.splitlines()[-1] == "IMPORTED:"


# A default the core keeps, naming a plugin's class by its registry name only (it is never
# imported): GenericModel's default field is NeRF's MLP, as in Implicitron, so that the NVS configs
# and a bare GenericModel keep their meaning.
NAMED_DEFAULTS = {("recon_trainer/models/implicit_rendering_model.py", "NeuralRadianceFieldImplicitFunction")}


def test_the_core_names_no_plugin_class():
    registered = set()
    for path in module_files("recon_trainer_plugins").values():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        registered |= {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                       and any(ast.unparse(d) == "registry.register" for d in node.decorator_list)}
    assert {"MidasModel", "SRNImplicitFunction", "IdrFeatureField"} <= registered
    named = set()
    for path in module_files("recon_trainer").values():
        with open(path, encoding="utf-8") as f:
            words = set(re.findall(r"\w+", f.read()))
        named |= {(os.path.relpath(path, REPO), name) for name in words & registered}
    assert named == NAMED_DEFAULTS
