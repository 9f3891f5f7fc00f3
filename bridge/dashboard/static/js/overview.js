// Overview: one live tile per characteristic, a text filter, and the wall (kiosk) mode for a shop-floor screen.
import { el } from "./dom.js";

/** What each tile state looks like: a shape and a text label, never colour alone. */
const STATES = {
  "in-control": { icon: "✓", label: "In control" },
  "out-of-control": { icon: "✕", label: "Out of control" },
  baseline: { icon: "◔", label: "Baseline" },
  unknown: { icon: "○", label: "No data yet" },
};
const STALE_ICON = "❚❚";
// Wall tiles are no lower than this (text 12 px): more tiles scroll, out-of-control ones first. It also bounds
// how many tiles are on screen, and so the cost of each redraw.
const MIN_KIOSK_TILE_PX = 100;
const KIOSK_REORDER_MS = 5000;  // between two reorderings of the wall (out of control first)
const KIOSK_ASPECT = 1.5;       // preferred tile width / height on the wall
const MIN_FLUSH_MS = 200;       // between two redraws: each costs a layout and paint of the grid, whatever changed

/** A number for a tile: about five significant digits, no trailing noise. */
function formatNumber(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e6 || magnitude < 1e-3)) return value.toExponential(2);
  return String(Number.parseFloat(value.toPrecision(5)));
}

/**
 * What a tile shows for a characteristic (plain values, compared field by field before touching the DOM).
 * @param {object} ch a Characteristic of the store
 */
function tileModel(ch) {
  const { limits, status, last } = ch;
  const phase = limits?.phase ?? status?.phase ?? null;
  // the last sample is fresher than the status, which the bridge publishes at most once a second
  const inControl = last && last.in_control !== null && last.in_control !== undefined ? last.in_control
    : status?.in_control ?? null;
  let state = "unknown";
  if (phase === "baseline") state = "baseline";
  else if (inControl === true) state = "in-control";
  else if (inControl === false) state = "out-of-control";
  const cpk = status?.cpk ?? limits?.capability?.cpk ?? null;
  return {
    name: ch.name || `#${ch.id}`,
    value: formatNumber(last?.value),
    state,
    open: status?.open_violations ?? 0,
    cpk: formatNumber(cpk),
    cpkLow: cpk !== null && cpk < 1.33,
    stale: Boolean(status?.stale),
    staleText: status?.stale ? `Stale: ${status.stale_reason || "no data"}` : "",
  };
}

/** Where a tile goes on the wall: 0 out of control, 1 open violations, 2 stale, 3 the rest. */
function rankOf(model) {
  if (model.state === "out-of-control") return "0";
  if (model.open > 0) return "1";
  return model.stale ? "2" : "3";
}

/** Builds one tile's DOM once and keeps its text nodes, so that updates only set text and attributes. */
function buildTile(id, navigate) {
  const el = document.createElement("a");
  el.className = "tile";
  el.href = `#/c/${id}`;
  el.dataset.id = String(id);
  el.addEventListener("click", (event) => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    navigate(`#/c/${id}`);
  });
  const part = (tag, className, parent = el) => {
    const node = document.createElement(tag);
    node.className = className;
    parent.append(node);
    return node;
  };
  const text = (parent) => parent.appendChild(document.createTextNode(""));

  const head = part("div", "tile-head");
  const name = part("span", "tile-name", head);
  part("span", "tile-id", head).textContent = `#${id}`;
  const value = part("div", "tile-value");
  const state = part("div", "tile-state");
  const stateIcon = part("span", "tile-icon", state);
  stateIcon.setAttribute("aria-hidden", "true");
  const stateLabel = part("span", "tile-state-label", state);
  const stats = part("div", "tile-stats");
  const openBox = part("span", "tile-stat tile-stat-open", stats);
  part("span", "tile-stat-label", openBox).textContent = "Open ";
  const open = part("span", "tile-open", openBox);
  const cpkBox = part("span", "tile-stat tile-stat-cpk", stats);
  part("span", "tile-stat-label", cpkBox).textContent = "Cpk ";
  const cpk = part("span", "tile-cpk", cpkBox);
  const stale = part("div", "tile-stale");
  const staleIcon = part("span", "tile-icon", stale);
  staleIcon.setAttribute("aria-hidden", "true");
  const staleLabel = part("span", "tile-stale-label", stale);

  return {
    el, stateEl: state, staleEl: stale, staleIcon, cpkEl: cpk,
    nodes: {
      name: text(name), value: text(value), stateIcon: text(stateIcon), stateLabel: text(stateLabel),
      open: text(open), cpk: text(cpk), staleLabel: text(staleLabel),
    },
    model: {},          // what is shown now
    search: "",         // lower-case "name #id" the filter matches against
  };
}

