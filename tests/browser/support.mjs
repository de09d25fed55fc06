// What the browser tests share: the real house binary, a real redis-server
// and a real nginx, each started on a free port and stopped by the test,
// and Debian's headless Chromium.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, chmodSync, copyFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

export const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

// Resolves once `child` wrote a stderr line matching `pattern` (the match),
// rejects if it exits first or `ms` pass.
function waitForLine(child, what, pattern, ms = 20000) {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${seen}`)), ms);
    child.stderr.on("data", (chunk) => {
      seen += chunk;
      const m = seen.match(pattern);
      if (m) { clearTimeout(timer); resolve(m); }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`${what} exited (${code}):\n${seen}`)); });
  });
}

// A fresh --data-dir, unless `extra` names one (a restart that keeps data).
function dataDir(extra) {
  return extra.includes("--data-dir") ? [] : ["--data-dir", mkdtempSync(join(tmpdir(), "house-data-"))];
}

// Starts house on `port` (0: a free one) serving `guests`, its admin
// surface on a free loopback port; resolves with the child, its port and
// its admin port once it says it is listening.
// A --cookie-key-file in `dir`: one random 32-byte key, base64, mode
// 0600 (what `house new` and `make run` make). Hosts that share it verify
// each other's signed cookies, and a restart keeps them.
export function cookieKeyFile(dir) {
  const path = join(dir, "cookie.key");
  writeFileSync(path, `# test cookie key\n${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
  return path;
}

export async function startHouse(port, guests, extra = []) {
  const admin = extra.includes("--admin-bind") ? [] : ["--admin-bind", "127.0.0.1:0"];
  const child = spawn(join(repo, "target", "release", "house"),
    ["--port", String(port), "--guests", guests, "--no-cache", "--quiet", ...admin, ...dataDir(extra), ...extra],
    { stdio: ["ignore", "ignore", "pipe"] });
  const m = await waitForLine(child, "house",
    /admin on http:\/\/127\.0\.0\.1:(\d+)\/[^\n]*\n(?:[^\n]*\n)*?[^\n]*listening on http:\/\/127\.0\.0\.1:(\d+)\n/);
  child.removeAllListeners("exit");
  return { child, port: Number(m[2]), admin: Number(m[1]) };
}

export function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGTERM"); });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

// Resolves once something accepts TCP connections on `port`.
async function waitForPort(port, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} never listened on ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startRedis(port) {
  port ??= await freePort();
  const child = spawn("redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" });
  await waitForPort(port, "redis-server");
  return { child, port };
}

// nginx running docs/deploy/house.nginx.conf, its upstreams and its listen
// port swapped for the test's; `upstreams` are the house ports.
export async function startNginx(upstreams) {
  const dir = mkdtempSync(join(tmpdir(), "house-nginx-"));
  chmodSync(dir, 0o755);   // workers run as nobody when the test runs as root
  const port = await freePort();
  let site = readFileSync(join(repo, "docs", "deploy", "house.nginx.conf"), "utf8");
  const shipped = [...site.matchAll(/server (127\.0\.0\.1:\d+)/g)].map((m) => m[1]);
  if (shipped.length !== upstreams.length) throw new Error(`the config has ${shipped.length} upstreams`);
  shipped.forEach((addr, i) => { site = site.replace(`server ${addr}`, `server 127.0.0.1:${upstreams[i]}`); });
  if (!site.includes("listen 8080;")) throw new Error("the config no longer listens on 8080");
  site = site.replace("listen 8080;", `listen 127.0.0.1:${port};`);
  writeFileSync(join(dir, "house.nginx.conf"), site);
  // The whole configuration shipped to try it (docs/deploy/nginx.conf),
  // as it is: it runs from the folder given with -p, in the foreground.
  copyFileSync(join(repo, "docs", "deploy", "nginx.conf"), join(dir, "nginx.conf"));
  const bin = existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
  const child = spawn(bin, ["-e", "stderr", "-p", dir, "-c", join(dir, "nginx.conf")],
    { stdio: ["ignore", "ignore", "inherit"] });
  await waitForPort(port, "nginx");
  return { child, port, dir };
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

// Opens the chat at `base`, joins `room` as `name`; resolves once live.
export async function joinAs(browser, base, name, room) {
  const page = await browser.newPage({ viewport: { width: 390, height: 800 } });   // a phone's width
  await page.goto(`${base}/index`);
  await page.getByLabel("Room").fill(room);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Join room" }).click();
  await page.locator("#status", { hasText: `Live in “${room}”` }).waitFor();
  return page;
}

// GET `url` as JSON.
export async function getJson(url) {
  const r = await fetch(url);
  return r.json();
}
