// A dashboard over MQTT.js: the retained limits, live samples and violations of one characteristic, and an
// "Acknowledge" button per violation that sends the operator's request. Everything comes from the JSON in the
// URL's fragment (broker URL, user, password, topics: the test takes them from bridge/contract.py).
"use strict";

const config = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const topics = config.topics;
const seen = { limits: null, samples: [], violations: [], acks: [], responses: [] };
const report = (event) => window.spcReport?.(event);
const $ = (id) => document.getElementById(id);

document.title = $("title").textContent = `Characteristic ${config.characteristic_id}`;

function cell(row, text) {
  row.insertCell().textContent = text;
}

function showLimits(limits) {
  seen.limits = limits;
  $("limits").textContent = `${limits.phase}: center ${limits.center}, UCL ${limits.ucl}, LCL ${limits.lcl}`;
}

function showSample(sample) {
  seen.samples.push(sample);
  const row = $("samples").insertRow();
  cell(row, sample.sample_id);
  cell(row, sample.value);
  cell(row, sample.zone);
}

function showViolation(violation) {
  seen.violations.push(violation);
  const item = document.createElement("li");
  item.id = `violation-${violation.violation_id}`;
  item.textContent = `${violation.severity} rule ${violation.rule_id} (${violation.rule_name}) at sample ${violation.sample_id} `;
  const button = document.createElement("button");
  button.className = "ack";
  button.dataset.violationId = violation.violation_id;
  button.textContent = "Acknowledge";
  button.onclick = () => {
    button.disabled = true;
    const request = {
      violation_id: violation.violation_id, reason_code: "tool_wear", reason: $("reason").value,
      transaction: violation.violation_id,
    };
    // The driver checks that its click reached this handler; the report says when the broker has the request.
    window.spcAckSent = true;
    client.publish(topics.ack_request, JSON.stringify(request), { qos: 1 }, (error) =>
      report(error ? { event: "failed", message: `ack request: ${error}` } : { event: "ack-sent" }));
  };
  item.append(button);
  $("violations").append(item);
}

function showAck(ack) {
  seen.acks.push(ack);
  const item = $(`violation-${ack.violation_id}`);
  item.querySelector("button")?.remove();
  item.append(`acknowledged by ${ack.ack_user}: ${ack.ack_reason}`);
}

function showResponse(response) {
  seen.responses.push(response);
  $("response").textContent = response.status === "ok" ? "acknowledged" : `refused: ${response.error}`;
}

// What has arrived so far: the driver's report when the page times out.
window.spcSeen = () => ({ limits: seen.limits !== null, samples: seen.samples.length, violations: seen.violations.length,
                          acks: seen.acks.length, responses: seen.responses.length });

function finishWhenComplete() {
  if (seen.limits && seen.samples.length >= config.samples && seen.acks.length >= 1 && seen.responses.length >= 1) {
    report({
      event: "done",
      seen,
      shown: {
        limits: $("limits").textContent,
        samples: [...$("samples").rows].slice(1).map((row) => [...row.cells].map((c) => c.textContent)),
        violations: [...$("violations").children].map((item) => item.textContent),
        response: $("response").textContent,
      },
    });
  }
}

const handlers = {
  [topics.limits]: showLimits,
  [topics.sample]: showSample,
  [topics.violation]: showViolation,
  [topics.ack]: showAck,
  [topics.ack_response]: showResponse,
};

const client = mqtt.connect(config.url, {
  username: config.username,
  password: config.password,
  // Both brokers admit a user's own client ids only: its name or `<name>:<anything>` (MQTT.js's default,
  // mqttjs_<random>, is nobody's).
  clientId: `${config.username}:browser-${Math.random().toString(16).slice(2, 10)}`,
  protocolVersion: 4,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 10000,
});
client.on("error", (error) => report({ event: "failed", message: String(error) }));
client.on("message", (topic, payload) => {
  handlers[topic]?.(JSON.parse(payload.toString()));
  finishWhenComplete();
});
client.on("connect", () => {
  $("connection").textContent = `connected to ${config.url} as ${config.username}`;
  client.subscribe(Object.keys(handlers), { qos: 1 }, (error, granted) => {
    const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
    if (error || refused.length) {
      report({ event: "failed", message: String(error ?? `subscriptions refused: ${refused}`) });
    } else {
      report({ event: "ready" });
    }
  });
});