/** Writes the parts of a tile's model that changed. */
function renderTile(tile, model) {
  const old = tile.model;
  const { nodes, el } = tile;
  if (model.name !== old.name) {
    nodes.name.data = model.name;
    tile.search = `${model.name} #${el.dataset.id}`.toLowerCase();
  }
  if (model.value !== old.value) nodes.value.data = model.value;
  if (model.state !== old.state) {
    tile.stateEl.dataset.state = model.state;
    nodes.stateIcon.data = STATES[model.state].icon;
    nodes.stateLabel.data = STATES[model.state].label;
    el.dataset.state = model.state;
  }
  if (model.open !== old.open) {
    nodes.open.data = String(model.open);
    el.classList.toggle("has-open", model.open > 0);
  }
  if (model.cpk !== old.cpk) nodes.cpk.data = model.cpk;
  if (model.cpkLow !== old.cpkLow) {
    tile.cpkEl.classList.toggle("is-low", model.cpkLow);
    tile.cpkEl.title = model.cpkLow ? "below 1.33" : "";
  }
  if (model.stale !== old.stale || model.staleText !== old.staleText) {
    tile.staleEl.dataset.stale = String(model.stale);
    tile.staleIcon.textContent = model.stale ? STALE_ICON : "";
    nodes.staleLabel.data = model.staleText;
    tile.staleEl.title = model.staleText;
    el.classList.toggle("is-stale", model.stale);
  }
  tile.model = model;
}

/**
 * The overview view: a grid of tiles kept live from the store. Each tile's DOM is made once; store events
 * only mark tiles dirty, and the dirty ones are redrawn together on an animation frame (at most every
 * MIN_FLUSH_MS) while the view is shown.
 * @param {HTMLElement} root the #overview-view section
 * @param {{store: import("./store.js").Store, session: import("./session.js").Session,
 *          navigate: (path: string) => void}} deps
 * @returns {{show(): void, hide(): void, setKiosk(on: boolean): void}}
 */
