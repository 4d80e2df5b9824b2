"""The inspector in headless Chromium against a real node: every page opens (and is
photographed), appended events show up in the explorers and the live tail, projections compute
exactly what Python computes, fail loudly on the event that threw, abort at once, attacker
payloads stay text, and the password login works."""

from __future__ import annotations

import json
import random
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis
from nodeproc import NodeProcess
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(300)

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
NAMES = ["OrderPlaced", "OrderShipped", "PaymentTaken", "Refunded", "<b>Bold</b>"]


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> NodeProcess:
    n = NodeProcess(tmp_path_factory.mktemp("browser") / "data", "--partitions", "8").start()
    yield n
    n.kill()


@pytest.fixture(scope="module")
def history(r) -> Counter:
    """Events over every partition: the counts by name a projection must reproduce."""
    rng = random.Random(11)
    counts: Counter = Counter()
    pipe = r.pipeline(transaction=False)
    for i in range(1500):
        name = rng.choice(NAMES)
        counts[name] += 1
        pipe.execute_command("EAPPEND", f"order-{i % 97}", name, "PAYLOAD",
                             json.dumps({"n": i, "amount": rng.randint(1, 100)}))  # fmt: skip
    pipe.execute()
    evil = r.execute_command("EAPPEND", "evil-stream", "Evil", "PAYLOAD", EVIL,
                             "METADATA", b"\x00\xff binary")  # fmt: skip
    counts["Evil"] += 1
    counts["__evil_id"] = evil[b"event_id"].decode()
    return counts


def base(node) -> str:
    return f"http://127.0.0.1:{node.http_port}"


def no_problems(p) -> None:
    assert p.problems == [], p.problems


def test_every_page_opens(node, history, page_factory):
    p = page_factory(base(node))
    p.goto("/")
    expect(p.page.locator("#event-count")).to_have_text(
        f"{sum(v for k, v in history.items() if not k.startswith('__')):,}"
    )
    expect(p.page.locator("#peer-id")).not_to_be_empty()
    expect(p.page.locator("#cluster-info")).to_contain_text("node_count")
    p.page.wait_for_timeout(2500)  # a couple of chart samples
    p.shot("overview")
    p.goto("/partitions")
    expect(p.page.locator("#partitions tr")).to_have_count(9)
    p.shot("partitions")
    p.goto("/partitions/3?limit=25")
    expect(p.page.locator("table.events tr")).to_have_count(26)
    p.shot("partition")
    p.goto("/streams?stream_id=order-5")
    expect(p.page.locator("table.events tr").nth(1)).to_contain_text("order-5")
    p.shot("stream")
    p.goto(f"/events/{history['__evil_id']}")
    expect(p.page.locator("#event h2")).to_have_text("Evil")
    p.shot("event")
    p.goto("/live")
    expect(p.page.locator("#live-status")).to_have_text("live")
    p.shot("live")
    p.goto("/projections")
    expect(p.page.locator("#code")).to_be_visible()
    p.shot("projections")
    p.goto("/events")
    expect(p.page.locator("#event-form")).to_be_visible()
    no_problems(p)


def test_paging_both_ways_and_jump_to_a_position(node, history, page_factory):
    p = page_factory(base(node))
    p.goto("/partitions/2?limit=25")
    expect(p.page.locator("#range")).to_contain_text("showing 0–24")
    p.page.click("#later-page")
    expect(p.page.locator("#range")).to_contain_text("showing 25–49")
    assert "from=25" in p.page.url
    p.page.click("#earlier-page")
    expect(p.page.locator("#range")).to_contain_text("showing 0–24")
    p.page.click("#last-page")
    expect(p.page.locator("#later-page")).to_be_disabled()
    p.page.fill("#goto", "40")
    p.page.press("#goto", "Enter")
    expect(p.page.locator("#range")).to_contain_text("showing 40–64")
    p.page.go_back()
    expect(p.page.locator("#later-page")).to_be_disabled()
    no_problems(p)


