// Copies the dashboard's third-party browser builds, already minified by their authors, and their licences from
// node_modules into ../static/vendor, and records name, version, licence and SHA-256 of each file in
// ../static/vendor/VERSIONS.json (tests/test_dashboard_assets.py checks them against package-lock.json).
// Usage: npm ci && npm run vendor
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static", "vendor");
const PACKAGES = {
  mqtt: { files: { "dist/mqtt.min.js": "mqtt.min.js", "LICENSE.md": "LICENSE.mqtt.md" } },
  uplot: { files: { "dist/uPlot.iife.min.js": "uPlot.iife.min.js", "dist/uPlot.min.css": "uPlot.min.css",
                    "LICENSE": "LICENSE.uplot.txt" } },
};

mkdirSync(out, { recursive: true });
const versions = {};
for (const [name, { files }] of Object.entries(PACKAGES)) {
  const root = join(here, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const copied = {};
  for (const [from, to] of Object.entries(files)) {
    copyFileSync(join(root, from), join(out, to));
    copied[to] = createHash("sha256").update(readFileSync(join(out, to))).digest("hex");
  }
  versions[name] = { version: meta.version, license: meta.license, homepage: meta.homepage, files: copied };
}
writeFileSync(join(out, "VERSIONS.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(`vendored ${Object.entries(versions).map(([n, v]) => `${n} ${v.version}`).join(", ")} into ${out}`);
