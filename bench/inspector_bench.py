"""Inspector benchmark: does the HTTP port slow the client port, and how fast is a projection?

1. EAPPEND throughput (redis-benchmark, -c 50 -P 1, fdatasync on) with the HTTP port off, and
   with it on while headless Chromium live-tails all partitions and /metrics is scraped every
   second (`browser`); interleaved round by round on fresh data dirs, so machine noise hits all.
   Three more modes split the cost: `scrape` (HTTP on, /metrics every second, nothing else),
   `feed` (that plus curl reading the complete live feed of all partitions: the node's own work
   for a feed, without a browser's CPU on this machine) and `tail` (the same with the feed's tail
   mode, `tail=200`, which the browser's live tail asks for).
2. A browser projection (count events by name over all partitions) over EVENTS events: the time
   from Run to the state being shown.

Needs: redis-tools (redis-benchmark), chromium, the venv with playwright. Prints CSV-ish lines and
a summary; timings are not asserted anywhere.

Each throughput line also gives the node's CPU per appended event (user + system seconds of the
node process over the whole run, divided by the events appended): on a shared machine that moves
less than appends/s does.

Usage: python bench/inspector_bench.py [ROUNDS] [REQUESTS] [EVENTS]
(SIERRA_BENCH_PORT: the client port, default 9490; the HTTP port is the next one.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import redis
from playwright.sync_api import expect, sync_playwright
from procstat import cpu_s, cpu_s_named

HERE = Path(__file__).resolve().parent
PAYLOAD = (HERE.parent.parent / "shared" / "bench" / "payload.json").read_text().strip()
PORT = int(os.environ.get("SIERRA_BENCH_PORT", "9490"))
NODE_LOG = "/tmp/sdb-inspector-bench-node.log"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# SIERRA_BENCH_MODES=off,browser runs a subset (off is always measured: the others compare to it).
_WANTED = os.environ.get("SIERRA_BENCH_MODES", "scrape,feed,tail,browser").split(",")
MODES = tuple(m for m in ("off", "scrape", "feed", "tail", "browser") if m == "off" or m in _WANTED)
TAIL = 50  # the UI's LIVE_TAIL_EVENTS
NAMES = ["OrderPlaced", "OrderShipped", "PaymentTaken", "Refunded"]
STREAM_NAMESPACE = uuid.UUID("219bd637-e279-53e9-9e2b-eabe5d9120cc")


def start_node(data: str, http: bool) -> subprocess.Popen:
    shutil.rmtree(data, ignore_errors=True)
    args = [sys.executable, "-m", "sierradb.node", "--dir", data, "--client-address",
            f"127.0.0.1:{PORT}", "--log-level", "warning",
            "--http-address", f"127.0.0.1:{PORT + 1}" if http else "none"]  # fmt: skip
    log = open(NODE_LOG, "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    for _ in range(200):
        try:
            with redis.Redis(port=PORT) as r:
                r.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("node did not start")


def stop_node(proc: subprocess.Popen, data: str) -> None:
    proc.terminate()
    proc.wait(60)
    shutil.rmtree(data, ignore_errors=True)


def eappend_rps(requests: int) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(PORT), "--csv", "-n", str(requests),
         "-c", "50", "-P", "1", "-r", "100000", "EAPPEND", "stream-__rand_int__", "UserCreated",
         PAYLOAD],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # "test","rps","avg",...,"max": the test name (the payload) has unescaped quotes: split
    # from the right.
    return float(out.strip().splitlines()[-1].strip('"').rsplit('","', 7)[1])


def browser(p, profile: str):
    context = p.chromium.launch_persistent_context(
        profile, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
    )  # fmt: skip
    context.set_default_timeout(600_000)
    return context


def scraper(stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT + 1}/metrics", timeout=10) as r:
            r.read()
        counts[0] += 1


def throughput(rounds: int, requests: int) -> None:
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu_us: dict[str, list[float]] = {mode: [] for mode in MODES}
    with sync_playwright() as p:
        for round_ in range(1, rounds + 1):
            for mode in MODES:
                data = tempfile.mkdtemp(prefix="sdb-ibench-")
                node = start_node(data, mode != "off")
                try:
                    cpu_before = cpu_s(node.pid)
                    rps, extra = measure(p, mode, requests)
                    # Everything the node did for these appends, its feed and scrapes included.
                    cpu = 1e6 * (cpu_s(node.pid) - cpu_before) / requests
                finally:
                    stop_node(node, data)
                results[mode].append(rps)
                cpu_us[mode].append(cpu)
                print(f"eappend,c50,P1,http={mode},round={round_},load={os.getloadavg()[0]:.2f},"
                      f"rps={rps:.0f},node_cpu_us_per_event={cpu:.0f}{extra}",
                      flush=True)  # fmt: skip
    off = statistics.median(results["off"])
    for mode in MODES:
        median = statistics.median(results[mode])
        print(f"summary: EAPPEND -c 50 -P 1 http={mode} median {median:.0f}/s "
              f"({100 * (median - off) / off:+.1f}% vs off), node CPU "
              f"{statistics.median(cpu_us[mode]):.0f} µs/event")  # fmt: skip


def measure(p, mode: str, requests: int) -> tuple[float, str]:
    if mode == "off":
        return eappend_rps(requests), ""
    if mode in ("scrape", "feed", "tail"):
        stop, scrapes = threading.Event(), [0]
        t = threading.Thread(target=scraper, args=(stop, scrapes), daemon=True)
        t.start()
        curl = None
        out = tempfile.NamedTemporaryFile(prefix="sdb-ibench-feed-")  # noqa: SIM115
        if mode != "scrape":
            url = f"http://127.0.0.1:{PORT + 1}/api/feed?partitions=all"
            url += f"&tail={TAIL}" if mode == "tail" else ""
            curl = subprocess.Popen(["curl", "-sN", url], stdout=out)
        rps = eappend_rps(requests)
        stop.set()
        t.join()
        extra = f",scrapes={scrapes[0]}"
        if curl is not None:
            received = 0
            for _ in range(100):  # the feed's last batches may still be on their way
                text = Path(out.name).read_bytes()
                received = text.count(b"event_id")
                skipped = sum(int(n) for n in re.findall(rb'^data: \{"count":(\d+)\}$', text, re.M))
                if received + skipped >= requests:
                    break
                time.sleep(0.1)
            curl.terminate()
            curl.wait()
            extra += f",feed_received={received}" + (f",feed_skipped={skipped}" if skipped else "")
        out.close()
        return rps, extra
    with tempfile.TemporaryDirectory() as profile:
        context = browser(p, profile)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{PORT + 1}/live?partitions=all")
        expect(page.locator("#live-status")).to_have_text("live")
        settled = settle_browser()
        stop, scrapes = threading.Event(), [0]
        t = threading.Thread(target=scraper, args=(stop, scrapes), daemon=True)
        t.start()
        browser_cpu = cpu_s_named("chromium")
        started = time.monotonic()
        rps = eappend_rps(requests)
        browser_cores = (cpu_s_named("chromium") - browser_cpu) / (time.monotonic() - started)
        stop.set()
        t.join()
        time.sleep(1)
        shown = page.locator("#live-count").text_content()
        context.close()
    return rps, (f",browser_received={shown!r},scrapes={scrapes[0]},"
                 f"browser_settled_s={settled:.1f},browser_cores={browser_cores:.3f}")  # fmt: skip


def settle_browser(quiet_cores: float = 0.05, limit_s: float = 15.0) -> float:
    """Wait until Chromium has finished starting up (under `quiet_cores` of CPU over half a
    second), at most `limit_s`; the seconds it took. The page says "live" while the browser
    still spends ~0.9 s of CPU over the next 3 s (measured): that is starting a browser, not
    live-tailing, and it fell inside the first of the ~5 s a round takes."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = cpu_s_named("chromium")
        time.sleep(0.5)
        if cpu_s_named("chromium") - before < quiet_cores * 0.5:
            break
    return time.monotonic() - started


