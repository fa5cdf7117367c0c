#!/usr/bin/env bash
# Rebuilds dist/editor.js (which editor-server embeds) from src/ and the locked npm
# packages, and THIRD_PARTY_LICENSES.txt from the licences of what the bundle contains.
# Needs Node 18+ and npm with registry access; running the server needs neither.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
# The licence of every package esbuild put into the bundle.
node - <<'JS' > THIRD_PARTY_LICENSES.txt
const fs = require("fs");
const path = require("path");
const os = require("os");
const metafile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "editor-web-")), "meta.json");
require("child_process").execSync(
  `npx esbuild src/main.js --bundle --format=iife --metafile=${metafile} --outfile=${metafile}.js --log-level=error`
);
const meta = JSON.parse(fs.readFileSync(metafile, "utf8"));
fs.rmSync(path.dirname(metafile), { recursive: true });
const pkgs = new Set();
for (const input of Object.keys(meta.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (m) pkgs.add(m[1]);
}
console.log("Third-party code bundled into dist/editor.js, with its licences.\n");
for (const name of [...pkgs].sort()) {
  const dir = path.join("node_modules", name);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  const file = fs.readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  console.log("=".repeat(78));
  console.log(`${name} ${pkg.version} (${pkg.license})`);
  console.log("=".repeat(78));
  console.log(file ? fs.readFileSync(path.join(dir, file), "utf8").trim() : `License: ${pkg.license}`);
  console.log();
}
JS
echo "built dist/editor.js ($(wc -c < dist/editor.js) bytes) and THIRD_PARTY_LICENSES.txt"
