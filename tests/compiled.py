"""The project's compiled modules (Cython over their own Python sources), for the tests that
check the installed build is compiled and agrees with its source run as plain Python."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def is_compiled(module: ModuleType) -> bool:
    return module.__file__ is not None and module.__file__.endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)
    )


def source_module(relative_path: str, name: str) -> ModuleType:
    """The module at `relative_path` (from the project's root) run as plain Python, under
    `name` (inside its package, so that its relative imports work): its typed annotations then
    mean nothing."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
