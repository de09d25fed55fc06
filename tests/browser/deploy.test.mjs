// The deployment of docs/DEPLOY.md, for real: a redis-server, two house
// processes on it (`--engine redis://`), and nginx running
// docs/deploy/house.nginx.conf in front of them. Two chat pages whose
// sockets land on different hosts see each other's messages, a visitor's
// to-do list (key-value data on Redis) is the same list on both hosts with
// no sticky sessions, and a page whose host restarts is replayed what it
// missed from Redis's history. While Redis is down, a send is shown as not
// sent, keeps its text, and goes through when the user sends it again.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repo, startHouse, startRedis, startNginx, stop, launchBrowser, joinAs, getJson, cookieKeyFile } from "./support.mjs";

const guests = mkdtempSync(join(tmpdir(), "house-deploy-"));
copyFileSync(join(repo, "guests", "chat.wasm"), join(guests, "chat.wasm"));
copyFileSync(join(repo, "guests", "todo.wasm"), join(guests, "todo.wasm"));

let redis, hosts = [], nginx, browser;
// One cookie key for every host: a cookie one signed is good on the others,
// and on a host that restarts.
const cookieKey = cookieKeyFile(mkdtempSync(join(tmpdir(), "house-keys-")));

before(async () => {
  redis = await startRedis();
  // A reconnection delay of 1 to 3 s: long enough for the gap test to
  // publish while a page is away.
  const engine = ["--engine", `redis://127.0.0.1:${redis.port}`, "--retry-ms", "2000", "--cookie-key-file", cookieKey];
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
  Promise.all(hosts.map(async (h) => (await getJson(`http://127.0.0.1:${h.admin}/_house/stats`)).subscriptions));

test("two pages on two hosts behind nginx see each other's messages", async () => {
  const base = `http://127.0.0.1:${nginx.port}`;
  const ada = await joinAs(browser, base, "Ada", "lb");
  const bob = await joinAs(browser, base, "Bob", "lb");
  // least_conn sent the second stream to the host without one.
  assert.deepEqual(await subscriptions(), [1, 1], "one stream on each host");
  for (const page of [ada, bob]) {
    assert.equal(await page.evaluate(() => document.body.dataset.transport), "websocket", "nginx passes WebSockets");
    // Presence is one set across the hosts: each page lists both.
    await page.waitForFunction(() => [...document.querySelectorAll("#members li")].map((l) => l.textContent).join() === "Ada,Bob",
      null, { timeout: 10000 });
  }

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

test("a visitor's to-do list is one list on both hosts behind nginx", async () => {
  const base = `http://127.0.0.1:${nginx.port}`;
  const visitor = await browser.newContext();
  const page = await visitor.newPage();
  await page.goto(`${base}/todo`);
  await page.locator("#status", { hasText: "0 items" }).waitFor();
  for (const text of ["on one host", "or the other"]) {
    await page.getByLabel("New item").fill(text);
    await page.getByLabel("New item").press("Enter");
    await page.locator("#list li .title", { hasText: text }).waitFor();
  }
  const tab = await visitor.newPage();
  await tab.goto(`${base}/todo`);
  await tab.locator("#status", { hasText: "2 items" }).waitFor();
  // Each host, asked directly with the visitor's cookie, has the same list.
  for (const h of hosts) {
    const r = await visitor.request.get(`http://127.0.0.1:${h.port}/todos`);
    assert.equal(r.status(), 200);
    assert.deepEqual((await r.json()).map((t) => t.title), ["on one host", "or the other"], `host ${h.port}`);
  }
  // A change made through one host reaches the other tab, wherever its
  // stream is.
  await page.getByRole("checkbox", { name: "on one host" }).check();
  await tab.locator("#list li.done .title", { hasText: "on one host" }).waitFor({ timeout: 5000 });
  await visitor.close();
  // The next test finds a page's host by its one subscription: wait for
  // the hosts to see these streams gone (nginx closes them upstream).
  const deadline = Date.now() + 10000;
  while ((await subscriptions()).some((n) => n > 0)) {
    assert.ok(Date.now() < deadline, `streams still open: ${await subscriptions()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
});

test("a page whose host restarts is shown what was said while it was away", async () => {
  const base = `http://127.0.0.1:${nginx.port}`;
  const ada = await joinAs(browser, base, "Ada", "gap");
  const onA = (await subscriptions()).indexOf(1);
  assert.notEqual(onA, -1, "Ada's stream is on one host");
  const bob = await joinAs(browser, base, "Bob", "gap");
  const send = async (page, text) => {
    await page.getByLabel("Message", { exact: true }).fill(text);
    await page.getByLabel("Message", { exact: true }).press("Enter");
    await page.locator("#log li.mine", { hasText: text }).waitFor({ timeout: 5000 });
  };
  await send(bob, "before the restart");
  await ada.locator("#log li", { hasText: "before the restart" }).waitFor();
  // Ada's host goes (SIGTERM: it tells her page to come back in 1 to 3 s).
  const engine = ["--engine", `redis://127.0.0.1:${redis.port}`, "--retry-ms", "2000", "--cookie-key-file", cookieKey];
  await stop(hosts[onA].child);
  await send(bob, "said during the gap");
  await send(bob, "also during the gap");
  assert.equal(await ada.locator("#log li", { hasText: "during the gap" }).count(), 0, "Ada was away");
  hosts[onA] = await startHouse(hosts[onA].port, guests, engine);
  // Her page reconnects (through nginx, to whichever host answers) with
  // its last id, and Redis's history replays what she missed.
  await ada.locator("#log li", { hasText: "also during the gap" }).waitFor({ timeout: 15000 });
  const lines = (await ada.locator("#log li").allTextContents()).filter((l) => l.startsWith("Bob:"));
  assert.deepEqual(lines, ["Bob:before the restart", "Bob:said during the gap", "Bob:also during the gap"]);
  assert.equal(await ada.locator("#log li.reset").count(), 0, "nothing was lost, so no reset");
  await send(bob, "and live again");
  await ada.locator("#log li", { hasText: "and live again" }).waitFor();
  await ada.close(); await bob.close();
});

test("while Redis is down a send is refused, keeps its text, and goes through when sent again", async () => {
  const base = `http://127.0.0.1:${nginx.port}`;
  const ada = await joinAs(browser, base, "Ada", "outage");
  const visitor = await browser.newContext();
  const todo = await visitor.newPage();
  await todo.goto(`${base}/todo`);
  await todo.locator("#status", { hasText: "0 items" }).waitFor();
  const port = redis.port;
  await stop(redis.child);
  const message = ada.getByLabel("Message", { exact: true });
  await message.fill("sent while redis is down");
  await message.press("Enter");
  // Refused (Redis known down) or not confirmed (the connection died with
  // the commit on it): either way shown as not done, the text kept.
  await ada.locator("#error", { hasText: /try again/i }).waitFor({ timeout: 10000 });
  assert.match(await ada.locator("#error").textContent(), /^Not (sent|confirmed): /);
  assert.equal(await message.inputValue(), "sent while redis is down", "the text stays");
  assert.equal(await ada.locator("#log li", { hasText: "sent while redis is down" }).count(), 0);
  await todo.getByLabel("New item").fill("added while redis is down");
  await todo.getByLabel("New item").press("Enter");
  await todo.locator("#error", { hasText: /try again/i }).waitFor({ timeout: 10000 });
  assert.match(await todo.locator("#error").textContent(), /^Not (saved|confirmed): /);
  assert.equal(await todo.getByLabel("New item").inputValue(), "added while redis is down");

  redis = await startRedis(port);
  // The user sends again, once the last try has its answer, until it goes
  // (the hosts reconnect within about a second).
  const retry = async (page, button, done, what) => {
    const deadline = Date.now() + 15000;
    while (await done.count() === 0) {
      assert.ok(Date.now() < deadline, `${what} never went through`);
      await page.evaluate(() => { document.getElementById("error").textContent = ""; });
      await page.getByRole("button", { name: button }).click();
      // Its answer: the reason shown, or the line in the page.
      await Promise.race([
        page.locator("#error:not(:empty)").waitFor({ timeout: 10000 }),
        done.waitFor({ timeout: 10000 }),
      ]).catch(() => {});
    }
  };
  await retry(ada, "Send", ada.locator("#log li.mine", { hasText: "sent while redis is down" }), "the message");
  assert.equal(await message.inputValue(), "", "sent: the input is cleared");
  await retry(todo, "Add", todo.locator("#list li .title", { hasText: "added while redis is down" }), "the item");
  assert.equal(await todo.locator("#list li").count(), 1, "saved once");
  await ada.close(); await visitor.close();
});
