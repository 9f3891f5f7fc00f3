// A long-lived driver of Debian's headless Chromium (playwright-core) for the dashboard's tests and benchmark.
// It reads one JSON command a line on stdin, {"id": N, "cmd": NAME, ...arguments}, and answers each with one JSON
// line on stdout: {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false, "error": TEXT, "problems": [...]}
// (problems: the page's console errors and uncaught exceptions so far). Every command is bounded by its own
// "timeout" (milliseconds, default --timeout). Pages are named; each page has its own browser context unless it
// names the context of another ("context"), so two pages without one are two separate browsers (cookies,
// storage, connections). Commands: open, close, goto, fill, click, press, type, select, mouse, evaluate,
// wait_for, text, texts, count, screenshot, metrics, cdp, problems, console, quit. It ends at "quit" or at the end of
// its input, closing Chromium; Chromium's temporary profile is removed with it (give TMPDIR to keep it apart).
// Usage: node pilot.mjs [--timeout MS]
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const option = (name) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const DEFAULT_TIMEOUT = Number(option("--timeout") ?? 15000);
const POLL_MS = 25;
const KEPT_MESSAGES = 500;  // console messages kept per page (the newest)
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"];

const write = (answer) => process.stdout.write(JSON.stringify(answer) + "\n");

/** @type {import("playwright-core").Browser | null} */
let browser = null;
/** @type {Map<string, {page: any, context: any, console: string[], problems: string[], cdp: any}>} */
const pages = new Map();
/** @type {Map<string, any>} */
const contexts = new Map();

async function theBrowser(timeout) {
  browser ??= await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, timeout, args: ARGS,
    // Our own handlers (below) close Chromium and then end this process.
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
  });
  return browser;
}

function named(name) {
  const entry = pages.get(name ?? "main");
  if (entry === undefined) throw new Error(`no page ${JSON.stringify(name ?? "main")}: open it first`);
  return entry;
}

const keep = (list, text) => {
  list.push(text);
  if (list.length > KEPT_MESSAGES) list.splice(0, list.length - KEPT_MESSAGES);
};

async function open({ page: name = "main", context: contextName, viewport = { width: 1920, height: 1080 } },
                    timeout) {
  if (pages.has(name)) throw new Error(`page ${JSON.stringify(name)} is open already`);
  const owner = await theBrowser(timeout);
  const key = contextName ?? name;
  let context = contexts.get(key);
  if (context === undefined) {
    context = await owner.newContext({ viewport });
    context.setDefaultTimeout(timeout);
    contexts.set(key, context);
  }
  const page = await context.newPage();
  const entry = { page, context, console: [], problems: [], cdp: null };
  page.on("console", (message) => {
    const text = `${message.type()}: ${message.text()}`;
    keep(entry.console, text);
    if (message.type() === "error") keep(entry.problems, `console ${text}`);
  });
  page.on("pageerror", (error) => keep(entry.problems, `page error: ${error.stack ?? error}`));
  page.on("crash", () => keep(entry.problems, "the page crashed"));
  page.on("requestfailed", (request) =>
    keep(entry.console, `request failed: ${request.url()} ${request.failure()?.errorText ?? ""}`));
  pages.set(name, entry);
  return { page: name, context: key };
}

async function close({ page: name = "main" }) {
  const entry = named(name);
  pages.delete(name);
  await entry.page.close();
  const stillUsed = [...pages.values()].some((other) => other.context === entry.context);
  if (!stillUsed) {
    for (const [key, context] of contexts) if (context === entry.context) contexts.delete(key);
    await entry.context.close();
  }
  return null;
}

// An expression, or with "arg" a function's source called with it; evaluated by the DevTools protocol, so a
// Content-Security-Policy without 'unsafe-eval' does not stop it. A promise is awaited.
const expressionOf = ({ expression, arg }) =>
  arg === undefined ? expression : `(${expression})(${JSON.stringify(arg)})`;

async function evaluate(command) {
  return await named(command.page).page.evaluate(expressionOf(command));
}

