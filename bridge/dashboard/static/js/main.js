// The page: login, the header's connection states, routing between the views, and the test hook.
import { createChartView } from "./chart.js";
import { $, perFrame } from "./dom.js";
import { createInbox } from "./inbox.js";
import { createOverview } from "./overview.js";
import { LoginError, Session } from "./session.js";
import { Store } from "./store.js";

const HOST_PLACEHOLDER = "{host}";
const FIRST_CHARACTERISTIC_MS = 3000;  // retained limits arrive at once; wait this long for one to ask the role
const CONNECTION_TEXT = { connecting: "◌ Connecting…", online: "● Connected", reconnecting: "◌ Reconnecting…",
                          closed: "✕ Disconnected" };
const BRIDGE_TEXT = { online: "✓ Bridge online", offline: "✕ Bridge OFFLINE", unknown: "? Bridge: unknown" };

/** The broker's WebSocket URL: config.json's, or the origin's own /mqtt (Mosquitto's http_dir). */
async function brokerUrl() {
  let configured = null;
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) configured = (await response.json()).broker_ws ?? null;
  } catch { /* no config.json: served by the broker itself */ }
  if (configured) return configured.replace(HOST_PLACEHOLDER, location.hostname);
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/mqtt`;
}

function setState(node, state, text) {
  node.dataset.state = state;
  node.textContent = text;
}

/** Show one view and hide the others. */
function showOnly(id) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== id;
}

/** Wait (bounded) until the store knows one characteristic; its id or null. */
function firstCharacteristic(store) {
  const known = store.list()[0];
  if (known) return Promise.resolve(known.id);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { store.removeEventListener("characteristic", seen); resolve(null); },
                             FIRST_CHARACTERISTIC_MS);
    const seen = (event) => { clearTimeout(timer); store.removeEventListener("characteristic", seen); resolve(event.detail.id); };
    store.addEventListener("characteristic", seen);
  });
}

function start(session, store) {
  const navigate = (path) => { location.hash = path; };
  const views = {
    overview: createOverview($("overview-view"), { store, session, navigate }),
    inbox: createInbox($("inbox-view"), { store, session, characteristicId: null }),
    chart: createChartView($("chart-view"), { store, session, navigate }),
  };
  let current = null;
  const route = () => {
    const hash = location.hash || "#/overview";
    const chart = /^#\/c\/(\d+)$/.exec(hash);
    const [name, view] = chart ? ["chart", "chart-view"] : hash === "#/inbox" ? ["inbox", "inbox-view"]
      : ["overview", "overview-view"];
    if (current && current !== name) views[current].hide();
    document.body.classList.toggle("kiosk", hash === "#/kiosk");
    views.overview.setKiosk(hash === "#/kiosk");
    showOnly(view);
    current = name;
    if (chart) views.chart.show(Number(chart[1]));
    else views[name].show();
  };
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("kiosk") && !document.querySelector("dialog[open]")) {
      navigate("#/overview");
    }
  });
  route();

  const count = perFrame(() => { $("inbox-count").textContent = String(store.openCount); });
  store.addEventListener("violations", count);
  count();
}

function loggedIn(session, store) {
  $("bar").hidden = false;
  $("user-name").textContent = session.user;
  const showRole = () => { $("user-role").textContent = session.role ?? "role unknown"; };
  session.addEventListener("role", showRole);
  session.addEventListener("connection", (event) => {
    setState($("conn-state"), event.detail.state, CONNECTION_TEXT[event.detail.state]);
    if (event.detail.reconnected) store.refresh(session, { all: true });  // fetch what was missed while away
  });
  session.addEventListener("bridge", (event) => setState($("bridge-state"), event.detail.state, BRIDGE_TEXT[event.detail.state]));
  setState($("conn-state"), session.state, CONNECTION_TEXT[session.state]);
  setState($("bridge-state"), session.bridge, BRIDGE_TEXT[session.bridge]);
  $("logout").addEventListener("click", () => {
    session.close();
    history.replaceState(null, "", location.pathname);
    location.reload();  // drops everything the page held
  });
  window.spcDashboard = Object.assign(window.spcDashboard ?? {}, { store, session });
  start(session, store);
  firstCharacteristic(store).then((id) => {
    if (id !== null) store.ensureHistory(id, session).catch(() => null).then(() => store.refresh(session));
  });
}

async function main() {
  const url = await brokerUrl();
  $("login-broker").textContent = `Broker: ${url}`;
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password");
    $("login-error").textContent = "";
    if (!user) { $("login-error").textContent = "Enter your user name."; return; }
    $("login-submit").disabled = true;
    const store = new Store();
    const session = new Session(url, user, password.value);
    password.value = "";
    session.onEvent = (name, text) => store.apply(name, text);
    try {
      await session.open();
    } catch (error) {
      $("login-error").textContent = `Login refused: ${error instanceof LoginError ? error.message : error}`;
      $("login-submit").disabled = false;
      password.focus();
      return;
    }
    loggedIn(session, store);
  });
}

main();