def test_appended_events_appear_in_the_live_tail_and_explorers(node, r, history, page_factory):
    p = page_factory(base(node))
    p.goto("/live?partitions=all")
    expect(p.page.locator("#live-status")).to_have_text("live")
    replies = [r.execute_command("EAPPEND", f"fresh-{i}", "JustArrived", "PAYLOAD", str(i))
               for i in range(5)]  # fmt: skip
    rows = p.page.locator("#live-events tr", has_text="JustArrived")
    expect(rows).to_have_count(5)
    expect(p.page.locator("#live-count")).to_have_text("5 events")
    p.page.click("#pause")
    expect(p.page.locator("#live-status")).to_have_text("paused")
    r.execute_command("EAPPEND", "fresh-while-paused", "WhilePaused")
    p.page.wait_for_timeout(500)
    expect(p.page.locator("#live-events tr", has_text="WhilePaused")).to_have_count(0)
    p.page.click("#pause")  # resume: what arrived meanwhile comes, once
    expect(p.page.locator("#live-events tr", has_text="WhilePaused")).to_have_count(1)
    expect(p.page.locator("#live-count")).to_have_text("6 events")
    p.shot("live-with-events")
    first = replies[0]
    p.goto(f"/partitions/{first[b'partition_id']}?direction=backward&limit=25")
    expect(p.page.locator(f"tr[data-event-id='{first[b'event_id'].decode()}']")).to_contain_text(
        "JustArrived"
    )
    p.goto("/streams?stream_id=fresh-3")
    expect(p.page.locator("table.events tr").nth(1)).to_contain_text("JustArrived")
    p.page.click(f"text={replies[3][b'event_id'].decode()}")
    expect(p.page.locator("#payload")).to_contain_text("3")
    no_problems(p)


def test_the_live_tail_under_a_burst_shows_the_newest_and_says_how_many_it_did_not(
    node, r, history, page_factory
):
    """1,000 events visible at once (one EMAPPEND): the tail shows the newest 50 (its `tail`
    per round), and says the other 950 were not shown; the node counted the same 950 as passed
    over."""
    p = page_factory(base(node))
    p.goto("/live?partitions=all")
    expect(p.page.locator("#live-status")).to_have_text("live")
    expect(p.page.locator("#live-skipped")).to_be_hidden()
    skipped_before = metric(node.http_port, "sierradb_http_feed_skipped_events_total")
    args: list = []
    for i in range(1000):
        args += [f"burst-{i % 3}", "Burst", "PAYLOAD", str(i)]
    reply = r.execute_command("EMAPPEND", "5a6e0ff4-3c50-4a51-9d48-8b7b2c8e1b0a", *args)
    ids = [ev[b"event_id"].decode() for ev in reply[b"events"]]
    expect(p.page.locator("#live-count")).to_have_text("1,000 events")
    expect(p.page.locator("#live-skipped")).to_be_visible()
    expect(p.page.locator("#live-skipped-count")).to_have_text("950")
    expect(p.page.locator("#live-skipped")).to_contain_text("not shown")
    rows = p.page.locator("#live-events tr", has_text="Burst")
    expect(rows).to_have_count(50)
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert shown == ids[::-1][:50], "not the newest 50, newest first"
    assert metric(node.http_port, "sierradb_http_feed_skipped_events_total") - skipped_before == 950
    p.shot("live-burst")
    no_problems(p)


def test_the_live_tail_accounts_for_every_event_across_bursts_between_redraws(
    node, r, history, page_factory
):
    """Three bursts a third of a second apart: batches that arrive between two redraws (once a
    second) are drawn as their newest 50 rows together, the rest counted as not shown, so
    every event is either a row or in the count, newest first."""
    p = page_factory(base(node))
    p.goto("/live?partitions=all")
    expect(p.page.locator("#live-status")).to_have_text("live")
    # The rows each redraw inserts (a redraw inserts its rows in one task: one callback).
    p.page.evaluate("""() => {
      window.insertedPerRedraw = [];
      new MutationObserver((records) => window.insertedPerRedraw.push(
        records.reduce((n, m) => n + [...m.addedNodes].filter((x) => x.tagName === "TR").length, 0))
      ).observe(document.querySelector("#live-events"), { childList: true, subtree: true });
    }""")
    newest: list[str] = []
    for burst in range(3):
        args: list = []
        for i in range(1000):
            args += [f"wave-{i % 3}", f"Wave{burst}", "PAYLOAD", str(i)]
        reply = r.execute_command("EMAPPEND", "6b7f1a05-4d61-4b62-8e59-9c8c3d9f2c1b", *args)
        newest = [ev[b"event_id"].decode() for ev in reply[b"events"]]
        p.page.wait_for_timeout(300)
    expect(p.page.locator("#live-count")).to_have_text("3,000 events")
    rows = p.page.locator("#live-events tr[data-event-id]")
    p.page.wait_for_timeout(1500)  # the last redraw
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    not_shown = int(p.page.locator("#live-skipped-count").text_content().replace(",", ""))
    assert len(shown) + not_shown == 3000
    assert 50 <= len(shown) <= 150  # at most 50 per redraw, at least the last burst's
    # The first burst is drawn at once; the next two usually arrive before the next redraw.
    assert max(p.page.evaluate("window.insertedPerRedraw")) == 50
    assert shown[:50] == newest[::-1][:50], "the last burst's newest 50 first, newest first"
    no_problems(p)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name}")


