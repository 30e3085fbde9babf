"""Optional and heavy packages, imported where they are used.

Start-up imports no package that only one method, format or logger needs (tests/test_architecture.py
checks it): each is imported by `require` inside the function that uses it, so a missing or broken
package fails that method alone, with one line naming the package and how to install it.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from recon_trainer.errors import MissingDependencyError


def require(module: str, needed_for: str, pip_name: Optional[str] = None) -> ModuleType:
    """`import module`, or MissingDependencyError: "<needed_for> needs the package '<pip_name>'
    (pip install <pip_name>): <the import error>". pip_name defaults to the top-level module name."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = pip_name or module.split(".")[0]
        raise MissingDependencyError(
            f"{needed_for} needs the package '{package}', which cannot be imported ({error}); "
            f"install it with: pip install {package}"
        ) from error