async function waitFor(command, timeout) {
  const { page } = named(command.page);
  if (command.selector !== undefined) {
    await page.waitForSelector(command.selector, { state: command.state ?? "visible", timeout });
    return null;
  }
  if (command.expression === undefined) throw new Error("wait_for needs a selector or an expression");
  const expression = expressionOf(command);
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    // A navigation in between destroys the context the expression ran in: try again in the new one.
    last = await page.evaluate(expression).catch((error) => {
      if (/context was destroyed|navigat/i.test(String(error))) return undefined;
      throw error;
    });
    if (last) return last;
    if (Date.now() >= deadline) {
      throw new Error(`timeout ${timeout} ms: ${command.expression} stayed ${JSON.stringify(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, command.polling ?? POLL_MS));
  }
}

async function mouse({ page: name, action, x, y, button = "left", steps = 1, deltaX = 0, deltaY = 0 }) {
  const { page } = named(name);
  if (action === "move") await page.mouse.move(x, y, { steps });
  else if (action === "down") await page.mouse.down({ button });
  else if (action === "up") await page.mouse.up({ button });
  else if (action === "click") await page.mouse.click(x, y, { button });
  else if (action === "dblclick") await page.mouse.dblclick(x, y, { button });
  else if (action === "wheel") await page.mouse.wheel(deltaX, deltaY);
  else throw new Error(`unknown mouse action ${JSON.stringify(action)}`);
  return null;
}

// A DevTools protocol session of the page, made once.
async function devtools(entry) {
  if (entry.cdp === null) {
    const cdp = await entry.context.newCDPSession(entry.page);
    await cdp.send("Performance.enable");
    entry.cdp = cdp;
  }
  return entry.cdp;
}

// Chromium's own figures through the DevTools protocol: JSHeapUsedSize, Nodes, LayoutCount, TaskDuration, ...
async function metrics({ page: name }) {
  const cdp = await devtools(named(name));
  const { metrics: list } = await cdp.send("Performance.getMetrics");
  return Object.fromEntries(list.map(({ name: key, value }) => [key, value]));
}

const COMMANDS = {
  open,
  close,
  goto: async ({ page, url }, timeout) => {
    const response = await named(page).page.goto(url, { timeout, waitUntil: "load" });
    return response === null ? null : response.status();
  },
  fill: async ({ page, selector, value }, timeout) => {
    await named(page).page.fill(selector, value, { timeout });
    return null;
  },
  click: async ({ page, selector }, timeout) => {
    await named(page).page.click(selector, { timeout });
    return null;
  },
  press: async ({ page, key, selector }, timeout) => {
    const { page: p } = named(page);
    if (selector !== undefined) await p.press(selector, key, { timeout });
    else await p.keyboard.press(key);
    return null;
  },
  type: async ({ page, text }) => {
    await named(page).page.keyboard.type(text);
    return null;
  },
  select: async ({ page, selector, value }, timeout) => await named(page).page.selectOption(selector, value, { timeout }),
  mouse,
  evaluate,
  wait_for: waitFor,
  text: async ({ page, selector }, timeout) => await named(page).page.locator(selector).first().innerText({ timeout }),
  texts: async ({ page, selector }) => await named(page).page.locator(selector).allInnerTexts(),
  count: async ({ page, selector }) => await named(page).page.locator(selector).count(),
  screenshot: async ({ page, path, full_page: fullPage = true }, timeout) => {
    await named(page).page.screenshot({ path, fullPage, timeout });
    return path;
  },
  metrics,
  cdp: async ({ page, method, params = {} }) => await (await devtools(named(page))).send(method, params),
  problems: async ({ page }) => named(page).problems.slice(),
  console: async ({ page }) => named(page).console.slice(),
  quit: async () => null,
};

// What the page said (console errors, exceptions) when a command fails: the reason is often there.
function problemsOf(command) {
  const entry = pages.get(command?.page ?? "main");
  return entry === undefined ? [] : entry.problems.slice(-20);
}

async function run(command) {
  const timeout = Number(command.timeout ?? DEFAULT_TIMEOUT);
  const handler = COMMANDS[command.cmd];
  if (handler === undefined) throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  let timer;
  const expired = new Promise((_, reject) => {
    // A little past the command's own timeout, so playwright's message (which says more) wins when it has one.
    timer = setTimeout(() => reject(new Error(`${command.cmd}: no answer within ${timeout} ms`)), timeout + 1000);
  });
  try {
    return await Promise.race([handler(command, timeout), expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function shutdown(code) {
  const closing = browser?.close().catch(() => {});
  await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 5000))]);
  process.exit(code);
}

const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
// Commands run one after another, in order: a test's steps depend on each other.
let queue = Promise.resolve();
input.on("line", (line) => {
  if (line.trim() === "") return;
  queue = queue.then(async () => {
    let command;
    try {
      command = JSON.parse(line);
    } catch (error) {
      write({ id: null, ok: false, error: `not JSON: ${error.message}`, problems: [] });
      return;
    }
    try {
      const result = await run(command);
      write({ id: command.id, ok: true, result: result ?? null });
    } catch (error) {
      const text = String(error?.message ?? error).replace(/\x1b\[[0-9;]*m/g, "");  // playwright's colours
      write({ id: command.id, ok: false, error: text, problems: problemsOf(command) });
    }
    if (command.cmd === "quit") await shutdown(0);
  });
});
input.on("close", () => { queue = queue.then(() => shutdown(0)); });
// Ended by PID (SIGTERM): close Chromium first, so that it neither outlives us nor leaves its profile behind.
const SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
for (const [signal, number] of Object.entries(SIGNALS)) process.on(signal, () => shutdown(128 + number));
process.on("unhandledRejection", (error) => process.stderr.write(`unhandled rejection: ${error?.stack ?? error}\n`));
