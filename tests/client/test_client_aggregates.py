"""Aggregates: loaded from their stream, commands appended with the expected version, version
conflicts retried from the newer state (also under several threads writing at once)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from client_helpers import BankAccount, Deposited, Opened, Withdrawn, unique
from nodeproc import NodeProcess

from sierradb.client import Client, Repository, WrongExpectedVersion


@pytest.fixture
def accounts(client: Client) -> Repository[BankAccount]:
    return Repository(client, BankAccount)


def test_commands_append_events_and_loading_replays_them(
    accounts: Repository[BankAccount], client: Client
) -> None:
    account_id = unique("a")
    result = accounts.execute(account_id, lambda a: a.open("alice"))
    assert (result.version, result.events, result.attempts) == (0, (Opened("alice"),), 1)
    accounts.execute(account_id, lambda a: a.deposit(30))
    result = accounts.execute(account_id, lambda a: a.withdraw(12))
    assert (result.aggregate.balance, result.version) == (18, 2)
    account, version = accounts.load(account_id)
    assert (account.owner, account.balance, version) == ("alice", 18, 2)
    names = [e.event_name for e in client.scan_stream("account-" + account_id)]
    assert names == ["Opened", "Deposited", "Withdrawn"]


def test_a_command_without_events_appends_nothing(
    accounts: Repository[BankAccount], client: Client
) -> None:
    account_id = unique("a")
    accounts.execute(account_id, lambda a: a.open("alice"))
    result = accounts.execute(account_id, lambda a: [])
    assert (result.events, result.version, result.aggregate.owner) == ((), 0, "alice")
    assert client.stream_version("account-" + account_id) == 0


def test_a_failing_command_appends_nothing(
    accounts: Repository[BankAccount], client: Client
) -> None:
    account_id = unique("a")
    with pytest.raises(ValueError):
        accounts.execute(account_id, lambda a: a.deposit(5))
    assert client.stream_version("account-" + account_id) is None


def test_several_events_are_appended_atomically(
    accounts: Repository[BankAccount], client: Client
) -> None:
    account_id = unique("a")
    accounts.execute(account_id, lambda a: a.open("alice"))
    result = accounts.execute(account_id, lambda a: [Deposited(1), Deposited(2), Deposited(3)])
    assert (result.version, result.aggregate.balance) == (3, 6)
    events = list(client.scan_stream("account-" + account_id))
    assert len({e.transaction_id for e in events[1:]}) == 1  # one transaction
    new_id = unique("a")  # several events creating the stream
    result = accounts.execute(new_id, lambda a: [Opened("bob"), Deposited(9)])
    assert (result.version, result.aggregate.balance) == (1, 9)


def test_a_conflict_is_retried_from_the_newer_state(
    accounts: Repository[BankAccount], client: Client
) -> None:
    account_id = unique("a")
    accounts.execute(account_id, lambda a: a.open("alice"))
    accounts.execute(account_id, lambda a: a.deposit(10))
    calls: list[int] = []

    def withdraw_all(account: BankAccount) -> list[Any]:
        calls.append(account.balance)
        if len(calls) == 1:  # another writer deposits between our load and our append
            Repository(client, BankAccount).execute(account_id, lambda a: a.deposit(5))
        return account.withdraw(account.balance)

    result = accounts.execute(account_id, withdraw_all)
    assert calls == [10, 15]
    assert (result.attempts, result.aggregate.balance, result.events) == (2, 0, (Withdrawn(15),))
    assert accounts.load(account_id)[0].balance == 0


def test_conflicts_give_up_after_max_attempts(client: Client) -> None:
    account_id = unique("a")
    accounts = Repository(client, BankAccount, max_attempts=3)
    accounts.execute(account_id, lambda a: a.open("alice"))
    calls = 0

    def always_overtaken(account: BankAccount) -> list[Any]:
        nonlocal calls
        calls += 1
        Repository(client, BankAccount).execute(account_id, lambda a: a.deposit(1))
        return account.deposit(100)

    with pytest.raises(WrongExpectedVersion):
        accounts.execute(account_id, always_overtaken)
    assert calls == 3
    assert accounts.load(account_id)[0].balance == 3


def test_concurrent_writers_from_several_threads_all_succeed(client: Client) -> None:
    account_id = unique("a")
    accounts = Repository(client, BankAccount, max_attempts=100)
    accounts.execute(account_id, lambda a: a.open("alice"))
    threads, deposits = 8, 15
    attempts: list[int] = []
    errors: list[BaseException] = []

    def deposit_many() -> None:
        try:
            for _ in range(deposits):
                attempts.append(accounts.execute(account_id, lambda a: a.deposit(1)).attempts)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=deposit_many) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    account, version = accounts.load(account_id)
    assert account.balance == threads * deposits
    assert version == threads * deposits  # one event each, after Opened at version 0
    assert len(attempts) == threads * deposits
    assert max(attempts) > 1  # the writers did collide (hundreds of retries in practice)


def test_commands_that_give_up_under_slow_commits_write_nothing(
    node_factory: Callable[..., NodeProcess],
) -> None:
    """Writers sharing a stream while each commit waits 40 ms (a busy disk's fdatasync) meet
    conflicts in runs, and commands whose budget runs out give up. Exactly the acknowledged
    commands are stored, each once, at the version its result named: a command that gave up
    left nothing behind and none was applied twice. Two writers give up at their first conflict
    (only about one command in four meets no conflict), two retry up to 5 times."""
    node = node_factory("--sync", "40ms")
    with Client(f"127.0.0.1:{node.port}") as client:
        account_id = unique("a")
        Repository(client, BankAccount).execute(account_id, lambda a: a.open("alice"))
        acknowledged: list[int | None] = []
        gave_up: list[WrongExpectedVersion] = []

        def deposit_ten(accounts: Repository[BankAccount]) -> None:
            for _ in range(10):
                try:
                    result = accounts.execute(account_id, lambda a: a.deposit(1))
                    acknowledged.append(result.version)
                except WrongExpectedVersion as e:
                    gave_up.append(e)

        budgets = (1, 1, 5, 5)
        workers = [
            threading.Thread(
                target=deposit_ten, args=(Repository(client, BankAccount, max_attempts=b),)
            )
            for b in budgets
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        events = list(client.scan_stream("account-" + account_id))
    assert len(acknowledged) + len(gave_up) == 40
    assert gave_up  # budgets did run out: the case under test happened
    assert [e.stream_version for e in events] == list(range(len(events)))
    assert len({e.event_id for e in events}) == len(events)
    deposits = [e.stream_version for e in events if e.event_name == "Deposited"]
    assert sorted(acknowledged) == deposits  # type: ignore[type-var]
