"""The configs that `--config-name NAME` and `+GROUP=NAME` find, each described by the first comment
line of its YAML file: what `recon_runner --help` lists.

Only the folders are read: no plugin is imported, so the help needs neither torch nor the
registry. The folders are those of the config search path, in its order (hydra_app.py): a
user's `--config-path` and `--config-dir`, the core's configs/ and every plugin's configs/; where two
folders hold the same name, the first one's file is the one Hydra composes and the one described.
"""
import importlib.util
import os
import re
from typing import Dict, List, Optional, Tuple

from .discovery import plugin_config_dirs

PACKAGED_CONFIGS_PACKAGE = "recon_trainer.configs"
# A Hydra directive in a config's header (`# @package _global_`), not a description.
_DIRECTIVE = re.compile(r"^#\s*@\w+")
_SENTENCE_END = (".", "!", "?")


def config_folders(config_path: Optional[str] = None, config_dir: Optional[str] = None) -> List[str]:
    """The folders `--config-name` searches, in order, as absolute paths: the user's `config_path`
    and `config_dir` (when given), the core's configs/, then every plugin's configs/."""
    folders = [os.path.abspath(f) for f in (config_path, config_dir) if f]
    spec = importlib.util.find_spec(PACKAGED_CONFIGS_PACKAGE)
    folders += [os.path.abspath(f) for f in (spec.submodule_search_locations or [])] if spec is not None else []
    folders += plugin_config_dirs()
    return [folder for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


def config_catalog(folders: List[str]) -> Tuple[Dict[str, str], Dict[str, Dict[str, str]]]:
    """({config name: description}, {group: {option: description}}), names sorted.

    A config is a `.yaml` file at the top of a folder; a group is a sub-folder (`preset/`, its
    options the `.yaml` files in it; nested groups are named `a/b`). The first folder holding a
    name wins, as on Hydra's search path."""
    configs: Dict[str, str] = {}
    groups: Dict[str, Dict[str, str]] = {}
    for folder in folders:
        for root, subfolders, files in os.walk(folder):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith((".", "_")))
            group = os.path.relpath(root, folder).replace(os.sep, "/")
            for file in sorted(files):
                if not file.endswith(".yaml"):
                    continue
                name = file[: -len(".yaml")]
                listing = configs if group == "." else groups.setdefault(group, {})
                if name not in listing:
                    listing[name] = yaml_description(os.path.join(root, file))
    return dict(sorted(configs.items())), {g: dict(sorted(o.items())) for g, o in sorted(groups.items()) if o}


def yaml_description(path: str) -> str:
    """The first comment line of a YAML file, Hydra directives (`# @package ...`) skipped, without
    its `#`; " ..." is added when the sentence goes on in the next comment line. "" when the file
    starts with no comment."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    for i, line in enumerate(lines):
        if not line:
            continue
        if not line.startswith("#"):
            return ""
        if _DIRECTIVE.match(line):
            continue
        text = line.lstrip("#").strip()
        continued = i + 1 < len(lines) and lines[i + 1].startswith("#") and not _DIRECTIVE.match(lines[i + 1])
        return text + " ..." if continued and not text.endswith(_SENTENCE_END) else text
    return ""


def format_catalog(configs: Dict[str, str], groups: Dict[str, Dict[str, str]], root_name: str,
                   root_description: str) -> str:
    """The help's two lists: configs (the root config first) and the options of each group."""
    rows = [(root_name, root_description)] + [(n, d) for n, d in configs.items() if n != root_name]
    group_rows = [(f"+{group}={name}", text) for group, options in groups.items() for name, text in options.items()]
    width = max(len(name) for name, _ in rows + group_rows) + 2
    lines = ["Configs (--config-name NAME):"] + [f"  {name:<{width}}{text}".rstrip() for name, text in rows]
    if group_rows:
        lines += ["", "Config groups (add one option to a config with +GROUP=NAME):"]
        lines += [f"  {name:<{width}}{text}".rstrip() for name, text in group_rows]
    return "\n".join(lines) + "\n"
