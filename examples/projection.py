#!/usr/bin/env python3
"""A projection: account balances kept up to date from a subscription to every partition.

It reads the events of `examples/bank_account.py` (streams `account-*`) and keeps each
account's balance in a JSON file, together with the next partition sequence it has not applied
yet. Each event is applied and saved (atomically, with its position) before the next is read,
so the projection resumes where it stopped after being restarted itself, and the client's
subscription resumes by itself when the node restarts under it: no event is missed or applied
twice. Stop it with Ctrl-C or SIGTERM.

    sierradb --dir ./data &
    python examples/projection.py --state balances.json &
    python examples/bank_account.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from sierradb.client import Client, RetryPolicy

PREFIX = "account-"


def load(path: Path) -> tuple[dict[int, int], dict[str, int]]:
    if not path.exists():
        return {}, {}
    state = json.loads(path.read_text())
    return {int(p): s for p, s in state["positions"].items()}, state["balances"]


def save(path: Path, positions: dict[int, int], balances: dict[str, int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"positions": positions, "balances": balances}))
    os.replace(tmp, path)  # readers and restarts see the old state or the new, never half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:9090", help="node address(es), host:port")
    parser.add_argument("--state", default="balances.json", type=Path)
    args = parser.parse_args()

    # SIGTERM stops it as Ctrl-C does (a process started in the background by a non-interactive
    # shell ignores SIGINT, so supervisors and scripts stop it with SIGTERM).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    positions, balances = load(args.state)
    # Wait up to ten minutes for a node that is down (restarting) before giving up.
    patient = RetryPolicy(max_attempts=None, max_elapsed_s=600.0)
    with Client(args.address, retry=patient, subscription_retry=patient) as client:
        start = {p: positions.get(p, 0) for p in range(client.partition_count())}
        with client.subscribe_partitions("*", from_sequence=start) as subscription:
            print(f"following {len(start)} partitions", flush=True)
            try:
                for event in subscription:
                    positions[event.partition_id] = event.partition_sequence + 1
                    if event.stream_id.startswith(PREFIX):
                        account = event.stream_id
                        change = json.loads(event.payload).get("amount", 0)
                        if event.event_name == "Withdrawn":
                            change = -change
                        balances[account] = balances.get(account, 0) + change
                        print(f"{account}: {balances[account]}", flush=True)
                    save(args.state, positions, balances)
            except KeyboardInterrupt:
                print("stopped", flush=True)


if __name__ == "__main__":
    main()
