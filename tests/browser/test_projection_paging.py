"""Projections that read many pages: a node with small pages (`--max-count 100`), so every
partition takes several, some pages cut at 8 MiB of payload, and appends while a run reads.
Every position must be projected once, in order, whatever the worker's read-ahead does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from nodeproc import NodeProcess
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(300)

PARTITIONS = 4
# Per partition: how many events it holds, and the highest sequence, each seen in order.
GAPLESS = """function project(state, event) {
  const p = String(event.partition_id);
  const seen = state[p] || {count: 0, last: -1, gapless: true};
  if (event.partition_sequence !== seen.last + 1) seen.gapless = false;
  seen.count += 1;
  seen.last = event.partition_sequence;
  state[p] = seen;
  return state;
}"""


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> NodeProcess:
    n = NodeProcess(
        tmp_path_factory.mktemp("paging") / "data",
        "--partitions", str(PARTITIONS), "--max-count", "100",
    ).start()  # fmt: skip
    yield n
    n.kill()


def partition_ends(r) -> dict[str, int]:
    return {str(p): (r.execute_command("EPSEQ", p) or -1) + 1 for p in range(PARTITIONS)}


def run_projection(node, page_factory, code: str = GAPLESS):
    p = page_factory(f"http://127.0.0.1:{node.http_port}")
    p.goto("/projections")
    p.page.select_option("#scope", "all")
    p.page.fill("#code", code)
    p.page.fill("#initial", "{}")
    p.page.click("#run")
    return p


def result(p) -> dict:
    expect(p.page.locator("#projection-status")).to_have_text("done", timeout=120_000)
    assert p.problems == [], p.problems
    return json.loads(p.page.locator("#result").get_attribute("data-state"))


def test_every_page_of_every_partition_is_projected_once_in_order(node, r, page_factory):
    pipe = r.pipeline(transaction=False)
    for i in range(1234):  # 250-400 per partition: several 100-event pages each
        pipe.execute_command("EAPPEND", f"s-{i % 53}", "E", "PAYLOAD", str(i))
    pipe.execute()
    ends = partition_ends(r)
    state = result(run_projection(node, page_factory))
    assert {p: (s["count"], s["last"] + 1, s["gapless"]) for p, s in state.items()} == {
        p: (end, end, True) for p, end in ends.items() if end
    }


def test_pages_cut_at_8_mib_are_followed_from_where_they_stop(node, r, page_factory):
    # 100 KiB payloads: a 100-event page would hold ~10 MiB, so each is cut at 8 MiB (~80 events)
    # and the worker's planned next pages (from + 100) are wrong.
    big = b"x" * (100 * 1024)
    for start in range(0, 300, 50):
        r.execute_command(
            "EMAPPEND", "00000000-0000-5000-8000-000000000000",
            *[x for i in range(start, start + 50) for x in (f"big-{i}", "Big", "PAYLOAD", big)],
        )  # fmt: skip
    ends = partition_ends(r)
    code = GAPLESS.replace(
        "state[p] = seen;",
        "state[p] = seen; state.big = (state.big || 0) + (event.event_name === 'Big');",
    )
    state = result(run_projection(node, page_factory, code))
    assert state.pop("big") == 300
    assert {p: (s["count"], s["last"] + 1, s["gapless"]) for p, s in state.items()} == {
        p: (end, end, True) for p, end in ends.items() if end
    }


@contextmanager
def nonstop_writer(node, stream_prefix: str, event_name: str) -> Iterator[None]:
    """A thread appending without pause (to 17 streams) while the block runs."""
    stop = threading.Event()

    def append() -> None:
        with redis.Redis(port=node.port, protocol=3) as w:
            i = 0
            while not stop.is_set():
                w.execute_command("EAPPEND", f"{stream_prefix}-{i % 17}", event_name)
                i += 1

    writer = threading.Thread(target=append)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def slowed(ms: int) -> str:
    """GAPLESS taking `ms` of CPU per event, so that appends land while a run reads."""
    return GAPLESS.replace(
        "return state;\n}",
        f"const t = Date.now(); while (Date.now() - t < {ms}) {{}}\n  return state;\n}}",
    )


def test_a_run_under_a_nonstop_writer_reads_up_to_its_start_once_and_in_order(
    node, r, page_factory
):
    # The writer never pauses and outpaces the slowed projection: the run must still finish
    # (it reads up to the ends when it started, not the moving live end).
    before = partition_ends(r)
    with nonstop_writer(node, "late", "Late"):
        state = result(run_projection(node, page_factory, slowed(2)))
    after = partition_ends(r)
    for part, s in state.items():
        assert s["gapless"], (part, s)
        assert s["count"] == s["last"] + 1  # every position from 0, once
        assert before[part] <= s["count"] <= after[part], (part, s, before, after)
    assert sum(s["count"] for s in state.values()) > sum(before.values())  # some late ones read
    assert sum(s["count"] for s in state.values()) < sum(after.values())  # and not the latest


def test_a_live_run_under_a_nonstop_writer_hands_over_to_the_feed_without_gap_or_repeat(
    node, r, page_factory
):
    # The catch-up reads up to the ends at its start, the live feed goes on from there: once the
    # writer stops, every partition's state must reach its end, each position once and in order.
    with nonstop_writer(node, "handover", "Handover"):
        p = page_factory(f"http://127.0.0.1:{node.http_port}")
        p.goto("/projections")
        p.page.select_option("#scope", "all")
        p.page.fill("#code", slowed(1))
        p.page.fill("#initial", "{}")
        p.page.check("#live")
        p.page.click("#run")
        expect(p.page.locator("#projection-status")).to_have_text("live", timeout=120_000)
    ends = {part: end for part, end in partition_ends(r).items() if end}
    deadline = time.monotonic() + 60
    while True:
        state = json.loads(p.page.locator("#result").get_attribute("data-state") or "null") or {}
        seen = {part: (s["count"], s["last"] + 1, s["gapless"]) for part, s in state.items()}
        if seen == {part: (end, end, True) for part, end in ends.items()}:
            break
        assert time.monotonic() < deadline, (seen, ends)
        time.sleep(0.2)
    p.page.click("#abort")
    assert p.problems == [], p.problems
