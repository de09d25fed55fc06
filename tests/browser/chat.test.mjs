// The chat page end to end in a real headless Chromium (Debian's), driven by
// playwright-core: two pages in one room, a message typed in one appears in
// the other, a refused message shows its reason, the page survives a
// server restart (and says its history is gone), and a newcomer is shown
// the room's backlog.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repo, startHouse, stop, launchBrowser, joinAs as join_ } from "./support.mjs";

const guests = mkdtempSync(join(tmpdir(), "house-browser-"));
copyFileSync(join(repo, "guests", "chat.wasm"), join(guests, "chat.wasm"));

let server, port, browser;

before(async () => {
  ({ child: server, port } = await startHouse(0, guests));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (server) await stop(server);
  rmSync(guests, { recursive: true, force: true });
});

const joinAs = (name, room) => join_(browser, `http://127.0.0.1:${port}`, name, room);

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
  for (const page of [ada, bob]) {
    assert.equal(await page.evaluate(() => document.body.dataset.transport), "websocket", "live over a WebSocket");
  }
  await ada.close(); await bob.close();
});

test("the room shows who is in it, live; one person with two tabs joins once and leaves once", async () => {
  const members = (page) => page.locator("#members li").allTextContents();
  const until = async (page, want) => {
    await page.waitForFunction((w) => [...document.querySelectorAll("#members li")].map((l) => l.textContent).join() === w,
      want.join(), { timeout: 10000 });
  };
  const ada = await joinAs("Ada", "presence");
  await until(ada, ["Ada"]);
  // Bob in two tabs of one browser (one cookie, one name).
  const context = await browser.newContext({ viewport: { width: 390, height: 800 } });
  const tab = async () => {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${port}/index`);
    await page.getByLabel("Room").fill("presence");
    await page.getByLabel("Your name").fill("Bob");
    await page.getByRole("button", { name: "Join room" }).click();
    await page.locator("#status", { hasText: "Live in “presence”" }).waitFor();
    return page;
  };
  const bob1 = await tab();
  await until(ada, ["Ada", "Bob"]);
  await until(bob1, ["Ada", "Bob"]);
  const bob2 = await tab();
  await until(bob2, ["Ada", "Bob"]);
  await bob1.close();
  // Bob is still here (his other tab); Ada saw one join and no leave.
  await until(bob2, ["Ada", "Bob"]);
  assert.deepEqual(await members(ada), ["Ada", "Bob"]);
  await bob2.close();
  await until(ada, ["Ada"]);
  await context.close();
  await ada.close();
});

test("where the upgrade is refused, the page falls back to SSE and a POST per message", async () => {
  // This server takes sockets from another site's pages only: a refusal
  // as a proxy that does not pass WebSockets would make (the upgrade fails).
  const other = await startHouse(0, guests, ["--ws-allowed-origins", "https://elsewhere.example"]);
  const base = `http://127.0.0.1:${other.port}`;
  try {
    const ada = await join_(browser, base, "Ada", "fallback");
    const bob = await joinAs("Bob", "fallback");   // the first server, over a socket
    assert.equal(await ada.evaluate(() => document.body.dataset.transport), "sse");
    const ada2 = await join_(browser, base, "Ada2", "fallback");
    await send(ada, "sent by a POST");
    await ada2.locator("#log li", { hasText: "sent by a POST" }).waitFor();
    await ada.locator("#log li.mine", { hasText: "sent by a POST" }).waitFor();
    assert.equal(await ada2.locator("#log li .name.verified").count(), 1);
    assert.equal(await bob.locator("#log li", { hasText: "sent by a POST" }).count(), 0, "another server's room");
    await ada.close(); await ada2.close(); await bob.close();
  } finally {
    await stop(other.child);
  }
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

test("a name is its first sender's in a room: the server signs it, and nobody else posts under it", async () => {
  const ada = await joinAs("Ada", "names");
  const bob = await joinAs("Bob", "names");
  await ada.getByLabel("Message", { exact: true }).fill("it is really me");
  await ada.getByLabel("Message", { exact: true }).press("Enter");
  const line = bob.locator("#log li", { hasText: "it is really me" });
  await line.waitFor();
  assert.equal(await line.locator(".name.verified").count(), 1, "shown as verified");
  assert.equal(await line.locator(".name").getAttribute("title"), "a name the server verified");
  const eve = await joinAs("Ada", "names");     // another browser, the same name
  await eve.getByLabel("Message", { exact: true }).fill("it is me, honest");
  await eve.getByLabel("Message", { exact: true }).press("Enter");
  await eve.locator("#error", { hasText: "Not sent: the name Ada is taken" }).waitFor();
  assert.equal(await bob.locator("#log li", { hasText: "it is me, honest" }).count(), 0);
  // The signed cookie is HttpOnly: the page's script cannot read or copy it.
  assert.equal(await ada.evaluate(() => document.cookie), "");
  await ada.close(); await bob.close(); await eve.close();
});

const send = async (page, text) => {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByLabel("Message", { exact: true }).press("Enter");
};

test("the page says so when the server restarts and its history is gone, and reconnects", async () => {
  const ada = await joinAs("Ada", "restart");
  const bob = await joinAs("Bob", "restart");
  await send(bob, "before the restart");
  await ada.locator("#log li", { hasText: "before the restart" }).waitFor();
  await stop(server);
  await ada.locator("#status", { hasText: "reconnecting" }).waitFor();
  // The memory engine's history went with the process: the page's last id
  // means nothing to the new one, which says so with `event: reset`.
  ({ child: server } = await startHouse(port, guests));
  await ada.locator("#status", { hasText: "Live in “restart”" }).waitFor({ timeout: 15000 });
  await bob.locator("#status", { hasText: "Live in “restart”" }).waitFor({ timeout: 15000 });
  await ada.locator("#log li.reset", { hasText: "some messages since you left are gone" }).waitFor();
  assert.equal(await ada.locator("#log li", { hasText: "before the restart" }).count(), 0, "the log started over");
  await send(bob, "back again");
  await ada.locator("#log li", { hasText: "back again" }).waitFor();
  await ada.close(); await bob.close();
});

test("a page that joins later is shown the room's backlog, in order", async () => {
  const ada = await joinAs("Ada", "backlog");
  for (const text of ["first message", "second message", "third message"]) {
    await send(ada, text);
    await ada.locator("#log li", { hasText: text }).waitFor();
  }
  const carol = await joinAs("Carol", "backlog");
  await carol.locator("#log li", { hasText: "third message" }).waitFor();
  const lines = (await carol.locator("#log li").allTextContents()).filter((l) => l.includes(" message"));
  assert.deepEqual(lines, ["Ada:first message", "Ada:second message", "Ada:third message"]);
  await ada.close(); await carol.close();
});

// The log scrolls inside the viewport: after 41 messages the page itself
// does not scroll, the message input and the newest message are in view,
// on a desktop and on a phone; a newcomer's page opens on the newest of
// its backlog. Screenshots land in target/screenshots/ for a human eye.
for (const [device, viewport] of [["desktop", { width: 1280, height: 800 }], ["phone", { width: 390, height: 844 }]]) {
  test(`a long conversation scrolls inside the page (${device} ${viewport.width}x${viewport.height})`, async () => {
    const room = `layout-${device}`;
    const writer = await joinAs("Ada", room);
    // Each sent once the last is in: Enter while a send is on its way does
    // nothing (the button is disabled), and `fill` would replace the text.
    for (let i = 1; i <= 41; i++) {
      await send(writer, `message number ${i}`);
      await writer.locator("#log li", { hasText: new RegExp(`message number ${i}$`) }).waitFor();
    }
    const page = await browser.newPage({ viewport });
    await page.goto(`http://127.0.0.1:${port}/index`);
    await page.getByLabel("Room").fill(room);
    await page.getByLabel("Your name").fill("Bob");
    await page.getByRole("button", { name: "Join room" }).click();
    const newest = page.locator("#log li", { hasText: "message number 41" });
    await newest.waitFor();
    const inView = async (locator) => {
      const box = await locator.boundingBox();
      return box !== null && box.y >= 0 && box.y + box.height <= viewport.height && box.x >= 0 &&
        box.x + box.width <= viewport.width;
    };
    const page_ = await page.evaluate(() => ({ scroll: document.documentElement.scrollHeight, inner: innerHeight }));
    assert.ok(page_.scroll <= page_.inner, `the page does not scroll: ${page_.scroll} > ${page_.inner}`);
    assert.ok(await inView(page.getByLabel("Message", { exact: true })), "the message input is in view");
    assert.ok(await inView(page.getByRole("button", { name: "Send" })), "the send button is in view");
    // The newest message is within the log's visible part, not below it.
    const visible = await page.evaluate(() => {
      const log = document.getElementById("log").getBoundingClientRect();
      const last = [...document.querySelectorAll("#log li")].pop().getBoundingClientRect();
      return last.top >= log.top && last.bottom <= log.bottom + 1;
    });
    assert.ok(visible, "the newest message is in view inside the log");
    assert.ok(await inView(newest), "the newest message is in the viewport");
    mkdirSync(join(repo, "target", "screenshots"), { recursive: true });
    await page.screenshot({ path: join(repo, "target", "screenshots", `chat-${device}.png`) });
    await writer.close(); await page.close();
  });
}

test("a send leaves what was typed while it was on its way", async () => {
  const ada = await joinAs("Ada", "in-flight");
  await send(ada, "claims the name first");
  await ada.locator("#log li.mine", { hasText: "claims the name first" }).waitFor();
  // Hold what the page sends on its socket for a moment, as a slow network
  // would; the socket is opened again (a new join) to pass through here.
  let release;
  const held = new Promise((r) => { release = r; });
  await ada.routeWebSocket(/\/source/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage(async (m) => { await held; server.send(m); });
  });
  await ada.getByRole("button", { name: "Join room" }).click();
  await ada.locator("#status", { hasText: "Live in “in-flight”" }).waitFor();
  await send(ada, "the first message");
  await ada.getByLabel("Message", { exact: true }).press("End");
  await ada.getByLabel("Message", { exact: true }).pressSequentially(" and the next");
  assert.ok(await ada.getByRole("button", { name: "Send" }).isDisabled(), "the send is held on its way");
  release();
  await ada.locator("#log li.mine", { hasText: "the first message" }).waitFor();
  await ada.waitForFunction(() => document.getElementById("message").value === " and the next");
  await ada.close();
});