def test_a_projection_over_all_partitions_counts_exactly(node, history, page_factory):
    p = page_factory(base(node))
    p.goto("/projections")
    p.page.select_option("#scope", "all")
    p.page.click("#run")
    expect(p.page.locator("#projection-status")).to_have_text("done")
    state = json.loads(p.page.locator("#result").get_attribute("data-state"))
    # Events appended by the other tests of this module count too: compare with the node.
    expected: Counter = Counter()
    with redis.Redis(port=node.port, protocol=3) as client:
        for partition in range(8):
            start = 0
            while True:
                page = client.execute_command("EPSCAN", partition, start, "+", "COUNT", 1000)
                for ev in page[b"events"]:
                    expected[ev[b"event_name"].decode()] += 1
                if not page[b"has_more"]:
                    break
                start = page[b"events"][-1][b"partition_sequence"] + 1
    assert state == dict(expected)
    assert state["<b>Bold</b>"] == history["<b>Bold</b>"]
    expect(p.page.locator("#result")).to_contain_text('"OrderPlaced"')
    expect(p.page.locator("#progress")).to_contain_text(
        f"{sum(expected.values()):,} events processed"
    )
    p.shot("projection-done")
    no_problems(p)


def test_a_projection_that_throws_shows_the_failing_event(node, history, page_factory):
    p = page_factory(base(node))
    p.goto("/projections")
    p.page.fill(
        "#code",
        """function project(state, event) {
  if (event.event_name === "Evil") throw new Error("cannot handle " + event.stream_id);
  state.n = (state.n || 0) + 1;
  return state;
}""",
    )
    p.page.click("#run")
    expect(p.page.locator("#projection-status")).to_have_text("failed")
    expect(p.page.locator("#error-message")).to_contain_text("cannot handle evil-stream")
    expect(p.page.locator("#error-event")).to_contain_text(history["__evil_id"])
    expect(p.page.locator("#projection-error")).to_contain_text("sequence")
    p.shot("projection-error")
    no_problems(p)


def test_a_projection_that_returns_nothing_is_an_error(node, history, page_factory):
    p = page_factory(base(node))
    p.goto("/projections")
    p.page.fill("#code", "function project(state, event) { state.x = 1; }")
    p.page.click("#run")
    expect(p.page.locator("#error-message")).to_contain_text("returned undefined")
    p.page.fill("#code", "function nope(")
    p.page.click("#run")
    expect(p.page.locator("#projection-error")).to_contain_text("does not compile")
    no_problems(p)


def test_abort_stops_a_runaway_projection_and_the_page_stays_responsive(
    node, history, page_factory
):
    p = page_factory(base(node))
    p.goto("/projections")
    p.page.fill("#code", "function project(state, event) { for (;;) {} }")
    p.page.click("#run")
    expect(p.page.locator("#projection-status")).to_have_text("running")
    p.page.wait_for_timeout(1000)
    # The loop runs in the worker: the page still answers at once.
    assert p.page.evaluate("1 + 1") == 2
    p.page.click("#abort")
    expect(p.page.locator("#projection-status")).to_have_text("aborted")
    expect(p.page.locator("#run")).to_be_enabled()
    no_problems(p)


def test_a_projection_keeps_running_on_live_events(node, r, history, page_factory):
    p = page_factory(base(node))
    p.goto("/projections")
    p.page.fill(
        "#code",
        """function project(state, event) {
  if (event.event_name === "LiveTick") state.ticks += 1;
  return state;
}""",
    )
    p.page.fill("#initial", '{"ticks": 0}')
    p.page.check("#live")
    p.page.click("#run")
    expect(p.page.locator("#projection-status")).to_have_text("live")
    for i in range(7):
        r.execute_command("EAPPEND", f"tick-{i}", "LiveTick")
    expect(p.page.locator("#result")).to_contain_text('"ticks": 7')
    p.page.click("#abort")
    no_problems(p)


