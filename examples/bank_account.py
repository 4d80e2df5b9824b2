#!/usr/bin/env python3
"""A bank account aggregate with sierradb.client: commands, optimistic concurrency, retries.

Run a node first (`sierradb --dir ./data`), then: python examples/bank_account.py
"""

from __future__ import annotations

import argparse
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sierradb.client import Aggregate, Client, Repository


@dataclass
class Opened:
    owner: str


@dataclass
class Deposited:
    amount: int


@dataclass
class Withdrawn:
    amount: int


CONTENDED_ATTEMPTS = 100
"""Attempts per command for the four concurrent writers (the default is 10)."""


class BankAccount(Aggregate):
    """Stream `account-<id>`. Commands return events; `apply` is the only place state changes."""

    stream_prefix = "account-"
    event_types = (Opened, Deposited, Withdrawn)

    def __init__(self) -> None:
        self.owner: str | None = None
        self.balance = 0

    def apply(self, event: Any) -> None:
        match event:
            case Opened(owner=owner):
                self.owner = owner
            case Deposited(amount=amount):
                self.balance += amount
            case Withdrawn(amount=amount):
                self.balance -= amount

    def open(self, owner: str) -> list[Any]:
        if self.owner is not None:
            raise ValueError("the account is already open")
        return [Opened(owner)]

    def deposit(self, amount: int) -> list[Any]:
        if self.owner is None:
            raise ValueError("the account is not open")
        if amount <= 0:
            raise ValueError("deposits are positive")
        return [Deposited(amount)]

    def withdraw(self, amount: int) -> list[Any]:
        if amount > self.balance:
            raise ValueError(f"insufficient funds: {self.balance} < {amount}")
        return [Withdrawn(amount)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:9090", help="node address(es), host:port")
    args = parser.parse_args()

    with Client(args.address) as client:
        accounts = Repository(client, BankAccount)
        account_id = uuid.uuid4().hex
        accounts.execute(account_id, lambda a: a.open("Alice"))
        accounts.execute(account_id, lambda a: a.deposit(100))
        result = accounts.execute(account_id, lambda a: a.withdraw(30))
        print(f"account-{account_id}: balance {result.aggregate.balance} at v{result.version}")
        try:
            accounts.execute(account_id, lambda a: a.withdraw(1000))
        except ValueError as e:
            print("refused:", e)

        # Four writers deposit at once: each command that loses a race (WRONGVER) is retried
        # from the newer state, so every deposit counts exactly once. Only one of the appends
        # that expect the same version can win, and while a commit waits for its fdatasync the
        # others keep losing to it: with tens of ms per commit (a busy disk) a command may lose
        # ten races in a row, more than the default budget, so these writers get a larger one.
        # A command that still gives up raises; the writer reports it and the example fails.
        contended = Repository(client, BankAccount, max_attempts=CONTENDED_ATTEMPTS)
        retried = []
        failures: list[BaseException] = []

        def deposit_ten() -> None:
            try:
                for _ in range(10):
                    result = contended.execute(account_id, lambda a: a.deposit(1))
                    retried.append(result.attempts - 1)
            except Exception as e:  # noqa: BLE001 - a thread's exception would only be printed
                failures.append(e)

        writers = [threading.Thread(target=deposit_ten) for _ in range(4)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        if failures:
            sys.exit(f"{len(failures)} writer(s) gave up: {failures!r}")
        account, version = accounts.load(account_id)
        print(f"after 40 concurrent deposits: balance {account.balance} at v{version}")
        print(f"version conflicts retried: {sum(retried)}")
        for event in client.scan_stream(f"account-{account_id}", end=3):
            print(f"  v{event.stream_version} {event.event_name} {event.payload.decode()}")
        print("  ...")


if __name__ == "__main__":
    main()
