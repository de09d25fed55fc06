// The chat page end to end in a real headless Chromium (Debian's), driven by
// playwright-core: two pages in one room, a message typed in one appears in
// the other, a refused message shows its reason, and the page survives a
// server restart.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const guests = mkdtempSync(join(tmpdir(), "house-browser-"));
copyFileSync(join(repo, "guests", "chat.wasm"), join(guests, "chat.wasm"));

let server, port, browser;

// Starts house and resolves once it says it is listening.
function startHouse(portArg) {
  const child = spawn(join(repo, "target", "release", "house"),
    ["--port", String(portArg), "--guests", guests, "--no-cache", "--quiet"],
    { stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error("house did not start:\n" + seen)), 20000);
    child.stderr.on("data", (chunk) => {
      seen += chunk;
      const m = seen.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\n/);
      if (m) { clearTimeout(timer); resolve({ child, port: Number(m[1]) }); }
    });
    child.on("exit", (code) => reject(new Error(`house exited (${code}):\n${seen}`)));
  });
}

function stopHouse(child) {
  return new Promise((resolve) => { child.once("exit", resolve); child.kill("SIGTERM"); });
}

before(async () => {
  ({ child: server, port } = await startHouse(0));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (server) await stopHouse(server);
  rmSync(guests, { recursive: true, force: true });
});

async function joinAs(name, room) {
  const page = await browser.newPage({ viewport: { width: 390, height: 800 } });   // a phone's width
  await page.goto(`http://127.0.0.1:${port}/index`);
  await page.getByLabel("Room").fill(room);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Join room" }).click();
  await page.locator("#status", { hasText: `Live in “${room}”` }).waitFor();
  return page;
}

test("two pages in one room see each other's messages", async () => {
  const ada = await joinAs("Ada", "e2e");
  const bob = await joinAs("Bob", "e2e");
  await ada.getByLabel("Message", { exact: true }).fill("hello from ada <b>not bold</b>");
  await ada.getByLabel("Message", { exact: true }).press("Enter");        // keyboard sending
  const line = bob.locator("#log li", { hasText: "hello from ada" });
  await line.waitFor();
  assert.equal(await line.textContent(), "Ada:hello from ada <b>not bold</b>");
  assert.equal(await bob.locator("#log b").count(), 0, "messages are text, never HTML");
  await ada.locator("#log li.mine", { hasText: "hello from ada" }).waitFor();
  assert.equal(await ada.getByLabel("Message", { exact: true }).inputValue(), "", "the input is cleared after a send");
  await ada.close(); await bob.close();
});

test("a refused message shows the server's reason", async () => {
  const ada = await joinAs("Ada", "refusals");
  await ada.getByLabel("Message", { exact: true }).fill("hey");
  await ada.getByRole("button", { name: "Send" }).click();
  await ada.locator("#error", { hasText: "message: length 3 is below the minimum 5" }).waitFor();
  assert.equal(await ada.getByLabel("Message", { exact: true }).inputValue(), "hey", "a refused message stays editable");
  await ada.getByLabel("Your name").fill("");
  await ada.getByLabel("Message", { exact: true }).fill("long enough");
  await ada.getByLabel("Message", { exact: true }).press("Enter");
  await ada.locator("#error", { hasText: "name: length 0 is below the minimum 1" }).waitFor();
  await ada.close();
});

test("the page says so when the server restarts, and reconnects", async () => {
  const ada = await joinAs("Ada", "restart");
  const bob = await joinAs("Bob", "restart");
  await stopHouse(server);
  await ada.locator("#status", { hasText: "reconnecting" }).waitFor();
  ({ child: server } = await startHouse(port));
  await ada.locator("#status", { hasText: "Live in “restart”" }).waitFor({ timeout: 15000 });
  await bob.locator("#status", { hasText: "Live in “restart”" }).waitFor({ timeout: 15000 });
  await bob.getByLabel("Message", { exact: true }).fill("back again");
  await bob.getByLabel("Message", { exact: true }).press("Enter");
  await ada.locator("#log li", { hasText: "back again" }).waitFor();
  await ada.close(); await bob.close();
});
