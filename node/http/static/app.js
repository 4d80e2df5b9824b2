// SierraDB Inspector: one page, one view per URL (path + query), no build step, no libraries.
// Every piece of data is put on the page as text (textContent, never innerHTML): event payloads
// are attacker-controlled. The page's Content-Security-Policy forbids inline code anyway.
"use strict";

const LIVE_MAX_ROWS = 200; // rows the live tail keeps on the page
const LIVE_TAIL_EVENTS = 50; // the feed's tail=N (a round a second), and the new rows per redraw
const LIVE_RENDER_MS = 1000; // the live tail redraws at most this often (a table relayout is costly)
const OVERVIEW_REFRESH_MS = 2000;
const PAGE_SIZES = [25, 50, 100, 500];
const TREE_MAX_KEYS = 500; // keys shown per object in a JSON tree
const STORAGE_KEY = "sierradb.projections";

// --------------------------------------------------------------------------- DOM helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function link(href, ...children) {
  return h("a", { href, "data-nav": true }, ...children);
}

function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

// ----------------------------------------------------------------------------- formats
let timeMode = localStorage.getItem("sierradb.time") === "local" ? "local" : "utc";

function fmtTime(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  if (timeMode === "utc") return d.toISOString().replace("T", " ").replace("Z", " UTC");
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:` +
    `${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)} local`;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function fmtDuration(s) {
  const d = Math.floor(s / 86400), hh = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

// The stored bytes of a payload or metadata field, shown the best way they allow.
function bytesView(text, encoding) {
  if (encoding === "base64") {
    const raw = atob(text);
    const lines = [];
    for (let off = 0; off < raw.length; off += 16) {
      const chunk = raw.slice(off, off + 16);
      const hex = Array.from(chunk, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join(" ");
      const ascii = Array.from(chunk, (c) => (c >= " " && c <= "~" ? c : ".")).join("");
      lines.push(`${off.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
    }
    return [h("span", { class: "badge" }, `binary, ${raw.length} bytes`), h("pre", { class: "hex" }, lines.join("\n"))];
  }
  if (text === "") return [h("span", { class: "muted" }, "(empty)")];
  try {
    const value = JSON.parse(text);
    return [h("span", { class: "badge ok" }, "JSON"), h("pre", { class: "json" }, JSON.stringify(value, null, 2))];
  } catch {
    return [h("span", { class: "badge" }, `text, ${new TextEncoder().encode(text).length} bytes`), h("pre", { class: "text" }, text)];
  }
}

// A collapsible JSON tree (objects and arrays as <details>, leaves as text).
function jsonTree(value, key) {
  const label = key === undefined ? [] : [h("span", { class: "key" }, JSON.stringify(key)), ": "];
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const summary = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
    const node = h("details", { open: entries.length <= 50 }, h("summary", {}, label, summary));
    for (const [k, v] of entries.slice(0, TREE_MAX_KEYS)) node.append(jsonTree(v, k));
    if (entries.length > TREE_MAX_KEYS) node.append(h("div", { class: "muted" }, `… ${entries.length - TREE_MAX_KEYS} more`));
    return node;
  }
  const type = value === null ? "null" : typeof value;
  return h("div", { class: "leaf" }, label, h("span", { class: type }, JSON.stringify(value)));
}

// --------------------------------------------------------------------------------- API
class ApiError extends Error {}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    throw new ApiError("login required");
  }
  const body = await response.json();
  if (!response.ok) throw new ApiError(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

// -------------------------------------------------------------------------------- router
const view = () => document.getElementById("view");
let cleanups = []; // run when leaving a view (timers, feeds, workers)

function onLeave(fn) { cleanups.push(fn); }

function navigate(url) {
  history.pushState(null, "", url);
  route();
}

function route() {
  for (const fn of cleanups.splice(0)) fn();
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = "/" + (parts[0] || "");
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.view === section);
  const render = { "/": overviewView, "/partitions": partitionsView, "/streams": streamView, "/events": eventView, "/live": liveView, "/projections": projectionsView }[section];
  const root = view();
  clear(root);
  if (!render) { root.append(h("p", { class: "error" }, "No such view.")); return; }
  render(root, parts.slice(1), params).catch((e) => root.append(h("p", { class: "error", id: "view-error" }, e.message)));
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);

