// A Sparkplug B edge node for spc-bridge's tests: Eclipse Tahu's JavaScript client (npm sparkplug-client), driven
// by one JSON command per line on stdin, answering one JSON line per command on stdout ({"ok": true, ...} or
// {"ok": false, "error": ...}) and reporting what happens meanwhile as {"event": ...} lines.
//
// Commands: start, nbirth, dbirth, ndata, ddata, ddeath, skip_seq, restart, kill, stop (tests/sparkplug_peer.py).
// Metrics are given as sparkplug-payload takes them: {name, alias, type, value, timestamp, isHistorical, ...};
// a value of null is sent as is_null. Events: close (the connection ended), birth (mqtt.js reconnected by
// itself and the births were re-published; a start or restart answers instead), ncmd / dcmd (with the decoded
// metrics), rebirth (births re-published after an NCMD Node Control/Rebirth), error.
//
// What sparkplug-client 3.2.4 leaves to its application, and this driver does:
// - bdSeq: the client sends bdSeq = client.bdSeq in the NBIRTH and in the NDEATH of stop(), but never changes it,
//   and builds its will (the NDEATH the broker sends) once, in its constructor. Sparkplug 3.0 wants a new bdSeq
//   for every MQTT session, equal in the will and in the NBIRTH; so after every closed connection the driver
//   increments client.bdSeq and re-encodes the will that mqtt.js sends in its next CONNECT.
// - births: on each connect the client only emits "birth"; the driver then re-publishes the last NBIRTH and the
//   DBIRTHs of the devices not dead since, and does the same on an NCMD Node Control/Rebirth.
// - The host's STATE (spBv1.0/STATE/<host>) is not watched: the client neither subscribes to it nor could
//   decode its JSON (it decodes every message as protobuf).
"use strict";

const readline = require("readline");
const sparkplug = require("sparkplug-client");

const REBIRTH = "Node Control/Rebirth";
const FLUSH_TIMEOUT_MS = 5000;

let client = null; // the SparkplugClient
let nodeBirth = null; // metrics of the last NBIRTH
const deviceBirths = new Map(); // device id -> metrics of its last DBIRTH, while the device lives
let pendingBirth = null; // {resolve, reject} of a start or restart waiting for the connection

function emit(message) {
  process.stdout.write(JSON.stringify(message, jsonValue) + "\n");
}

// protobufjs gives 64-bit integers as Long objects: a number where it is exact, else a decimal string.
function jsonValue(key, value) {
  if (value !== null && typeof value === "object" && typeof value.low === "number" &&
      typeof value.high === "number" && "unsigned" in value) {
    const number = Number(value.toString());
    return Number.isSafeInteger(number) ? number : value.toString();
  }
  return value;
}

function payload(metrics, timestamp) {
  // The client adds seq (and bdSeq to an NBIRTH) to the object it is given: give it a fresh copy every time.
  return { timestamp: timestamp ?? Date.now(), metrics: structuredClone(metrics ?? []) };
}

function started() {
  if (client === null) throw new Error("not started");
  return client;
}

function mqtt() {
  return started().client; // the SparkplugClient's mqtt.js client
}

function publishBirths() {
  if (nodeBirth === null) return 0;
  client.publishNodeBirth(payload(nodeBirth));
  for (const [device, metrics] of deviceBirths) client.publishDeviceBirth(device, payload(metrics));
  return 1 + deviceBirths.size;
}

function waitForBirth() {
  return new Promise((resolve, reject) => { pendingBirth = { resolve, reject }; });
}

function settleBirth(error) {
  const pending = pendingBirth;
  pendingBirth = null;
  if (pending !== null) error ? pending.reject(error) : pending.resolve();
}

function nextSession() {
  // The NDEATH of stop() has gone out with the old bdSeq; the will of the next CONNECT carries the new one.
  client.bdSeq = (client.bdSeq + 1) % 256;
  mqtt().options.will.payload = Buffer.from(client.encodePayload(client.getDeathPayload()));
}

function commandMetrics(message) {
  return (message.metrics ?? []).map((m) => ({ name: m.name, alias: m.alias, type: m.type, value: m.value }));
}

function isRebirth(message) {
  return (message.metrics ?? []).some((m) => m.name === REBIRTH && m.value === true);
}

