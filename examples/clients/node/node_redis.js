// SierraDB from node-redis 4 (npm "redis"), default settings (RESP2).
//   node examples/clients/node/node_redis.js [port]
// node-redis cannot receive frames nobody asked for, so the consumer uses EPREAD ... BLOCK.
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { createClient } = require("redis");

const port = Number(process.argv[2] || 9090);
const asMap = (flat) => {
  const m = {};
  for (let i = 0; i < flat.length; i += 2) m[String(flat[i])] = flat[i + 1];
  return m;
};

async function main() {
  const r = createClient({ socket: { port } });
  await r.connect();
  const cmd = (...args) => r.sendCommand(args.map(String));
  const stream = "account-" + crypto.randomBytes(4).toString("hex");

  // Append with an expected version; a conflict's error code reaches the caller.
  const opened = asMap(await cmd("EAPPEND", stream, "Opened", "PAYLOAD", '{"owner":"ann"}',
                                 "EXPECTED_VERSION", "empty"));
  await cmd("EAPPEND", stream, "Deposited", "PAYLOAD", '{"amount":10}', "EXPECTED_VERSION", 0);
  await assert.rejects(cmd("EAPPEND", stream, "Deposited", "EXPECTED_VERSION", 0),
                       (e) => e.message.startsWith("WRONGVER"));
  const partition = opened.partition_id;

  // Several events in one partition, atomically.
  const multi = asMap(await cmd("EMAPPEND", opened.partition_key, stream, "A", stream, "B"));
  assert.deepEqual(multi.events.map((e) => asMap(e).stream_version), [2, 3]);

  // Read back by stream, by partition and by event id.
  const all = asMap(await cmd("ESCAN", stream, "-", "+")).events.map(asMap);
  assert.deepEqual(all.map((e) => e.event_name), ["Opened", "Deposited", "A", "B"]);
  const seq = opened.partition_sequence;
  const byPartition = asMap(await cmd("EPSCAN", partition, seq, seq)).events.map(asMap);
  assert.equal(byPartition[0].event_id, opened.event_id);
  assert.equal(asMap(await cmd("EGET", opened.event_id)).event_name, "Opened");

  // Page to the end.
  const versions = [];
  for (let start = 0; ;) {
    const page = asMap(await cmd("ESCAN", stream, start, "+", "COUNT", 3));
    const got = page.events.map((e) => asMap(e).stream_version);
    versions.push(...got);
    if (!page.has_more) break;
    start = got[got.length - 1] + 1;
  }
  assert.deepEqual(versions, [0, 1, 2, 3]);

  // 50 pipelined appends (node-redis pipelines commands sent together).
  const piped = await Promise.all(
    Array.from({ length: 50 }, (_, i) => cmd("EAPPEND", stream, "Piped", "PAYLOAD", i)));
  assert.deepEqual(piped.map((x) => asMap(x).stream_version),
                   Array.from({ length: 50 }, (_, i) => i + 4));

  // Binary payload round trip (Buffers in, Buffers out).
  const blob = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 256));
  const stored = asMap(await r.sendCommand(["EAPPEND", stream, "Blob", "PAYLOAD", blob]));
  const back = asMap(await r.sendCommand(["EGET", stored.event_id], { returnBuffers: true }));
  assert.ok(back.payload.equals(blob));

  // A consumer follows the partition from sequence 0 into live events while another
  // connection appends; every event once, in order.
  const LIVE = 30;
  const writer = r.duplicate();
  await writer.connect();
  let writerDone = false;
  const writing = (async () => {
    for (let i = 0; i < LIVE; i++) {
      await writer.sendCommand(["EAPPEND", stream, "Live", "PAYLOAD", String(i)]);
    }
    writerDone = true;
  })();
  const consumer = r.duplicate(); // a blocked read holds its connection
  await consumer.connect();
  const seen = [];
  let position = 0;
  for (;;) {
    if (writerDone && position > (await cmd("EPSEQ", partition))) break;
    const reply = await consumer.sendCommand(
      ["EPREAD", "COUNT", "100", "BLOCK", "2000", "FROM", String(partition), String(position)]);
    for (let i = 1; i < reply.length; i += 2) {
      for (const e of asMap(reply[i]).events.map(asMap)) {
        assert.equal(e.partition_sequence, position);
        seen.push(e);
        position += 1;
      }
    }
  }
  await writing;
  const mine = seen.filter((e) => e.stream_id === stream);
  assert.deepEqual(mine.map((e) => e.stream_version), mine.map((_, i) => i));
  assert.deepEqual(mine.filter((e) => e.event_name === "Live").map((e) => e.payload),
                   Array.from({ length: LIVE }, (_, i) => String(i)));
  await Promise.all([r.quit(), writer.quit(), consumer.quit()]);
  console.log("OK node-redis");
}

main().catch((e) => { console.error(e); process.exit(1); });