def load_events(total: int) -> None:
    """`total` events over 10,000 streams (all partitions), 100 per EMAPPEND, pipelined."""
    started = time.monotonic()
    with redis.Redis(port=PORT, protocol=3) as r:
        done = 0
        while done < total:
            pipe = r.pipeline(transaction=False)
            for _ in range(50):
                if done >= total:
                    break
                stream = f"order-{(done // 100) % 10_000}"
                args: list = []
                for i in range(min(100, total - done)):
                    args += [stream, NAMES[(done + i) % 4], "PAYLOAD", PAYLOAD]
                pipe.execute_command("EMAPPEND", stream_key(stream), *args)
                done += len(args) // 4
            pipe.execute()
    print(f"loaded {total} events in {time.monotonic() - started:.1f} s", flush=True)


def stream_key(stream: str) -> str:
    """The partition key a stream gets by default (UUIDv5, the protocol's namespace)."""
    return str(uuid.uuid5(STREAM_NAMESPACE, stream))


def projection(events: int) -> None:
    data = tempfile.mkdtemp(prefix="sdb-ibench-proj-")
    node = start_node(data, True)
    try:
        load_events(events)
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            context = browser(p, profile)
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{PORT + 1}/projections")
            started = time.monotonic()
            page.click("#run")
            expect(page.locator("#projection-status")).to_have_text("done", timeout=600_000)
            elapsed = time.monotonic() - started
            state = json.loads(page.locator("#result").get_attribute("data-state"))
            context.close()
        counted = sum(state.values())
        print(f"projection,count_by_name,events={counted},seconds={elapsed:.1f},"
              f"events_per_s={counted / elapsed:.0f},load={os.getloadavg()[0]:.2f}")  # fmt: skip
        assert counted == events, (counted, events)
    finally:
        stop_node(node, data)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    events = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    throughput(rounds, requests)
    projection(events)