// -------------------------------------------------------------------------------- overview
async function overviewView(root) {
  const body = h("div", {});
  root.append(h("h1", {}, "Overview"), body);
  const refresh = async () => {
    const o = await api("/api/overview");
    document.getElementById("logout").hidden = !o.node.password;
    clear(body);
    body.append(
      h("div", { class: "cards" },
        h("section", { class: "card" }, h("h2", {}, "Node"), kv([
          ["peer id", h("span", { class: "mono", id: "peer-id" }, o.node.peer_id)],
          ["version", o.node.version], ["status", h("span", { class: o.node.ready ? "badge ok" : "badge bad" }, o.node.ready ? "ready" : "not ready")],
          ["up", `${fmtDuration(o.node.uptime_s)} (since ${fmtTime(o.node.started_at * 1000)})`],
          ["clients", o.node.client_address], ["http", o.node.http_address], ["data dir", o.node.data_dir],
          ["password", o.node.password ? "required" : "none (loopback only)"],
        ])),
        h("section", { class: "card" }, h("h2", {}, "Storage"),
          h("div", { class: "big", id: "event-count" }, num(o.storage.events)), h("div", { class: "muted" }, o.cluster.node_count > 1 ? "events in the partitions held here" : "events"),
          kv([["partitions", num(o.storage.partitions)], ["buckets", num(o.storage.buckets)],
            ["disk use", fmtBytes(o.storage.disk_bytes)], ["sealed segments", num(o.storage.sealed_segments)],
            ["segment size", fmtBytes(o.storage.segment_size_bytes)]])),
        h("section", { class: "card" }, h("h2", {}, "Clients"), kv([
          ["connections", num(o.clients.connections)], ["subscriptions", num(o.clients.subscriptions)],
          ["subscription backlog", `${num(o.clients.subscription_backlog_events)} events`],
          ["unacknowledged", `${num(o.clients.subscription_unacknowledged_events)} events`],
          ["HTTP connections", num(o.clients.http_connections)], ["live feeds", num(o.clients.live_feeds)],
        ])),
        h("section", { class: "card wide" }, h("h2", {}, "Appends per second"), chart(o.appends)),
        h("section", { class: "card wide" }, h("h2", {}, "Cluster"),
          o.cluster.node_count > 1 ? memberTable(o.cluster.members) : h("p", { class: "muted" }, "A single node (a cluster of one)."),
          o.cluster.node_count > 1 ? h("details", {}, h("summary", {}, "Where the partitions live"), placementTable(o.cluster.partitions, "placement")) : "",
          h("details", { open: o.cluster.node_count === 1 }, h("summary", {}, "INFO cluster"), kvTable(o.cluster.info))),
      ));
  };
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), OVERVIEW_REFRESH_MS);
  onLeave(() => clearInterval(timer));
}

function kv(rows) {
  return h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function memberTable(members) {
  const ms = (s) => (s === null ? "–" : `${(s * 1000).toFixed(1)} ms`);
  return h("table", { id: "members" },
    h("tr", {}, ["node", "state", "peer id", "client address", "round trip", "last heard", "incarnation", "reason"].map((t) => h("th", {}, t))),
    members.map((m) => h("tr", {},
      h("td", { class: "num" }, m.node_index ?? "?"),
      h("td", {}, h("span", { class: m.state === "up" ? "badge ok" : "badge bad" }, m.state)),
      h("td", { class: "mono" }, m.peer_id), h("td", { class: "mono" }, m.client_address ?? "–"),
      h("td", { class: "num" }, ms(m.rtt_s)), h("td", { class: "num" }, m.heartbeat_age_s === null ? "–" : `${m.heartbeat_age_s.toFixed(1)} s ago`),
      h("td", { class: "num" }, m.incarnation ?? "–"), h("td", {}, m.reason ?? ""))));
}

// Where each partition lives (a cluster): its replicas (the preferred leader first), the leader
// known, whether this node holds a replica, and its watermark (this node's or its holders').
function placementTable(partitions, id) {
  return h("table", { id },
    h("tr", {}, ["partition", "replicas", "leader", "here", "events"].map((t) => h("th", {}, t))),
    partitions.map((p) => h("tr", {},
      h("td", { class: "num" }, link(`/partitions/${p.partition_id}`, p.partition_id)),
      h("td", { class: "mono" }, p.replicas.join(", ")), h("td", { class: "num" }, p.leader ?? "–"),
      h("td", {}, p.held ? "replica" : "elsewhere"),
      h("td", { class: "num" }, p.watermark === null ? h("span", { class: "badge bad" }, "unreachable") : num(p.watermark)))));
}

function kvTable(obj) {
  return h("table", { id: "cluster-info" }, h("tr", {}, h("th", {}, "field"), h("th", {}, "value")),
    Object.entries(obj).map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k), h("td", { class: "mono" }, v))));
}

