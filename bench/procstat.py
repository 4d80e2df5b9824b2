"""What a benchmark reads about a process from /proc: CPU time so far, resident memory."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process so far."""
    # The command name (field 2, in parentheses) may hold spaces: count fields after it.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s_named(name: str) -> float:
    """CPU seconds so far of every process whose command name is `name` (e.g. a browser's)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == name:
                total += cpu_s(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
            continue
    return total
