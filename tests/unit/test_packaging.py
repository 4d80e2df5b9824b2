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


def test_the_image_build_gets_every_file_the_install_needs() -> None:
    # setup.py compiles the read path's modules (node/event_codec.py, storage/record_check.py):
    # without it `pip install .` builds no extension, and the node cannot even import them (they
    # then need Cython at run time).
    needed = ("pyproject.toml", "setup.py", "README.md")
    copies = [
        line.split()[1:-1]
        for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    ]
    copied = {name for names in copies for name in names}
    kept = {
        line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"
    }
    for name in needed:
        assert name in copied, f"docker/Dockerfile does not COPY {name}"
        assert name in kept, f".dockerignore keeps {name} out of the build context"