function chart(points) {
  // The SVG stretches to the card's width, so it holds only lines; the labels are HTML.
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const el = (tag, attrs) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    svg.append(e);
  };
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 120");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("id", "append-chart");
  const max = Math.max(1, ...points.map((p) => p.events_per_second));
  el("line", { x1: 0, y1: 5, x2: 600, y2: 5 });
  el("line", { x1: 0, y1: 115, x2: 600, y2: 115 });
  let span = 0;
  if (points.length > 1) {
    const t0 = points[0].time;
    span = Math.max(1, points[points.length - 1].time - t0);
    const coords = points.map((p) => `${(600 * (p.time - t0)) / span},${115 - (110 * p.events_per_second) / max}`);
    el("polyline", { points: coords.join(" "), "vector-effect": "non-scaling-stroke" });
  }
  const last = points.length ? points[points.length - 1].events_per_second : 0;
  const window = span >= 120 ? `${Math.round(span / 60)} minutes` : `${span} seconds`;
  return h("div", {}, h("div", { class: "muted" }, `top line: ${num(Math.round(max))} events/s`), svg,
    h("div", { class: "muted" }, `last ${window} in 1 s samples; now ${num(last)} events/s, peak ${num(max)} events/s`));
}

// ------------------------------------------------------------------- event tables, paging
function eventTable(events, opts = {}) {
  const table = h("table", { class: "events" },
    h("tr", {}, h("th", { class: "num" }, opts.position === "version" ? "version" : "sequence"),
      opts.showPartition ? h("th", { class: "num" }, "partition") : null,
      h("th", {}, "stream"), h("th", { class: "num" }, opts.position === "version" ? "sequence" : "version"),
      h("th", {}, "event name"), h("th", {}, "time"), h("th", {}, "event id")));
  for (const ev of events) table.append(eventRow(ev, opts));
  return table;
}

function eventRow(ev, opts = {}) {
  const byVersion = opts.position === "version";
  return h("tr", { class: opts.fresh ? "fresh" : null, "data-event-id": ev.event_id },
    h("td", { class: "num" }, byVersion ? ev.stream_version : ev.partition_sequence),
    opts.showPartition ? h("td", { class: "num" }, link(`/partitions/${ev.partition_id}?from=${ev.partition_sequence}`, ev.partition_id)) : null,
    h("td", {}, link(`/streams?stream_id=${encodeURIComponent(ev.stream_id)}&partition_key=${ev.partition_key}`, ev.stream_id)),
    h("td", { class: "num" }, byVersion ? ev.partition_sequence : ev.stream_version),
    h("td", { class: "event-name" }, ev.event_name),
    h("td", {}, fmtTime(ev.timestamp)),
    h("td", { class: "mono" }, link(`/events/${ev.event_id}`, ev.event_id)));
}

