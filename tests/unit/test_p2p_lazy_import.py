"""A single node never imports libp2p (it takes about a second and 60 MB)."""

from __future__ import annotations

import subprocess
import sys

SINGLE_NODE_MODULES = [
    "sierradb.node.cli",
    "sierradb.node.server",
    "sierradb.node.connection",
    "sierradb.node.commands",
    "sierradb.node.info",
    "sierradb.node.database",
    "sierradb.node.config",
    "sierradb.p2p",
]


def test_the_single_node_path_does_not_import_libp2p() -> None:
    code = (
        f"import {', '.join(SINGLE_NODE_MODULES)}, sys\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('libp2p', 'multiaddr', 'zeroconf'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