export function createOverview(root, { store, navigate }) {
  root.classList.add("overview");
  const filter = el("input", { id: "filter", type: "search", autocomplete: "off", placeholder: "name or id" });
  const summary = el("p", { className: "overview-summary" });
  const exitKiosk = el("button", { type: "button", className: "overview-exit-kiosk" }, "Exit wall mode (Esc)");
  exitKiosk.addEventListener("click", () => navigate("#/overview"));
  const bar = el("div", { className: "overview-bar" },
                 el("label", { className: "overview-filter", htmlFor: "filter" }, "Filter"), filter, summary, exitKiosk);
  const grid = el("div", { id: "tiles" });
  const empty = el("p", { className: "overview-empty" },
                   "No characteristics yet: waiting for the bridge's retained status and limits.");
  root.append(bar, grid, empty);

  /** @type {Map<number, ReturnType<typeof buildTile>>} */
  const tiles = new Map();
  /** ids in grid order (ascending), for inserting a newcomer at its place */
  const order = [];
  const dirty = new Set();
  const reranked = new Set();   // tiles whose wall rank changed since the last reordering
  let shown = false, kiosk = false, frame = 0, timer = 0, lastFlush = -Infinity, query = "";
  let rankTimer = 0, nextRankAt = 0;
  const counts = { visible: 0, out: 0, open: 0, stale: 0 };   // tiles out of control, with open violations, stale

  const matches = (tile) => query === "" || tile.search.includes(query);

  function addTile(id) {
    const tile = buildTile(id, navigate);
    tiles.set(id, tile);
    let lo = 0, hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (order[mid] < id) lo = mid + 1; else hi = mid;
    }
    grid.insertBefore(tile.el, lo < order.length ? tiles.get(order[lo]).el : null);
    order.splice(lo, 0, id);
    return tile;
  }

  function count(model, sign) {
    if (!model.state) return;
    counts.out += sign * (model.state === "out-of-control");
    counts.open += sign * (model.open > 0);
    counts.stale += sign * model.stale;
  }

  function flush() {
    frame = 0;
    if (!shown) return;
    lastFlush = performance.now();
    const before = `${counts.out} ${counts.open} ${counts.stale}`;
    let visibleChanged = false;
    for (const id of dirty) {
      const ch = store.get(id);
      if (!ch) continue;
      const known = tiles.get(id);
      const tile = known ?? addTile(id);
      const wasVisible = known ? !tile.el.hidden : false;
      const model = tileModel(ch);
      count(tile.model, -1);
      renderTile(tile, model);
      count(model, 1);
      if (rankOf(model) !== tile.el.dataset.rank) reranked.add(tile);
      const visible = matches(tile);
      if (tile.el.hidden === visible) tile.el.hidden = !visible;
      visibleChanged ||= visible !== wasVisible;
    }
    dirty.clear();
    if (kiosk && reranked.size) rerank(false);
    if (visibleChanged) renderSummary(true);
    else if (before !== `${counts.out} ${counts.open} ${counts.stale}`) renderSummary(false);
  }

  /** Moves the wall's tiles to their ranks: now if `now` or due, else once KIOSK_REORDER_MS have passed. */
  function rerank(now) {
    const wait = nextRankAt - performance.now();
    if (!now && wait > 0) {
      rankTimer ||= setTimeout(() => { rankTimer = 0; if (kiosk && shown) rerank(true); }, wait);
      return;
    }
    for (const tile of reranked) tile.el.dataset.rank = rankOf(tile.model);
    reranked.clear();
    nextRankAt = performance.now() + KIOSK_REORDER_MS;
  }

  /** The line above the grid; `recount` after tiles appeared or were filtered (then the wall is refitted). */
  function renderSummary(recount) {
    if (recount) {
      counts.visible = 0;
      for (const tile of tiles.values()) if (!tile.el.hidden) counts.visible += 1;
    }
    const total = tiles.size;
    const parts = [counts.visible === total ? `${total} characteristics` : `${counts.visible} of ${total} characteristics`];
    if (counts.out) parts.push(`✕ ${counts.out} out of control`);
    if (counts.open) parts.push(`▲ ${counts.open} with open violations`);
    if (counts.stale) parts.push(`${STALE_ICON} ${counts.stale} stale`);
    summary.textContent = parts.join(" · ");
    empty.hidden = total > 0;
    if (recount && kiosk) fitKiosk();
  }

  function schedule() {
    if (!shown || frame || timer) return;
    const wait = lastFlush + MIN_FLUSH_MS - performance.now();
    if (wait <= 0) frame = requestAnimationFrame(flush);
    else timer = setTimeout(() => { timer = 0; if (shown) frame = requestAnimationFrame(flush); }, wait);
  }

  function onCharacteristic(event) {
    dirty.add(event.detail.id);
    schedule();
  }

  function applyFilter() {
    query = filter.value.trim().toLowerCase();
    for (const tile of tiles.values()) {
      const visible = matches(tile);
      if (tile.el.hidden === visible) tile.el.hidden = !visible;
    }
    renderSummary(true);
  }

  /** On the wall: the largest tiles with which every visible tile fits the screen (else the grid scrolls). */
  function fitKiosk() {
    const n = Math.max(1, counts.visible);
    const width = grid.clientWidth;
    const height = window.innerHeight - grid.getBoundingClientRect().top - 8;
    if (width <= 0 || height <= 0) return;
    const gap = Number.parseFloat(getComputedStyle(grid).columnGap) || 0;
    let best = { cols: 1, h: 0 };
    for (let cols = 1; cols <= n; cols += 1) {
      const rows = Math.ceil(n / cols);
      const w = (width - gap * (cols - 1)) / cols;
      const h = Math.min((height - gap * (rows - 1)) / rows, w / KIOSK_ASPECT);
      if (h > best.h) best = { cols, h };
      if (w / KIOSK_ASPECT < best.h) break;   // narrower columns only make the tiles smaller
    }
    let { cols, h } = best;
    if (h < MIN_KIOSK_TILE_PX) {
      h = MIN_KIOSK_TILE_PX;
      cols = Math.max(1, Math.floor((width + gap) / (h * KIOSK_ASPECT + gap)));
    }
    h = Math.floor(h);
    grid.style.setProperty("--kiosk-cols", String(cols));
    grid.style.setProperty("--kiosk-tile-h", `${h}px`);
  }

  filter.addEventListener("input", applyFilter);
  store.addEventListener("characteristic", onCharacteristic);
  window.addEventListener("resize", () => { if (kiosk && shown) fitKiosk(); });

  return {
    show() {
      root.hidden = false;
      if (!shown) {
        shown = true;
        for (const ch of store.list()) dirty.add(ch.id);
        flush();
        renderSummary(true);
      }
    },
    hide() {
      root.hidden = true;
      shown = false;
      cancelAnimationFrame(frame);
      clearTimeout(timer);
      clearTimeout(rankTimer);
      frame = timer = rankTimer = 0;
    },
    setKiosk(on) {
      kiosk = Boolean(on);
      document.body.classList.toggle("kiosk", kiosk);
      if (kiosk) {
        fitKiosk();
        rerank(true);
      } else {
        grid.style.removeProperty("--kiosk-cols");
        grid.style.removeProperty("--kiosk-tile-h");
      }
    },
  };
}
