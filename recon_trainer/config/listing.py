"""What can be plugged where: each namespace, the slots using it and its implementations."""
import inspect
from typing import Dict, List

from .expand import expand_args_fields
from .registry import registry


def slot_paths(root: type) -> Dict[type, List[str]]:
    """For each namespace, the dotted `..._class_type` keys of root's config that choose from it."""
    found: Dict[type, List[str]] = {}
    _collect_slots(root, "", found)
    return found


def _collect_slots(cls: type, prefix: str, found: Dict[type, List[str]]) -> None:
    expand_args_fields(cls)
    for spec in cls._processed_members.values():
        if spec.kind.replaceable:
            found.setdefault(spec.base, []).append(prefix + spec.type_key)
            for impl_name, impl in spec.implementations.items():
                _collect_slots(impl, f"{prefix}{spec.args_key(impl_name)}.", found)
        else:
            _collect_slots(spec.base, f"{prefix}{spec.args_key()}.", found)


def summary_line(cls: type) -> str:
    """The first line of the class's own docstring ("" when it has none)."""
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(cls.__name__ + "("):  # the signature dataclasses write for undocumented classes
        return ""
    return inspect.cleandoc(doc).split("\n", 1)[0] if doc else ""


def format_plugin_listing(root: type, max_paths: int = 4) -> str:
    """Human-readable listing of every namespace reachable from `root`, then the others."""
    paths = slot_paths(root)
    reachable = sorted(paths, key=lambda c: c.__name__)
    others = [ns for ns in registry.namespaces() if ns not in paths]
    lines = [f"Replaceable slots of {root.__name__}; choose with <slot>_class_type=<Name>.", ""]
    for namespace in reachable + others:
        lines.append(f"{namespace.__name__}: {summary_line(namespace)}".rstrip(": "))
        slot_keys = paths.get(namespace, [])
        if slot_keys:
            more = f" (+{len(slot_keys) - max_paths} more)" if len(slot_keys) > max_paths else ""
            lines.append("  slots: " + ", ".join(slot_keys[:max_paths]) + more)
        else:
            lines.append(f"  slots: none in {root.__name__}")
        implementations = registry.get_all(namespace)
        width = max((len(impl.__name__) for impl in implementations), default=0)
        for impl in implementations:
            lines.append(f"  - {impl.__name__.ljust(width)}  {summary_line(impl)}".rstrip())
        if not implementations:
            lines.append("  - (nothing registered)")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