def test_a_stream_projection_sums_a_balance(node, r, page_factory):
    amounts = [5, -2, 10, -4]
    for a in amounts:
        r.execute_command("EAPPEND", "account-42", "Moved", "PAYLOAD", json.dumps({"amount": a}))
    p = page_factory(base(node))
    p.goto("/projections?scope=stream&stream_id=account-42")
    p.page.fill(
        "#code",
        """function project(state, event) {
  state.balance += JSON.parse(event.payload).amount;
  return state;
}""",
    )
    p.page.fill("#initial", '{"balance": 0}')
    p.page.click("#run")
    expect(p.page.locator("#projection-status")).to_have_text("done")
    assert json.loads(p.page.locator("#result").get_attribute("data-state")) == {"balance": 9}
    no_problems(p)


def test_projections_are_saved_exported_and_imported(node, page_factory, tmp_path):
    p = page_factory(base(node))
    p.goto("/projections")
    p.page.fill("#code", "function project(s, e) { return s; }")
    p.page.fill("#projection-name", "identity")
    p.page.click("#save")
    expect(p.page.locator("#saved")).to_contain_text("identity")
    with p.page.expect_download() as download:
        p.page.click("#export")
    exported = Path(tmp_path / "export.json")
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    assert data["projections"]["identity"]["code"] == "function project(s, e) { return s; }"
    p.page.locator("#saved button.danger").click()
    expect(p.page.locator("#saved")).not_to_contain_text("identity")
    p.page.set_input_files("#import", str(exported))
    expect(p.page.locator("#saved")).to_contain_text("identity")
    p.page.click("#saved a")
    expect(p.page.locator("#code")).to_have_value("function project(s, e) { return s; }")
    no_problems(p)


def test_payloads_are_shown_as_text_and_never_run(node, history, page_factory):
    p = page_factory(base(node))
    for path in (f"/events/{history['__evil_id']}", "/streams?stream_id=evil-stream",
                 "/partitions/0", "/projections"):  # fmt: skip
        p.goto(path)
        p.page.wait_for_timeout(300)
    p.goto(f"/events/{history['__evil_id']}")
    expect(p.page.locator("#payload pre")).to_have_text(EVIL)
    expect(p.page.locator("#metadata")).to_contain_text("binary, 9 bytes")
    expect(p.page.locator("#metadata")).to_contain_text("00 ff 20 62")
    assert p.page.evaluate("window.__pwned") is None
    assert p.page.locator("#view img, #view script, #view b").count() == 0
    p.goto("/streams?stream_id=order-1")
    expect(p.page.locator("#view")).to_contain_text("OrderPlaced")
    p.goto("/live")
    expect(p.page.locator("#live-status")).to_have_text("live")
    with redis.Redis(port=node.port, protocol=3) as client:
        client.execute_command("EAPPEND", "evil-live", "<img src=x onerror=window.__pwned=3>")
    expect(p.page.locator("#live-events")).to_contain_text("<img src=x onerror=window.__pwned=3>")
    assert p.page.evaluate("window.__pwned") is None
    assert p.page.locator("#view img").count() == 0
    p.shot("evil-payload")
    no_problems(p)


def test_time_can_be_shown_in_utc_or_local_time(node, history, page_factory):
    p = page_factory(base(node))
    p.goto(f"/events/{history['__evil_id']}")
    expect(p.page.locator("#event-time")).to_contain_text("UTC")
    p.page.click("#time-toggle")
    expect(p.page.locator("#event-time")).to_contain_text("local")
    p.page.click("#time-toggle")
    expect(p.page.locator("#event-time")).to_contain_text("UTC")
    no_problems(p)


def test_login_with_a_password(node_factory, page_factory):
    secured = node_factory(env={"SIERRA_REQUIREPASS": "open-sesame"})
    p = page_factory(f"http://127.0.0.1:{secured.http_port}")
    p.goto("/partitions")
    assert "/login?next=%2Fpartitions" in p.page.url
    p.page.fill("#password", "wrong")
    p.page.click("#login-submit")
    expect(p.page.locator("#login-error")).to_be_visible()
    p.shot("login-failed")
    p.page.fill("#password", "open-sesame")
    p.page.click("#login-submit")
    expect(p.page.locator("#partitions tr")).to_have_count(33)
    assert p.page.url.endswith("/partitions")
    cookies = p.page.context.cookies(f"http://127.0.0.1:{secured.http_port}")
    session = next(c for c in cookies if c["name"] == "sierradb_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert p.page.evaluate("document.cookie") == ""  # scripts cannot read it
    expect(p.page.locator("#logout")).to_be_visible()
    p.page.click("#logout button")
    expect(p.page.locator("#password")).to_be_visible()
    p.goto("/")
    assert "/login" in p.page.url
    # 401 pages before logging in are expected console errors here; none other.
    assert all("401" in x or "Failed to load resource" in x for x in p.problems), p.problems