// Paging controls for a range of positions: earlier / later pages, first, last, go to.
function pager(base, params, page, lastPosition, positionName) {
  const limit = page.limit;
  const url = (extra) => {
    const q = new URLSearchParams(params);
    q.delete("from"); q.delete("direction");
    q.set("limit", limit);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return `${base}${base.includes("?") ? "&" : "?"}${q}`.replace("?&", "?");
  };
  const positions = page.events.map((e) => e[positionName]);
  const low = positions.length ? Math.min(...positions) : null;
  const high = positions.length ? Math.max(...positions) : null;
  const go = h("input", { type: "number", min: 0, placeholder: positionName === "stream_version" ? "version" : "sequence", id: "goto" });
  const sizes = h("select", { id: "page-size", onchange: (e) => navigate(url({ from: low ?? 0, limit: e.target.value })) },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === limit }, `${n} per page`)));
  return h("div", { class: "toolbar" },
    h("button", { id: "first-page", onclick: () => navigate(url({ from: 0 })), disabled: low === 0 || lastPosition === null }, "« First"),
    h("button", { id: "earlier-page", disabled: !low, onclick: () => navigate(url({ from: low - 1, direction: "backward" })) }, "◀ Earlier"),
    h("button", { id: "later-page", disabled: high === null || lastPosition === null || high >= lastPosition, onclick: () => navigate(url({ from: high + 1 })) }, "Later ▶"),
    h("button", { id: "last-page", disabled: lastPosition === null || high === lastPosition, onclick: () => navigate(url({ direction: "backward" })) }, "Last »"),
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); if (go.value !== "") navigate(url({ from: go.value })); } },
      go, h("button", { type: "submit" }, "Go")),
    sizes,
    h("span", { class: "muted", id: "range" }, positions.length ? `showing ${low}–${high} of 0–${lastPosition}` : "no events in this range"));
}

function pageQuery(params) {
  const q = new URLSearchParams();
  for (const k of ["from", "direction", "limit"]) if (params.get(k)) q.set(k, params.get(k));
  if (!q.get("limit")) q.set("limit", 50);
  return q;
}

// ------------------------------------------------------------------------------ partitions
async function partitionsView(root, rest, params) {
  if (rest.length) return partitionView(root, rest[0], params);
  const { partitions } = await api("/api/partitions");
  const total = partitions.reduce((n, p) => n + (p.watermark ?? 0), 0);
  const cluster = partitions.some((p) => p.replicas.length > 1 || !p.held);
  const head = ["partition", "events", "last sequence", ...(cluster ? ["replicas", "leader", "here"] : []), ""];
  root.append(h("h1", {}, `Partitions (${partitions.length}, ${num(total)} events)`),
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); navigate(`/partitions/${e.target.elements.p.value}`); } },
      h("input", { type: "number", name: "p", min: 0, max: partitions.length - 1, placeholder: "partition", required: true }),
      h("button", { type: "submit" }, "Open")),
    h("table", { id: "partitions" }, h("tr", {}, head.map((t) => h("th", { class: t === "" || t === "here" ? "" : "num" }, t))),
      partitions.map((p) => h("tr", {}, h("td", { class: "num" }, link(`/partitions/${p.partition_id}`, p.partition_id)),
        h("td", { class: "num" }, p.watermark === null ? h("span", { class: "badge bad" }, "unreachable") : num(p.watermark)),
        h("td", { class: "num" }, num(p.last_sequence)),
        ...(cluster ? [h("td", { class: "num mono" }, p.replicas.join(", ")), h("td", { class: "num" }, p.leader ?? "–"),
          h("td", {}, p.held ? "replica" : "elsewhere")] : []),
        h("td", {}, p.watermark ? link(`/partitions/${p.partition_id}?direction=backward`, "latest") : "")))));
}

async function partitionView(root, p, params) {
  root.append(h("h1", {}, `Partition ${p}`));
  const q = pageQuery(params);
  const page = await api(`/api/partitions/${encodeURIComponent(p)}/events?${q}`);
  if (page.direction === "backward") page.events.reverse();
  root.append(pager(`/partitions/${p}`, q, page, page.last_sequence, "partition_sequence"),
    eventTable(page.events, {}),
    h("p", {}, link(`/live?partitions=${p}`, "Live tail of this partition"), " · ",
      link(`/projections?scope=partition&partition=${p}`, "Run a projection over it")));
}

