// A client of the OpenSPC WebSocket protocol as its documentation writes one, with the browser's own WebSocket: first
// without the token (the gateway must refuse it), then with it: subscribe, ping, and every notification shown.
// Configuration: the JSON in the URL's fragment (url, token, characteristic_ids, expect: {type: count}).
"use strict";

const config = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const report = (event) => window.spcReport?.(event);
const received = [];
let refusal = null;

function show(text) {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("messages").append(item);
}

function complete() {
  return Object.entries(config.expect).every(([type, count]) => received.filter((m) => m.type === type).length >= count);
}

function connect() {
  const ws = new WebSocket(`${config.url}?token=${encodeURIComponent(config.token)}`);
  ws.onopen = () => {
    document.getElementById("connection").textContent = "connected";
    ws.send(JSON.stringify({ type: "subscribe", characteristic_ids: config.characteristic_ids }));
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    received.push(message);
    switch (message.type) {
      case "subscribed":
        ws.send(JSON.stringify({ type: "ping" }));
        break;
      case "pong":
        report({ event: "ready" });
        break;
      case "sample":
        show(`sample ${message.payload.sample_id} of ${message.payload.characteristic_id}: ${message.payload.value} (${message.payload.zone})`);
        break;
      case "violation":
        show(`violation ${message.payload.violation_id}: ${message.payload.rule_name} (${message.payload.severity})`);
        break;
      case "ack_update":
        show(`violation ${message.payload.violation_id} acknowledged by ${message.payload.ack_user}: ${message.payload.ack_reason}`);
        break;
      case "error":
        show(`error: ${message.message}`);
        break;
    }
    if (complete()) {
      const shown = [...document.getElementById("messages").children].map((item) => item.textContent);
      report({ event: "done", refusal, received, shown });
    }
  };
  ws.onclose = (event) => report({ event: "failed", message: `closed ${event.code} ${event.reason}` });
  setInterval(() => ws.send(JSON.stringify({ type: "ping" })), 30000);  // the protocol's heartbeat
}

// Without the token: the handshake is refused (HTTP 401), which a browser reports as a close with code 1006.
const bare = new WebSocket(config.url);
bare.onopen = () => { refusal = { opened: true }; bare.close(); };
bare.onclose = (event) => {
  refusal ??= { opened: false, code: event.code };
  connect();
};
