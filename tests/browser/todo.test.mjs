// The to-do example in a real headless Chromium: add (with the keyboard),
// complete, delete; the list is still there after a reload and after the
// server restarts; a second visitor (no cookie) starts with an empty list;
// a second tab of the same visitor follows live.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repo, startHouse, stop, launchBrowser, cookieKeyFile } from "./support.mjs";

const guests = mkdtempSync(join(tmpdir(), "house-todo-"));
copyFileSync(join(repo, "guests", "todo.wasm"), join(guests, "todo.wasm"));
const data = mkdtempSync(join(tmpdir(), "house-todo-data-"));
// The sid cookie is signed by the host: the key file keeps it good across
// the restart below.
const flags = ["--data-dir", data, "--cookie-key-file", cookieKeyFile(data)];

let server, port, browser;

before(async () => {
  ({ child: server, port } = await startHouse(0, guests, flags));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (server) await stop(server);
  rmSync(guests, { recursive: true, force: true });
  rmSync(data, { recursive: true, force: true });
});

const titles = (page) => page.locator("#list li .title").allTextContents();

test("add, complete, delete; kept across a reload and a restart; other visitors see none of it", async () => {
  const visitor = await browser.newContext({ viewport: { width: 390, height: 800 } });   // a phone's width
  const page = await visitor.newPage();
  await page.goto(`http://127.0.0.1:${port}/todo`);
  await page.locator("#status", { hasText: "0 items" }).waitFor();
  for (const text of ["buy milk", "write <b>tests</b>", "call mum"]) {
    await page.getByLabel("New item").fill(text);
    await page.getByLabel("New item").press("Enter");                          // the keyboard adds
    await page.locator("#list li .title", { hasText: text }).waitFor();
  }
  assert.deepEqual(await titles(page), ["buy milk", "write <b>tests</b>", "call mum"]);
  assert.equal(await page.locator("#list b").count(), 0, "titles are text, never HTML");

  // A second tab of the same visitor follows live.
  const tab = await visitor.newPage();
  await tab.goto(`http://127.0.0.1:${port}/todo`);
  await tab.locator("#status", { hasText: "3 items" }).waitFor();

  await page.getByRole("checkbox", { name: "buy milk" }).check();
  await page.locator("#list li.done .title", { hasText: "buy milk" }).waitFor();
  await tab.locator("#list li.done .title", { hasText: "buy milk" }).waitFor();
  await page.getByRole("button", { name: "Delete “call mum”" }).click();
  await page.locator("#status", { hasText: "2 items, 1 to do" }).waitFor();
  await tab.locator("#status", { hasText: "2 items, 1 to do" }).waitFor();

  // A title the server refuses says why, and stays editable.
  await page.getByLabel("New item").fill("   ");
  await page.getByLabel("New item").press("Enter");
  await page.locator("#error", { hasText: "body.title: only spaces" }).waitFor();

  await page.reload();
  await page.locator("#status", { hasText: "2 items, 1 to do" }).waitFor();
  assert.deepEqual(await titles(page), ["buy milk", "write <b>tests</b>"]);

  await stop(server);
  ({ child: server } = await startHouse(port, guests, flags));
  await page.reload();
  await page.locator("#status", { hasText: "2 items, 1 to do" }).waitFor();
  assert.equal(await page.getByRole("checkbox", { name: "buy milk" }).isChecked(), true, "still done");
  // The other tab's stream came back by itself, and still follows.
  await page.getByRole("checkbox", { name: "buy milk" }).uncheck();
  await tab.locator("#status", { hasText: "2 items, 2 to do" }).waitFor({ timeout: 15000 });

  const stranger = await browser.newContext();
  const other = await stranger.newPage();
  await other.goto(`http://127.0.0.1:${port}/todo`);
  await other.locator("#status", { hasText: "0 items" }).waitFor();
  assert.equal(await other.locator("#list li.empty").textContent(), "Nothing to do.");
  await visitor.close(); await stranger.close();
});