function start(command) {
  if (client !== null) throw new Error("already started");
  client = sparkplug.newClient({
    serverUrl: command.url, username: command.username, password: command.password, clientId: command.client_id,
    groupId: command.group, edgeNode: command.node, version: "spBv1.0", publishDeath: true,
    mqttOptions: { reconnectPeriod: 1000 },
  });
  client.on("birth", () => {
    const births = publishBirths();
    if (pendingBirth !== null) settleBirth(null);
    else emit({ event: "birth", births }); // mqtt.js reconnected by itself
  });
  client.on("error", (error) => {
    if (pendingBirth !== null) settleBirth(error);
    else emit({ event: "error", error: String(error.message ?? error) });
  });
  client.on("ncmd", (message) => {
    emit({ event: "ncmd", metrics: commandMetrics(message) });
    if (isRebirth(message)) emit({ event: "rebirth", births: publishBirths() });
  });
  client.on("dcmd", (device, message) => emit({ event: "dcmd", device, metrics: commandMetrics(message) }));
  mqtt().on("close", () => {
    nextSession();
    emit({ event: "close" });
  });
  return waitForBirth();
}

function ended() {
  const connection = mqtt();
  return connection.disconnected ? Promise.resolve() : new Promise((resolve) => connection.once("end", resolve));
}

async function flushed() {
  // Bytes mqtt.js has written but the socket still buffers would be lost by destroying it.
  const stream = mqtt().stream;
  const deadline = Date.now() + FLUSH_TIMEOUT_MS;
  while (stream.writableLength > 0) {
    if (Date.now() > deadline) throw new Error(`socket not flushed within ${FLUSH_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function restart() {
  const done = ended();
  started().stop(); // NDEATH with this session's bdSeq, then DISCONNECT
  await done;
  const birth = waitForBirth();
  mqtt().reconnect();
  await birth;
  return { bdSeq: client.bdSeq };
}

async function stop() {
  if (client !== null) {
    const done = ended();
    client.stop();
    await done;
  }
  return {};
}

async function kill() {
  await flushed();
  const connection = mqtt();
  await new Promise((resolve) => connection.end(true, resolve)); // destroys the socket: no DISCONNECT, the will
  return {};
}

const OPERATIONS = {
  start: async (c) => {
    try {
      await start(c);
    } catch (error) {
      client = null; // the client has ended its connection: a new start may follow
      throw error;
    }
    return { bdSeq: client.bdSeq };
  },
  nbirth: (c) => {
    const p = payload(c.metrics, c.timestamp);
    started().publishNodeBirth(p);
    nodeBirth = c.metrics;
    deviceBirths.clear();
    return { seq: p.seq, bdSeq: client.bdSeq };
  },
  dbirth: (c) => {
    const p = payload(c.metrics, c.timestamp);
    started().publishDeviceBirth(c.device, p);
    deviceBirths.set(c.device, c.metrics);
    return { seq: p.seq };
  },
  ndata: (c) => {
    const p = payload(c.metrics, c.timestamp);
    started().publishNodeData(p);
    return { seq: p.seq };
  },
  ddata: (c) => {
    const p = payload(c.metrics, c.timestamp);
    started().publishDeviceData(c.device, p);
    return { seq: p.seq };
  },
  ddeath: (c) => {
    const p = payload([], c.timestamp);
    started().publishDeviceDeath(c.device, p);
    deviceBirths.delete(c.device);
    return { seq: p.seq };
  },
  // The client's own seq counter (0..255, wrapping) is a plain field: consuming one number the way a publish
  // does makes the next message's seq jump by one, with no message and no copy of the wrap rule here.
  skip_seq: () => ({ skipped: started().incrementSeqNum() }),
  restart: () => restart(),
  kill: () => kill(),
  stop: () => stop(),
};

const EXITING = new Set(["kill", "stop"]);

async function handle(line) {
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    emit({ ok: false, error: `not JSON: ${error.message}` });
    return;
  }
  const operation = OPERATIONS[command.op];
  if (operation === undefined) {
    emit({ ok: false, op: command.op, error: `unknown op ${JSON.stringify(command.op)}` });
    return;
  }
  try {
    emit({ ok: true, op: command.op, ...(await operation(command)) });
  } catch (error) {
    emit({ ok: false, op: command.op, error: String(error.message ?? error) });
    return;
  }
  if (EXITING.has(command.op)) process.exit(0);
}

// An exception thrown by the client inside mqtt.js (a command payload that is not protobuf, for one) leaves
// mqtt.js's packet handling stuck: report it and exit rather than go on half-working.
process.on("uncaughtException", (error) => {
  emit({ event: "error", error: String(error.stack ?? error) });
  process.exit(1);
});

let queue = Promise.resolve();
const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => { queue = queue.then(() => handle(line)); });
// The test process is gone: leave as an edge node shutting down would.
input.on("close", () => { queue = queue.then(() => stop()).then(() => process.exit(0)); });
