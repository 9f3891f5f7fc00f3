// Opens one test page in Debian's headless Chromium (playwright-core) and prints, one JSON line each on
// stdout, what the page reports through window.spcReport: {"event": "ready"}, {"event": "done", ...}.
// With --ack REASON it then acts as the operator: types the reason and clicks the first "Acknowledge" button.
// Usage: node drive.mjs URL [--timeout MS] [--ack REASON]. Exit code 0 once the page reported "done".
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, ...rest] = process.argv.slice(2);
const option = (name) => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : undefined);
const timeout = Number(option("--timeout") ?? 30000);
const ackReason = option("--ack");
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const CLICK_CHECK_MS = 5000;
const STATE_MS = 5000;

// A click that lands beside the button reaches no handler: say so at once rather than time out later.
async function clickHandled(page, button) {
  await button.click({ timeout });
  await page.waitForFunction(() => window.spcAckSent === true, null, { timeout: CLICK_CHECK_MS })
    .catch(() => { throw new Error("the click on the button reached no handler (window.spcAckSent)"); });
}

// What the page shows and has received, each read bounded in time (a hung page must not hang the driver).
async function pageState(page) {
  const bounded = (promise) => Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve("(no answer)"), STATE_MS))]);
  return {
    page: await bounded(page.locator("body").innerText({ timeout: STATE_MS }).catch(String)),
    seen: await bounded(page.evaluate(() => window.spcSeen?.() ?? null).catch(String)),
  };
}

const profile = mkdtempSync(join(tmpdir(), "spc-chromium-"));
let context;
let done;
const finished = new Promise((resolve) => { done = resolve; });
const timer = setTimeout(() => done(false), timeout);

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    timeout,
    // As the machine notes say: no sandbox as root, and no background traffic to hosts we cannot reach.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (message) => process.stderr.write(`console ${message.type()}: ${message.text()}\n`));
  page.on("pageerror", (error) => print({ event: "page-error", message: String(error) }));
  page.on("crash", () => { print({ event: "page-error", message: "the page crashed" }); done(false); });
  await page.exposeFunction("spcReport", (report) => {
    print(report);
    if (report.event === "done" || report.event === "failed") done(report.event === "done");
  });
  await page.goto(url, { timeout });
  if (ackReason !== undefined) {
    const button = page.locator("button.ack").first();
    await button.waitFor({ state: "visible", timeout });
    await page.fill("#reason", ackReason);
    // Read the id first: the page removes the button as soon as the ack event arrives, which can be at once.
    const violationId = Number(await button.getAttribute("data-violation-id"));
    await clickHandled(page, button);
    print({ event: "clicked", violation_id: violationId });
  }
  const ok = await finished;
  if (!ok) print({ event: "timeout", ...(await pageState(page)) });
  process.exitCode = ok ? 0 : 1;
} catch (error) {
  print({ event: "driver-error", message: String(error) });
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
}