// --------------------------------------------------------------------------------- streams
async function streamView(root, rest, params) {
  const id = params.get("stream_id") || "";
  const key = params.get("partition_key") || "";
  root.append(h("h1", {}, id ? `Stream ${id}` : "Streams"),
    h("form", { class: "toolbar", id: "stream-form", onsubmit: (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const q = new URLSearchParams({ stream_id: f.stream_id.value });
      if (f.partition_key.value.trim()) q.set("partition_key", f.partition_key.value.trim());
      navigate(`/streams?${q}`);
    } },
      h("input", { type: "text", name: "stream_id", placeholder: "stream id", value: id, required: true, size: 30 }),
      h("input", { type: "text", name: "partition_key", placeholder: "partition key (optional UUID)", value: key, size: 38 }),
      h("button", { type: "submit", class: "primary" }, "Open")));
  if (!id) return;
  const base = new URLSearchParams({ stream_id: id });
  if (key) base.set("partition_key", key);
  const info = await api(`/api/stream?${base}`);
  root.append(kv([["partition", link(`/partitions/${info.partition_id}`, info.partition_id)], ["partition key", h("span", { class: "mono" }, info.partition_key)],
    ["version", info.version === null ? "no such stream (no events)" : num(info.version)]]));
  if (info.version === null) return;
  const q = pageQuery(params);
  const page = await api(`/api/stream/events?${base}&${q}`);
  if (page.direction === "backward") page.events.reverse();
  root.append(pager(`/streams?${base}`, q, page, page.version, "stream_version"), eventTable(page.events, { position: "version" }),
    h("p", {}, link(`/projections?scope=stream&stream_id=${encodeURIComponent(id)}`, "Run a projection over this stream")));
}

// ---------------------------------------------------------------------------------- events
async function eventView(root, rest) {
  const id = rest[0] || "";
  root.append(h("h1", {}, "Event lookup"),
    h("form", { class: "toolbar", id: "event-form", onsubmit: (e) => { e.preventDefault(); navigate(`/events/${encodeURIComponent(e.target.elements.id.value.trim())}`); } },
      h("input", { type: "text", name: "id", placeholder: "event id (UUID)", value: id, size: 40, required: true }),
      h("button", { type: "submit", class: "primary" }, "Find")));
  if (!id) return;
  const ev = await api(`/api/events/${encodeURIComponent(id)}`);
  root.append(h("section", { class: "card", id: "event" },
    h("h2", {}, ev.event_name),
    kv([["event id", h("span", { class: "mono" }, ev.event_id)],
      ["stream", link(`/streams?stream_id=${encodeURIComponent(ev.stream_id)}&partition_key=${ev.partition_key}&from=${ev.stream_version}`, ev.stream_id)],
      ["stream version", num(ev.stream_version)],
      ["partition", link(`/partitions/${ev.partition_id}?from=${ev.partition_sequence}`, `${ev.partition_id}, sequence ${num(ev.partition_sequence)}`)],
      ["partition key", h("span", { class: "mono" }, ev.partition_key)],
      ["transaction id", h("span", { class: "mono" }, ev.transaction_id)],
      ["time", h("span", { id: "event-time" }, fmtTime(ev.timestamp))],
      ["timestamp (ms)", String(ev.timestamp)],
      ["payload", h("div", { id: "payload" }, bytesView(ev.payload, ev.payload_encoding))],
      ["metadata", h("div", { id: "metadata" }, bytesView(ev.metadata, ev.metadata_encoding))]])));
}

