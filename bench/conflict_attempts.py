#!/usr/bin/env python3
"""How many attempts an aggregate command needs when several writers share one stream.

The scenario of `examples/bank_account.py`: W threads of one client each run D deposit
commands on the same account (`Repository.execute`, so every lost race is a WRONGVER, a
catch-up and a new attempt). The budget is set out of reach (1000 attempts) so that the whole
distribution shows: how many commands needed 1, 2, ... attempts, and how many needed more than
the default budget of 10. It prints one JSON object per line.

Conflicts depend on how long a commit takes: the server refuses every append that expects the
version a commit in progress is about to fill, so the longer the fdatasync, the more writers
collide in lockstep. Run it against a node with a group-commit window standing in for a slow
disk, e.g. `python -m sierradb.node --dir /tmp/ca --client-address 127.0.0.1:9700 --sync 40ms`
(with 4 writers and 40 ms, about 1 command in 80 needed more than 10 attempts on a loaded
2-core machine; most runs of 40 commands lost at least one writer with the default budget).

Usage: python bench/conflict_attempts.py ADDRESS [--runs 10] [--writers 4] [--deposits 10]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
import time
import uuid
from pathlib import Path

from sierradb.client import Client, Repository
from sierradb.client.aggregate import DEFAULT_COMMAND_ATTEMPTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from bank_account import BankAccount  # noqa: E402

BUDGET = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("address")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--deposits", type=int, default=10)
    args = parser.parse_args()

    attempts: collections.Counter[int] = collections.Counter()
    started = time.monotonic()
    with Client(args.address) as client:
        accounts = Repository(client, BankAccount, max_attempts=BUDGET)
        for _ in range(args.runs):
            account_id = uuid.uuid4().hex
            accounts.execute(account_id, lambda a: a.open("Alice"))

            def deposit(account_id: str = account_id) -> None:
                for _ in range(args.deposits):
                    attempts[accounts.execute(account_id, lambda a: a.deposit(1)).attempts] += 1

            writers = [threading.Thread(target=deposit) for _ in range(args.writers)]
            for w in writers:
                w.start()
            for w in writers:
                w.join()
    commands = sum(attempts.values())
    over = sum(n for a, n in attempts.items() if a > DEFAULT_COMMAND_ATTEMPTS)
    print(json.dumps({
        "bench": "conflict_attempts", "writers": args.writers, "commands": commands,
        "attempts": dict(sorted(attempts.items())), "max_attempts_seen": max(attempts),
        f"over_{DEFAULT_COMMAND_ATTEMPTS}": over, "seconds": round(time.monotonic() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
