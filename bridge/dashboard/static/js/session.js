// The page's MQTT connection (MQTT.js over WebSockets): login, reconnection, subscriptions, and request/response.
import { OFFLINE, ONLINE, RESPONSE_TOPIC, REQUEST_TOPIC, STATE_TOPIC, TOPICS, topic } from "./contract.js";

const CONNECT_TIMEOUT_MS = 10000;
const RECONNECT_MS = 2000;
const REQUEST_TIMEOUT_MS = 10000;
const BUSY_RETRY_MS = 1000;
const KEEPALIVE_S = 20;

/** Why a login failed, as the user should read it. */
export class LoginError extends Error {}

/** The words for MQTT 3.1.1's CONNACK refusals (codes 1..5). */
const REFUSALS = {
  1: "the broker refused the protocol version",
  2: "the broker refused the client id",
  3: "the broker is unavailable",
  4: "wrong user name or password",
  5: "not authorized: wrong user name or password, or this user may not log in here",
};

/** A logged-in MQTT connection of one user; events "connection" {state, reconnected}, "bridge" {state} and
 *  "role" {role, commands}. */
export class Session extends EventTarget {
  /** @param {string} url @param {string} user @param {string} password */
  constructor(url, user, password) {
    super();
    this.url = url;
    this.user = user;
    this._password = password;
    /** @type {string|null} */ this.role = null;
    /** @type {string[]|null} */ this.commands = null;
    /** @type {string[]|null} */ this.reasonCodes = null;
    this._learnt = false;
    this.state = "connecting";
    this.bridge = "unknown";
    this.client = null;
    this._pending = new Map();
    this._next = 1;
    this._connectedOnce = false;
    this._responses = topic(RESPONSE_TOPIC, { user, command: "" });  // the prefix of this user's answers
    /** @type {(topic: string, payload: string) => void} */ this.onEvent = () => {};
  }

  /** Connect and subscribe; rejects with a LoginError saying why the broker or the network refused. */
  open() {
    // Both brokers let a user take only the client id of its name, or its name and ":anything".
    const id = `${this.user}:dashboard-${Math.random().toString(36).slice(2, 10)}`;
    this._transactionPrefix = id;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (message) => {
        if (settled) return;
        settled = true;
        this._setState("closed");
        this.client?.end(true);
        reject(new LoginError(message));
      };
      const client = mqtt.connect(this.url, {
        username: this.user, password: this._password, clientId: id, clean: true, protocolVersion: 4,
        keepalive: KEEPALIVE_S, connectTimeout: CONNECT_TIMEOUT_MS, reconnectPeriod: 0, resubscribe: true,
      });
      this._password = null;  // MQTT.js keeps it in its options for reconnecting; the page keeps no copy
      this.client = client;
      client.on("connect", () => {
        const reconnected = this._connectedOnce;
        this._connectedOnce = true;
        client.options.reconnectPeriod = RECONNECT_MS;
        this._subscribe().then(() => {
          this._setState("online", reconnected);
          if (!settled) { settled = true; resolve(); }
        }, (error) => fail(`the broker refused the subscriptions: ${error.message}`));
      });
      client.on("error", (error) => {
        if (!this._connectedOnce) fail(REFUSALS[error.code] ?? `cannot connect to ${this.url}: ${error.message}`);
      });
      client.on("close", () => {
        if (!this._connectedOnce) fail(`cannot reach the broker at ${this.url}`);
        else if (this.state !== "closed") this._setState("reconnecting");
      });
      client.on("offline", () => { if (this._connectedOnce && this.state !== "closed") this._setState("reconnecting"); });
      client.on("message", (name, payload) => this._message(name, payload.toString()));
    });
  }

  /** Take the user's role, commands and the bridge's reason codes from a history answer; event "role". */
  learn(history) {
    if (!("commands" in history)) return;
    this._learnt = true;
    this.role = history.role ?? null;
    this.commands = history.commands ?? null;
    this.reasonCodes = history.reason_codes?.length ? history.reason_codes : null;
    this.dispatchEvent(new CustomEvent("role", { detail: { role: this.role, commands: this.commands } }));
  }

  /** Whether to offer ``command``: nothing before the bridge has said (event "role"), everything when it cannot
   *  say (it runs without --users: the broker's ACL then decides). */
  can(command) {
    return this._learnt && (this.commands === null || this.commands.includes(command));
  }

  /** Send a command and wait for the bridge's answer; its data, or an Error with the bridge's reason. */
  request(command, body, { timeout = REQUEST_TIMEOUT_MS } = {}) {
    const deadline = performance.now() + timeout;
    const attempt = () => new Promise((resolve, reject) => {
      const transaction = `${this._transactionPrefix}-${this._next++}`;
      const left = Math.max(0, deadline - performance.now());
      const timer = setTimeout(() => {
        this._pending.delete(transaction);
        reject(new Error(`no answer to ${command} within ${Math.round(timeout / 1000)} s: is the bridge running, `
                         + `and may user ${this.user} send ${command}?`));
      }, left);
      this._pending.set(transaction, (response) => {
        clearTimeout(timer);
        this._pending.delete(transaction);
        if (response.status === "ok") resolve(response.data);
        else if (response.status === "busy" && performance.now() + BUSY_RETRY_MS < deadline) {
          setTimeout(() => attempt().then(resolve, reject), BUSY_RETRY_MS);
        } else reject(new Error(response.error ?? response.status));
      });
      this.client.publish(topic(REQUEST_TOPIC, { user: this.user, command }),
                          JSON.stringify({ ...body, transaction }), { qos: 1 }, (error) => {
        if (error) { clearTimeout(timer); this._pending.delete(transaction); reject(error); }
      });
    });
    return attempt();
  }

  /** Disconnect for good. */
  close() {
    this._setState("closed");
    this.client?.end(true);
    for (const settle of this._pending.values()) settle({ status: "error", error: "logged out" });
  }

  _subscribe() {
    const filters = [...Object.values(TOPICS).map((template) => topic(template, { id: "+" })), STATE_TOPIC,
                     topic(RESPONSE_TOPIC, { user: this.user, command: "+" })];
    return new Promise((resolve, reject) => {
      this.client.subscribe(filters, { qos: 1 }, (error, granted) => {
        const refused = (granted ?? []).filter((grant) => grant.qos === 128).map((grant) => grant.topic);
        if (error) reject(error);
        else if (refused.length) reject(new Error(refused.join(", ")));
        else resolve();
      });
    });
  }

  _message(name, text) {
    if (name === STATE_TOPIC) {
      this.bridge = text === ONLINE ? "online" : text === OFFLINE ? "offline" : "unknown";
      this.dispatchEvent(new CustomEvent("bridge", { detail: { state: this.bridge } }));
      return;
    }
    if (name.startsWith(this._responses)) {
      let response;
      try { response = JSON.parse(text); } catch { return; }
      this._pending.get(response.transaction)?.(response);
      return;
    }
    this.onEvent(name, text);
  }

  _setState(state, reconnected = false) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("connection", { detail: { state, reconnected } }));
  }
}
