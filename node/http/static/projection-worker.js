// The projection engine: runs the user's project(state, event) in this Web Worker, never on the
// node. It reads the events itself through the JSON API (the page stays responsive; terminating
// the worker stops everything at once), one partition after another, each in sequence order,
// with the next pages fetched while the current one is projected. An exception, or a function
// that returns undefined, stops the run and reports the event; nothing is skipped. Afterwards it
// can follow the live feed from exactly where the catch-up ended.
//
// Messages in:  {type: "start", code, initial, scope: "all"|"partition"|"stream", partition,
//                stream_id, live}
// Messages out: {type: "progress", processed, positions, phase}, {type: "state", state (JSON)},
//               {type: "caught-up", live}, {type: "error", phase, message, stack, event}
"use strict";

const PAGE_EVENTS = 5000; // events per API page
const PROGRESS_EVERY_MS = 200;
const LIVE_STATE_EVERY_MS = 500; // while live, the state is sent at most this often

let project = null;
let state = null;
let processed = 0;
const positions = {}; // partition -> next sequence (stream scope: stream version)
let lastProgress = 0;
let phase = "catch-up";

class ProjectionError extends Error {
  constructor(cause, event) {
    super(cause && cause.message ? cause.message : String(cause));
    this.causeStack = cause && cause.stack ? String(cause.stack) : "";
    this.event = event;
  }
}

function compile(code) {
  // The user's code defines `project`; the factory returns it (strict mode, no page access).
  const factory = new Function(`"use strict";\n${code}\n;return typeof project === "function" ? project : undefined;`);
  const fn = factory();
  if (typeof fn !== "function") throw new Error("the code must define function project(state, event)");
  return fn;
}

function apply(event) {
  let next;
  try {
    next = project(state, event);
  } catch (err) {
    throw new ProjectionError(err, event);
  }
  if (next === undefined) throw new ProjectionError(new Error("project() returned undefined: return the new state"), event);
  state = next;
  processed++;
}

function progress(force) {
  const now = Date.now();
  if (!force && now - lastProgress < PROGRESS_EVERY_MS) return;
  lastProgress = now;
  postMessage({ type: "progress", processed, positions, phase });
}