// ------------------------------------------------------------------------------- live tail
async function liveView(root, rest, params) {
  const selection = params.get("partitions") || "all";
  let cursor = params.get("from") || "latest";
  let source = null, received = 0, skipped = 0;
  const status = h("span", { class: "badge", id: "live-status" }, "connecting");
  const count = h("span", { class: "muted", id: "live-count" }, "0 events");
  // The feed's tail mode passes over what arrives faster than a person reads (the feed says how
  // many): said here, so that the count of events stays honest about what the table shows.
  const skippedCount = h("span", { id: "live-skipped-count" }, "0");
  const skippedNote = h("span", { class: "muted", id: "live-skipped" }, " · ", skippedCount,
    " not shown: arriving faster than the tail draws; the ", link("/partitions", "partition explorer"), " has all of them");
  skippedNote.hidden = true;
  const table = eventTable([], { showPartition: true });
  table.id = "live-events";
  const pause = h("button", { type: "button", id: "pause", onclick: () => (source ? stop("paused") : start()) }, "Pause");
  root.append(h("h1", {}, "Live tail"),
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); navigate(`/live?partitions=${encodeURIComponent(e.target.elements.partitions.value.trim() || "all")}`); } },
      h("label", {}, "partitions ", h("input", { type: "text", name: "partitions", value: selection, size: 16, title: "all, 3, 1,2 or 0-7" })),
      h("button", { type: "submit" }, "Follow"), pause,
      h("button", { type: "button", onclick: () => { while (table.rows.length > 1) table.deleteRow(1); } }, "Clear"),
      status, count, skippedNote),
    h("p", { class: "muted" }, "Newest first; pausing keeps the position, so resuming shows what arrived meanwhile " +
      `(under load, the newest ${LIVE_TAIL_EVENTS} at each redraw, once a second, and how many were not shown; the table keeps ${LIVE_MAX_ROWS} rows).`),
    table);

  // Under load several batches arrive between redraws: a redraw builds only the newest
  // LIVE_TAIL_EVENTS rows and counts the others as not shown. (Building every row a second
  // that a person cannot read made the browser's redraws cost ~15% of a core at 4k events/s,
  // on the machine the node runs on in the benchmark; see BENCHMARKS.md.)
  let pending = [], frame = 0, lastRender = 0;
  function render() {
    frame = 0;
    lastRender = performance.now();
    count.textContent = `${num(received)} events`;
    skippedCount.textContent = num(skipped);
    skippedNote.hidden = skipped === 0;
    const header = table.rows[0];
    for (const ev of pending) header.after(eventRow(ev, { showPartition: true, fresh: true }));
    pending = [];
    while (table.rows.length > LIVE_MAX_ROWS + 1) table.deleteRow(table.rows.length - 1);
  }

  function start() {
    const q = new URLSearchParams({ partitions: selection, from: cursor, tail: LIVE_TAIL_EVENTS });
    source = new EventSource(`/api/feed?${q}`);
    pause.textContent = "Pause";
    source.addEventListener("ready", (e) => { cursor = e.lastEventId; status.textContent = "live"; status.className = "badge ok"; });
    // A lone event shows at once; under load the table redraws at most once per LIVE_RENDER_MS.
    const redraw = () => {
      if (!frame) frame = setTimeout(() => requestAnimationFrame(render), Math.max(0, lastRender + LIVE_RENDER_MS - performance.now()));
    };
    source.addEventListener("skipped", (e) => {
      cursor = e.lastEventId;
      const n = JSON.parse(e.data).count;
      received += n;
      skipped += n;
      redraw();
    });
    source.addEventListener("events", (e) => {
      cursor = e.lastEventId;
      const events = JSON.parse(e.data);
      received += events.length;
      pending.push(...events.slice(-LIVE_TAIL_EVENTS));
      if (pending.length > LIVE_TAIL_EVENTS) {
        skipped += pending.length - LIVE_TAIL_EVENTS;
        pending.splice(0, pending.length - LIVE_TAIL_EVENTS);
      }
      redraw();
    });
    source.onerror = () => {
      if (source && source.readyState === EventSource.CLOSED) stop("stopped (error)");
      else { status.textContent = "reconnecting"; status.className = "badge bad"; }
    };
  }
  function stop(text) {
    if (source) source.close();
    source = null;
    status.textContent = text;
    status.className = "badge";
    pause.textContent = "Resume";
  }
  start();
  onLeave(() => { if (source) source.close(); clearTimeout(frame); });
}

// ----------------------------------------------------------------------------- projections
const EXAMPLE_CODE = `// Called once per event, in order within each partition.
// Return the new state (the state may also be changed in place).
function project(state, event) {
  state[event.event_name] = (state[event.event_name] || 0) + 1;
  return state;
}`;

function savedProjections() {
  try { return JSON.parse(localStorage.getItem(STORAGE_KEY)) || {}; } catch { return {}; }
}

function encodeShare(obj) {
  const bytes = new TextEncoder().encode(JSON.stringify(obj));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decodeShare(text) {
  const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(raw, (c) => c.charCodeAt(0))));
}

