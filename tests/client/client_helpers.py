"""Helpers of the client tests (a module of its own, not conftest, so tests import it by name)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from sierradb.client import RetryPolicy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
# The tests use the example's aggregate, so the example is exercised by every aggregate test.
from bank_account import BankAccount, Deposited, Opened, Withdrawn  # noqa: E402

__all__ = ["EXAMPLES", "PATIENT", "BankAccount", "Deposited", "Opened", "Withdrawn", "unique"]

PATIENT = RetryPolicy(max_attempts=None, max_elapsed_s=60.0, max_delay_s=0.2)
"""Retries that outlast a node restart."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
