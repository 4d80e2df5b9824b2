"""Every Python package directory ships in a wheel (an editable install hides a missing one)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_directory_is_declared() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(tool["packages"])
    mapped = {path: name for name, path in tool["package-dir"].items()}
    found = set()
    for top in ("storage", "node", "p2p", "client"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).as_posix()
            if rel in mapped:
                found.add(mapped[rel])
            else:
                parent = next(
                    p for p in sorted(mapped, key=len, reverse=True) if rel.startswith(p + "/")
                )
                found.add(mapped[parent] + "." + rel[len(parent) + 1 :].replace("/", "."))
    assert found <= declared, f"not in [tool.setuptools] packages: {sorted(found - declared)}"