function sendState() {
  postMessage({ type: "state", state: JSON.stringify(state === undefined ? null : state) });
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

// Pages of several ranges (partitions by sequence, or a stream by version), each read forward
// from 0 to its end, in order. Up to PAGES_IN_FLIGHT requests run ahead of the page being
// projected, so the node prepares the next pages while this worker parses and projects (one
// request ahead left the node idle while the browser parsed each page). They follow a plan
// made from each range's end when the run started (`end`: positions are gapless, so a full page
// from `from` is followed by one from `from + pageEvents`). Each page's `next` is checked
// against the plan: where they differ (a page cut at 8 MiB) the requests planned for that range
// are dropped and its reading goes on from `next`, so every position is read once, in order.
// A range ends at its `end`: events appended since the run started are left to the live feed,
// so a run finishes however fast a writer appends (a run that chased the live end would finish
// only once the projection outpaced every writer). `at(event)` is an event's position.
const PAGES_IN_FLIGHT = 3;

async function* plannedPages(ranges, pageEvents) {
  const inFlight = []; // {r, from, page: Promise}, in reading order
  let planR = 0, planFrom = 0; // the plan's next request
  const request = (r, from) => {
    const page = getJSON(ranges[r].url(from, pageEvents));
    page.catch(() => {}); // a dropped request's failure is nobody's concern
    return { r, from, page };
  };
  const advancePlan = () => {
    planFrom += pageEvents;
    if (planFrom >= ranges[planR].end) { planR++; planFrom = 0; }
  };
  const fill = () => {
    while (inFlight.length < PAGES_IN_FLIGHT && planR < ranges.length) {
      inFlight.push(request(planR, planFrom));
      advancePlan();
    }
  };
  fill();
  while (inFlight.length) {
    const { r, page: pending } = inFlight.shift();
    const { end, at } = ranges[r];
    const fetched = await pending;
    const page = {
      events: fetched.events.filter((event) => at(event) < end),
      next: fetched.next !== null && fetched.next < end ? fetched.next : null,
    };
    const planned = inFlight.length && inFlight[0].r === r ? inFlight[0].from : null;
    if (page.next !== planned) {
      while (inFlight.length && inFlight[0].r === r) inFlight.shift();
      if (page.next !== null) inFlight.unshift(request(r, page.next));
      if (planR === r) { // plan the rest of this range again, after `next`
        if (page.next === null) { planR++; planFrom = 0; } else { planFrom = page.next; advancePlan(); }
      }
    }
    fill();
    yield [r, page];
  }
}

async function catchUpPartitions(partitions, ends, pageEvents) {
  for (const p of partitions) positions[p] = 0;
  const ranges = partitions.map((p) => ({
    end: ends[p] || 0,
    at: (event) => event.partition_sequence,
    url: (from, limit) => `/api/partitions/${p}/events?from=${from}&limit=${limit}`,
  }));
  for await (const [r, page] of plannedPages(ranges, pageEvents)) {
    const p = partitions[r];
    for (const event of page.events) {
      apply(event);
      positions[p] = event.partition_sequence + 1;
    }
    progress(false);
  }
}

// A stream's events below partition sequence `below` (later ones come from the live feed);
// `version` is its last version when the run started.
async function catchUpStream(streamId, key, version, below, pageEvents) {
  const q = new URLSearchParams({ stream_id: streamId, partition_key: key });
  positions.version = 0;
  const range = { end: version + 1, at: (event) => event.stream_version, url: (from, limit) => `/api/stream/events?${q}&from=${from}&limit=${limit}` };
  for await (const [, page] of plannedPages([range], pageEvents)) {
    for (const event of page.events) {
      if (event.partition_sequence >= below) return;
      apply(event);
      positions.version = event.stream_version + 1;
    }
    progress(false);
  }
}

function follow(partitions, cursor, accept) {
  const q = new URLSearchParams({ partitions: partitions.join(","), from: cursor });
  const source = new EventSource(`/api/feed?${q}`);
  // Progress and state at most every LIVE_STATE_EVERY_MS, and always after the last events.
  let timer = null, pending = false;
  const update = () => {
    if (timer) { pending = true; return; }
    progress(true);
    sendState();
    timer = setTimeout(() => { timer = null; if (pending) { pending = false; update(); } }, LIVE_STATE_EVERY_MS);
  };
  source.addEventListener("events", (e) => {
    try {
      for (const event of JSON.parse(e.data)) {
        if (!accept(event)) continue;
        apply(event);
        positions[event.partition_id] = event.partition_sequence + 1;
      }
    } catch (err) {
      source.close();
      fail(err);
      return;
    }
    update();
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) fail(new Error("the live feed closed"));
  };
}

function fail(err) {
  const message = { type: "error", phase: err.phase || "run", message: err.message || String(err) };
  if (err instanceof ProjectionError) {
    message.event = err.event;
    message.stack = err.causeStack;
  }
  progress(true);
  sendState();
  postMessage(message);
}

async function run(msg) {
  try {
    project = compile(msg.code);
  } catch (err) {
    postMessage({ type: "error", phase: "compile", message: String(err && err.message ? err.message : err) });
    return;
  }
  try {
    state = JSON.parse(msg.initial.trim() === "" ? "null" : msg.initial);
  } catch (err) {
    postMessage({ type: "error", phase: "compile", message: `the initial state is not JSON: ${err.message}` });
    return;
  }
  try {
    let partitions, accept = () => true, cursor;
    // Every partition's end now (the plan of the catch-up), and the node's largest page.
    const list = await getJSON("/api/partitions");
    const pageEvents = Math.min(PAGE_EVENTS, list.max_page_events);
    const ends = {};
    for (const row of list.partitions) ends[row.partition_id] = row.watermark;
    if (msg.scope === "stream") {
      // The partition's end first: the stream is read up to it, the live feed starts at it.
      const info = await getJSON(`/api/stream?${new URLSearchParams({ stream_id: msg.stream_id })}`);
      const end = (await getJSON(`/api/partitions/${info.partition_id}`)).watermark;
      partitions = [info.partition_id];
      if (info.version !== null) await catchUpStream(msg.stream_id, info.partition_key, info.version, end, pageEvents);
      accept = (ev) => ev.stream_id === msg.stream_id && ev.partition_key === info.partition_key;
      cursor = `${info.partition_id}:${end}`;
    } else {
      if (msg.scope === "partition") {
        if (msg.partition === "" || msg.partition === undefined) throw new Error("choose a partition");
        partitions = [Number(msg.partition)];
        await getJSON(`/api/partitions/${partitions[0]}`); // a 404 for a partition that does not exist
      } else {
        partitions = list.partitions.map((p) => p.partition_id);
      }
      await catchUpPartitions(partitions, ends, pageEvents);
      cursor = partitions.map((p) => `${p}:${positions[p]}`).join(",");
    }
    progress(true);
    sendState();
    postMessage({ type: "caught-up", live: Boolean(msg.live) });
    if (msg.live) {
      phase = "live";
      progress(true);
      follow(partitions, cursor, accept);
    }
  } catch (err) {
    fail(err);
  }
}

self.onmessage = (e) => {
  if (e.data && e.data.type === "start") run(e.data);
};
