"""Helpers of the client tests (a module of its own, not conftest, so tests import it by name)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sierradb.client import Aggregate, RetryPolicy

PATIENT = RetryPolicy(max_attempts=None, max_elapsed_s=60.0, max_delay_s=0.2)
"""Retries that outlast a node restart."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Opened:
    owner: str


@dataclass
class Deposited:
    amount: int


@dataclass
class Withdrawn:
    amount: int


class Account(Aggregate):
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
            return []  # already open: nothing to do
        return [Opened(owner)]

    def deposit(self, amount: int) -> list[Any]:
        if self.owner is None:
            raise ValueError("account not open")
        return [Deposited(amount)]

    def transfer_in(self, amounts: list[int]) -> list[Any]:
        return [Deposited(a) for a in amounts]

    def withdraw(self, amount: int) -> list[Any]:
        if amount > self.balance:
            raise ValueError("insufficient funds")
        return [Withdrawn(amount)]
