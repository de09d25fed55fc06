// The deployment of docs/DEPLOY.md, for real: a redis-server, two house
// processes on it (`--engine redis://`), and nginx running
// docs/deploy/house.nginx.conf in front of them. Two chat pages whose
// streams land on different hosts see each other's messages.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repo, startHouse, startRedis, startNginx, stop, launchBrowser, joinAs, getJson } from "./support.mjs";

const guests = mkdtempSync(join(tmpdir(), "house-deploy-"));
copyFileSync(join(repo, "guests", "chat.wasm"), join(guests, "chat.wasm"));

let redis, hosts = [], nginx, browser;

before(async () => {
  redis = await startRedis();
  const engine = ["--engine", `redis://127.0.0.1:${redis.port}`];
  hosts = [await startHouse(0, guests, engine), await startHouse(0, guests, engine)];
  nginx = await startNginx(hosts.map((h) => h.port));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const p of [nginx, ...hosts, redis]) if (p) await stop(p.child);
  if (nginx) rmSync(nginx.dir, { recursive: true, force: true });
  rmSync(guests, { recursive: true, force: true });
});

// Subscriptions on each host, read from the host itself (not through nginx).
const subscriptions = () =>
  Promise.all(hosts.map(async (h) => (await getJson(`http://127.0.0.1:${h.port}/_house/stats`)).subscriptions));

test("two pages on two hosts behind nginx see each other's messages", async () => {
  const base = `http://127.0.0.1:${nginx.port}`;
  const ada = await joinAs(browser, base, "Ada", "lb");
  const bob = await joinAs(browser, base, "Bob", "lb");
  // least_conn sent the second stream to the host without one.
  assert.deepEqual(await subscriptions(), [1, 1], "one stream on each host");

  for (const [from, to, text] of [[ada, bob, "hello from ada"], [bob, ada, "and back from bob"],
                                  [ada, bob, "once more from ada"]]) {
    await from.getByLabel("Message", { exact: true }).fill(text);
    await from.getByLabel("Message", { exact: true }).press("Enter");
    await to.locator("#log li", { hasText: text }).waitFor({ timeout: 5000 });
    await from.locator("#log li.mine", { hasText: text }).waitFor({ timeout: 5000 });
  }
  // Each page shows each message once, in the order sent.
  for (const page of [ada, bob]) {
    const lines = await page.locator("#log li").allTextContents();
    assert.deepEqual(lines.filter((l) => l.includes(" from ")),
      ["Ada:hello from ada", "Bob:and back from bob", "Ada:once more from ada"]);
  }
  await ada.close(); await bob.close();
});