async function projectionsView(root, rest, params) {
  let worker = null;
  const fromHash = location.hash.length > 1 ? (() => { try { return decodeShare(location.hash.slice(1)); } catch { return null; } })() : null;
  const saved = savedProjections();
  const start = fromHash || saved[params.get("name")] || {};
  const code = h("textarea", { id: "code", spellcheck: "false" });
  code.value = start.code || EXAMPLE_CODE;
  code.addEventListener("keydown", (e) => {
    if (e.key !== "Tab") return;
    e.preventDefault();
    code.setRangeText("  ", code.selectionStart, code.selectionEnd, "end");
  });
  const initial = h("textarea", { id: "initial", spellcheck: "false" });
  initial.value = start.initial || "{}";
  const scope = h("select", { id: "scope" }, h("option", { value: "all" }, "all partitions"), h("option", { value: "partition" }, "one partition"), h("option", { value: "stream" }, "one stream"));
  scope.value = start.scope || params.get("scope") || "all";
  const partition = h("input", { type: "number", id: "scope-partition", min: 0, placeholder: "partition", value: start.partition ?? params.get("partition") ?? "" });
  const streamId = h("input", { type: "text", id: "scope-stream", placeholder: "stream id", value: start.stream_id ?? params.get("stream_id") ?? "" });
  const live = h("input", { type: "checkbox", id: "live" });
  live.checked = Boolean(start.live);
  const showScope = () => { partition.hidden = scope.value !== "partition"; streamId.hidden = scope.value !== "stream"; };
  scope.addEventListener("change", showScope);
  showScope();
  const name = h("input", { type: "text", id: "projection-name", placeholder: "name", value: params.get("name") || "" });
  const runButton = h("button", { class: "primary", id: "run", onclick: run }, "Run");
  const abortButton = h("button", { class: "danger", id: "abort", disabled: true, onclick: () => finish("aborted") }, "Abort");
  const status = h("span", { class: "badge", id: "projection-status" }, "idle");
  const progress = h("div", { id: "progress", class: "muted" });
  const positions = h("div", { class: "positions", id: "positions" });
  const errorBox = h("section", { class: "card", id: "projection-error", hidden: true });
  const result = h("div", { class: "tree", id: "result" }, h("span", { class: "muted" }, "Run the projection to see its state."));
  const savedList = h("ul", { class: "saved", id: "saved" });
  const importInput = h("input", { type: "file", accept: "application/json,.json", id: "import", hidden: true, onchange: importFile });

  root.append(h("h1", {}, "Projections"),
    h("p", { class: "muted" }, "Your function runs in a Web Worker in this browser, never on the node. " +
      "Events arrive in the API's JSON shape; an exception stops the run and shows the event."),
    h("div", { class: "editor" },
      h("div", {}, h("label", { for: "code" }, h("h2", {}, "function project(state, event)")), code),
      h("div", {}, h("label", { for: "initial" }, h("h2", {}, "Initial state (JSON)")), initial,
        h("h2", {}, "Saved in this browser"), savedList,
        h("div", { class: "toolbar" }, name, h("button", { id: "save", onclick: save }, "Save")),
        h("div", { class: "toolbar" }, h("button", { id: "export", onclick: exportFile }, "Export all"),
          h("button", { onclick: () => importInput.click() }, "Import…"), importInput,
          h("button", { id: "share", onclick: share }, "Copy link")))),
    h("div", { class: "toolbar" }, "Run over ", scope, partition, streamId,
      h("label", {}, live, " keep running on live events"), runButton, abortButton, status),
    progress, positions, errorBox, h("h2", {}, "State"), result);
  renderSaved();
  onLeave(() => worker && worker.terminate());

  function current() {
    return { code: code.value, initial: initial.value, scope: scope.value, partition: partition.value, stream_id: streamId.value, live: live.checked };
  }

  function run() {
    if (worker) worker.terminate();
    errorBox.hidden = true;
    clear(positions);
    status.textContent = "running"; status.className = "badge";
    progress.textContent = "starting…";
    runButton.disabled = true; abortButton.disabled = false;
    const started = performance.now();
    worker = new Worker("/static/projection-worker.js");
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.type === "progress") {
        const seconds = (performance.now() - started) / 1000;
        progress.textContent = `${num(m.processed)} events processed in ${seconds.toFixed(1)} s` +
          (m.phase === "live" ? " · caught up, following live events" : "");
        progress.dataset.processed = m.processed;
        clear(positions);
        for (const [p, next] of Object.entries(m.positions)) positions.append(h("span", {}, `p${p}: ${num(next)}`));
      } else if (m.type === "state") {
        clear(result);
        result.append(jsonTree(JSON.parse(m.state)));
        result.dataset.state = m.state;
      } else if (m.type === "caught-up") {
        status.textContent = m.live ? "live" : "done"; status.className = "badge ok";
        if (!m.live) finish("done");
      } else if (m.type === "error") {
        showError(m);
        finish("failed");
      }
    };
    worker.onerror = (e) => { showError({ message: e.message || "the worker failed" }); finish("failed"); };
    worker.postMessage({ type: "start", ...current() });
  }

  function finish(text) {
    if (worker) worker.terminate();
    worker = null;
    runButton.disabled = false; abortButton.disabled = true;
    status.textContent = text;
    status.className = text === "failed" ? "badge bad" : text === "done" ? "badge ok" : "badge";
  }

  function showError(m) {
    clear(errorBox);
    errorBox.hidden = false;
    errorBox.append(h("h2", { class: "error" }, m.phase === "compile" ? "The projection does not compile" : "The projection threw"),
      h("pre", { id: "error-message" }, m.message + (m.stack ? "\n" + m.stack : "")));
    if (m.event) {
      const ev = m.event;
      errorBox.append(h("p", {}, "while projecting the event at partition ", link(`/partitions/${ev.partition_id}?from=${ev.partition_sequence}`, `${ev.partition_id}, sequence ${ev.partition_sequence}`),
        " (stream ", ev.stream_id, ", version ", String(ev.stream_version), "):"),
      h("div", { id: "error-event" }, eventTable([ev], { showPartition: true })), h("div", {}, bytesView(ev.payload, ev.payload_encoding)));
    }
  }

  function renderSaved() {
    clear(savedList);
    const all = savedProjections();
    if (!Object.keys(all).length) savedList.append(h("li", { class: "muted" }, "none yet"));
    for (const key of Object.keys(all).sort()) {
      savedList.append(h("li", {}, link(`/projections?name=${encodeURIComponent(key)}`, key), " ",
        h("button", { class: "danger", onclick: () => { const a = savedProjections(); delete a[key]; localStorage.setItem(STORAGE_KEY, JSON.stringify(a)); renderSaved(); } }, "delete")));
    }
  }

  function save() {
    const key = name.value.trim();
    if (!key) { name.focus(); return; }
    const all = savedProjections();
    all[key] = current();
    localStorage.setItem(STORAGE_KEY, JSON.stringify(all));
    renderSaved();
  }

  function exportFile() {
    const blob = new Blob([JSON.stringify({ sierradb_projections: 1, projections: savedProjections() }, null, 2)], { type: "application/json" });
    const a = h("a", { href: URL.createObjectURL(blob), download: "sierradb-projections.json" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  function importFile() {
    const file = importInput.files[0];
    if (!file) return;
    file.text().then((text) => {
      const data = JSON.parse(text);
      const incoming = data && data.projections;
      if (!incoming || typeof incoming !== "object") throw new Error("not a SierraDB projections file");
      const all = savedProjections();
      for (const [k, v] of Object.entries(incoming)) if (v && typeof v.code === "string") all[k] = v;
      localStorage.setItem(STORAGE_KEY, JSON.stringify(all));
      renderSaved();
    }).catch((e) => showError({ phase: "compile", message: `import failed: ${e.message}` }));
    importInput.value = "";
  }

  function share() {
    const url = `${location.origin}/projections#${encodeShare(current())}`;
    history.replaceState(null, "", url);
    if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
  }
}

// ------------------------------------------------------------------------------- startup
document.getElementById("time-toggle").addEventListener("click", (e) => {
  timeMode = timeMode === "utc" ? "local" : "utc";
  localStorage.setItem("sierradb.time", timeMode);
  e.target.textContent = timeMode === "utc" ? "UTC" : "Local";
  // Re-render views that hold no user input; the live tail and projections apply it to new rows.
  if (!["/live", "/projections"].includes(location.pathname)) route();
});
document.getElementById("time-toggle").textContent = timeMode === "utc" ? "UTC" : "Local";
fetch("/api/overview").then((r) => r.ok && r.json()).then((o) => { if (o) document.getElementById("logout").hidden = !o.node.password; }).catch(() => {});
route();
