// End-to-end test of the settings page in Debian's Chromium (headless),
// against the real byok-server binary and mock providers on loopback.
// Run by `cargo test` (bins/byok-server/tests/e2e.rs) with BYOK_SERVER_BIN set.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const ADMIN = "e2e-admin-token-0123456789abcdef";
const GOOD_OPENAI = "sk-proj-E2EGOODKEY0123456789abcdefghijklmnop";
const OTHER_OPENAI = "sk-proj-E2EREPLACED0123456789abcdefghijklmno";
const BAD_ANTHROPIC = `sk-ant-api03-${"x".repeat(93)}AA`;
const TEAM_OPENAI = "sk-proj-E2ETEAMKEY0123456789abcdefghijklmnopq";
const DEEPSEEK = `sk-${"d".repeat(32)}`;
const GEMINI = `AIza${"g".repeat(35)}`;
const TABS = ["keys", "routing", "usage", "budgets", "tokens", "activity"];
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const artifacts = path.join(path.dirname(new URL(import.meta.url).pathname), "artifacts");
rmSync(artifacts, { recursive: true, force: true }); // no stale screenshots
mkdirSync(artifacts, { recursive: true });

// Mock providers: OpenAI accepts its keys, Anthropic rejects every key.
const mock = http.createServer((req, res) => {
  const auth = req.headers.authorization || "";
  const anthropicKey = req.headers["x-api-key"] || "";
  if (req.url.startsWith("/v1/models") && anthropicKey.includes("WORKSPACE")) {
    // A key bound to a workspace, sent without its id.
    res.writeHead(400, { "content-type": "application/json" });
    res.end(JSON.stringify({ type: "error", error: { type: "invalid_request_error", message: "This API key requires the anthropic-workspace-id header" } }));
  } else if (req.url.startsWith("/v1/models") && anthropicKey.includes("BUSY")) {
    res.writeHead(529, { "content-type": "application/json" });
    res.end(JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }));
  } else if (req.url.startsWith("/v1/models") && anthropicKey) {
    res.writeHead(401, { "content-type": "application/json" });
    res.end(JSON.stringify({ type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } }));
  } else if (req.url.startsWith("/v1/chat/completions") && auth.startsWith("Bearer sk-proj-")) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id: "c1", object: "chat.completion", created: 1, model: "gpt-4o-mini",
      choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 } }));
  } else if (req.url.startsWith("/user/balance")) {
    // DeepSeek: a working key on an empty account.
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ is_available: false, balance_infos: [] }));
  } else if (req.url.startsWith("/v1beta/models")) {
    // Gemini: rate-limited.
    res.writeHead(429, { "content-type": "application/json", "retry-after": "30" });
    res.end(JSON.stringify({ error: { code: 429, message: "Resource has been exhausted", status: "RESOURCE_EXHAUSTED" } }));
  } else if (req.url.startsWith("/v1/models") && auth.startsWith("Bearer sk-proj-")) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ object: "list", data: [] }));
  } else {
    res.writeHead(404, { "content-type": "application/json" });
    res.end("{}");
  }
});
await new Promise((ok) => mock.listen(0, "127.0.0.1", ok));
const mockUrl = `http://127.0.0.1:${mock.address().port}`;

// The server, on a free port, in a fresh directory.
const dir = mkdtempSync(path.join(tmpdir(), "byok-e2e-"));
const server = spawn(process.env.BYOK_SERVER_BIN, [], {
  cwd: dir,
  env: {
    BYOK_BIND: "127.0.0.1:0",
    BYOK_ADMIN_TOKEN: ADMIN,
    BYOK_OPENAI_BASE_URL: `${mockUrl}/v1`,
    BYOK_ANTHROPIC_BASE_URL: mockUrl,
    BYOK_DEEPSEEK_BASE_URL: mockUrl,
    BYOK_GEMINI_BASE_URL: mockUrl,
    // No DNS in the browser test: the Azure endpoint is taken as written.
    BYOK_ALLOW_PRIVATE_ENDPOINTS: "true",
    BYOK_LOG: "warn,byok_server=info",
  },
  stdio: ["ignore", "ignore", "pipe"],
});
const base = await new Promise((ok, fail) => {
  let log = "";
  server.stderr.on("data", (chunk) => {
    log += chunk;
    const found = log.match(/address=(\S+)/);
    if (found) ok(`http://${found[1]}`);
  });
  server.on("exit", (code) => fail(new Error(`byok-server exited (${code}): ${log}`)));
  setTimeout(() => fail(new Error(`byok-server did not start: ${log}`)), 60_000);
});

async function admin(method, url, body) {
  const res = await fetch(base + url, { method, headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return res.json();
}
const { token } = await admin("POST", "/api/admin/users", { user_id: "alice" });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const violations = [];
let failed = false;

// Every tab: reachable by its link and its URL fragment, alone on screen,
// no horizontal overflow, no serious accessibility violation (axe-core),
// and a screenshot for CI and the docs.
async function tourTabs(page, name, width) {
  for (const tab of TABS) {
    await page.click(`.tabs a[data-tab="${tab}"]`);
    await page.waitForFunction((t) => location.hash === `#${t}` && [...document.querySelectorAll(`[data-panel="${t}"]`)].some((p) => !p.hidden), tab);
    const visible = await page.evaluate(() => [...document.querySelectorAll("[data-panel]")].filter((p) => !p.hidden).map((p) => p.dataset.panel));
    assert.ok(visible.length > 0 && visible.every((p) => p === tab), `only the ${tab} tab shows: ${visible}`);
    assert.equal(await page.getAttribute(`.tabs a[data-tab="${tab}"]`, "aria-current"), "page");
    const overflow = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert.ok(overflow[0] <= overflow[1], `${tab} at ${width} px is ${overflow[0]} px wide`);
    await page.evaluate(AXE);
    const found = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`));
    assert.deepEqual(found, [], `${tab} at ${width} px: serious accessibility violations`);
    await page.screenshot({ path: path.join(artifacts, `${tab}-${name}.png`), fullPage: true });
  }
}
try {
  for (const [name, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 375, height: 800 }]]) {
    const page = await browser.newPage({ viewport });
    page.on("console", (msg) => { if (/Content Security Policy|Refused to/.test(msg.text())) violations.push(msg.text()); });
    page.on("dialog", (dialog) => dialog.accept());
    const response = await page.goto(base + "/");
    assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
    assert.equal(response.headers()["x-frame-options"], "DENY");

    // A wrong token shows an error in words.
    await page.fill("#token", "byok_0000000000000000_" + "A".repeat(43));
    await page.click("#sign-in-form button[type=submit]");
    await page.waitForSelector("#sign-in-error:not([hidden])");
    assert.match(await page.textContent("#sign-in-error"), /not accepted/);

    // Sign in.
    await page.fill("#token", token);
    await page.click("#sign-in-form button[type=submit]");
    await page.waitForSelector("#app:not([hidden])");
    assert.equal(await page.textContent("#who-name"), "alice");
    assert.equal(await page.evaluate(() => location.href.includes("byok_")), false, "the token is never in the URL");
    await page.waitForSelector('[data-provider="azure_openai"]');

    if (name === "desktop") {
      // Add an OpenAI key: masked, untested, field cleared.
      const openai = '[data-provider="openai"]';
      await page.fill(`${openai} .key`, GOOD_OPENAI);
      await page.click(`${openai} .save-button`);
      await page.waitForSelector(`${openai} .badge.untested`);
      assert.match(await page.textContent(`${openai} .masked`), /sk-p\*{8}mnop/);
      assert.equal(await page.inputValue(`${openai} .key`), "");
      assert.equal((await page.content()).includes(GOOD_OPENAI), false, "the key is not in the page");

      // Test it: working, with a latency.
      await page.click(`${openai} .test-button`);
      await page.waitForSelector(`${openai} .badge.valid`);
      assert.match(await page.textContent(`${openai} .tested`), /answered in \d+ ms/);

      // A wrong key for another provider is reported invalid.
      const anthropic = '[data-provider="anthropic"]';
      await page.fill(`${anthropic} .key`, BAD_ANTHROPIC);
      await page.click(`${anthropic} .save-button`);
      await page.waitForSelector(`${anthropic} .badge.untested`);
      await page.click(`${anthropic} .test-button`);
      await page.waitForSelector(`${anthropic} .badge.invalid`);
      assert.equal(await page.textContent(`${anthropic} .badge`), "Invalid key");
      assert.match(await page.textContent(`${anthropic} .result`), /Anthropic rejected the API key/);
      for (const [marker, state, badgeWords] of [["WORKSPACE", "misconfigured", "Needs a setting"], ["BUSY", "unavailable", "Provider unavailable"]]) {
        await page.fill(`${anthropic} .key`, `sk-ant-api03-${marker}${"x".repeat(93 - marker.length)}AA`);
        await page.click(`${anthropic} .save-button`);
        await page.waitForSelector(`${anthropic} .badge.untested`);
        await page.click(`${anthropic} .test-button`);
        await page.waitForSelector(`${anthropic} .badge.${state}`);
        assert.equal(await page.textContent(`${anthropic} .badge`), badgeWords);
      }

      // Every test result has its own badge and words.
      for (const [provider, key, state, badgeWords] of [
        ["deepseek", DEEPSEEK, "no_credit", "Out of credit"],
        ["gemini", GEMINI, "rate_limited", "Rate limited"],
      ]) {
        const card = `[data-provider="${provider}"]`;
        assert.equal(await page.textContent(`${card} .badge`), "Not configured");
        await page.fill(`${card} .key`, key);
        await page.click(`${card} .save-button`);
        await page.waitForSelector(`${card} .badge.untested`);
        assert.equal(await page.textContent(`${card} .badge`), "Untested");
        await page.click(`${card} .test-button`);
        await page.waitForSelector(`${card} .badge.${state}`);
        assert.equal(await page.textContent(`${card} .badge`), badgeWords);
        await page.click(`${card} .remove-button`);
        await page.waitForSelector(`${card} .badge.none`);
      }

      // Azure: saved with its settings, then a setting changed without the key.
      const azure = '[data-provider="azure_openai"]';
      await page.fill(`${azure} .key`, "0123456789abcdef0123456789abcdef");
      // Nothing listens there: the test finds it unreachable, with no answer.
      await page.fill(`${azure} .endpoint`, "https://127.0.0.1:9");
      await page.fill(`${azure} .deployment`, "chat1");
      await page.click(`${azure} .save-button`);
      await page.waitForSelector(`${azure} .badge.untested`);
      await page.click(`${azure} .test-button`);
      await page.waitForSelector(`${azure} .badge.unreachable`);
      assert.equal(await page.textContent(`${azure} .badge`), "Unreachable");
      assert.match(await page.textContent(`${azure} .tested`), /no answer/);
      assert.match(await page.textContent(`${azure} .result`), /Azure OpenAI/);
      await page.fill(`${azure} .deployment`, "chat2");
      await page.fill(`${azure} .embedding_deployment`, "embed1");
      await page.click(`${azure} .settings-button`);
      await page.waitForFunction(() => document.querySelector("#notice").textContent.includes("settings saved"));
      assert.equal(await page.inputValue(`${azure} .deployment`), "chat2");
      assert.equal(await page.inputValue(`${azure} .embedding_deployment`), "embed1");
      await page.click(`${azure} .remove-button`);
      await page.waitForSelector(`${azure} .badge.none`);

      // A malformed key gets an inline error in words.
      await page.fill('[data-provider="gemini"] .key', "not a key");
      await page.click('[data-provider="gemini"] .save-button');
      await page.waitForSelector('[data-provider="gemini"] .error:not([hidden])');
      assert.match(await page.textContent('[data-provider="gemini"] .error'), /spaces/);
      assert.equal(await page.inputValue('[data-provider="gemini"] .key'), "not a key", "kept to be fixed");

      // Replace the OpenAI key, remove the Anthropic one (confirmed).
      await page.fill(`${openai} .key`, OTHER_OPENAI);
      await page.click(`${openai} .save-button`);
      await page.waitForFunction((sel) => document.querySelector(sel).textContent.includes("lmno"), `${openai} .masked`);
      await page.click(`${anthropic} .remove-button`);
      await page.waitForSelector(`${anthropic} .badge.none`);

      // A second OpenAI key, labelled, tried after the first; then used first.
      await page.fill(`${openai} .key`, TEAM_OPENAI);
      await page.fill(`${openai} .label`, "team");
      await page.click(`${openai} .add-button`);
      await page.waitForSelector(`${openai} .key-list .key-row:nth-child(2)`);
      assert.equal(await page.textContent(`${openai} .key-row:nth-child(2) .key-name`), "team");
      assert.equal((await page.content()).includes(TEAM_OPENAI), false, "the key is not in the page");
      await page.click(`${openai} .key-row:nth-child(2) .key-first`);
      await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "team", `${openai} .key-row:nth-child(1) .key-name`);
      await page.click(`${openai} .key-row:nth-child(1) .key-test`);
      await page.waitForSelector(`${openai} .key-row:nth-child(1) .badge.valid`);

      // A monthly spending limit, shown with its bar; a bad amount is explained.
      await page.click('.tabs a[data-tab="budgets"]');
      await page.fill("#budget-limit", "five");
      await page.click("#budget-form button[type=submit]");
      await page.waitForSelector("#budget-error:not([hidden])");
      assert.match(await page.textContent("#budget-error"), /in dollars/);
      await page.fill("#budget-limit", "5");
      await page.click("#budget-form button[type=submit]");
      await page.waitForSelector("#budgets li .meter");
      assert.match(await page.textContent("#budgets li"), /\$5\.00 per month, all providers \(hard\): \$0 spent/);

      // A token for one tool: shown once, listed with its scope, revocable.
      await page.click('.tabs a[data-tab="tokens"]');
      await page.fill("#token-label", "CI job");
      await page.fill("#token-models", "gpt-4o-mini");
      await page.fill("#token-rpm", "30");
      await page.click("#token-form button[type=submit]");
      await page.waitForSelector("#token-created:not([hidden])");
      const secret = await page.textContent("#token-secret");
      assert.match(secret, /^byok_[0-9a-f]{16}_/);
      await page.waitForFunction(() => document.querySelector("#tokens").textContent.includes("CI job"));
      assert.match(await page.textContent("#tokens"), /CI job: gateway; models: gpt-4o-mini; 30 requests a minute; never used/);
      const scoped = await fetch(`${base}/api/user/api-keys/alice/keys`, { headers: { Authorization: `Bearer ${secret}` } });
      assert.equal(scoped.status, 403, "a gateway-only token cannot list keys");
      await page.click('#tokens li:first-child .token-revoke');
      await page.waitForFunction(() => document.querySelector("#tokens li:first-child").textContent.includes("revoked"));

      // A request through the gateway shows up as spend, savings and a bar.
      const answer = await fetch(`${base}/v1/chat/completions`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hi" }] }),
      });
      assert.equal(answer.status, 200);
      await page.click('.tabs a[data-tab="keys"]');
      for (let i = 0; i < 20 && (await page.textContent("#stat-spend")) === "$0"; i++) {
        await page.waitForTimeout(250);
        await page.reload();
        await page.waitForSelector('[data-provider="azure_openai"]');
      }
      assert.equal(await page.textContent("#stat-spend"), "$0.00045");
      assert.equal(await page.getAttribute('[data-provider="openai"] .console', "href"), "https://platform.openai.com/api-keys");
      assert.equal(await page.textContent('[data-provider="openai"] .console'), "Get an OpenAI key");
      assert.match(await page.textContent("#stat-savings"), /^\$0\.\d+ \(\d+(\.\d)?%\)$/);
      assert.equal(await page.locator("#chart rect.fill.openai").count(), 1);
      assert.match(await page.textContent("#legend"), /OpenAI/);
      assert.match(await page.textContent("#chart"), /\$0\.00045/, "the day's amount is written on the chart");
      assert.match(await page.textContent("#by-model"), /OpenAI\s*gpt-4o-mini\s*1\s*1,000 \/ 500\s*\$0\.00045\s*exact/);
      assert.match(await page.textContent("#requests"), /Chat Completions\s*OpenAI · gpt-4o-mini/);

      // The savings baseline is the user's to pick.
      await page.click('.tabs a[data-tab="usage"]');
      await page.selectOption("#baseline", "openai:gpt-4o-mini");
      await page.waitForFunction(() => document.querySelector("#baseline-words").textContent.includes("openai gpt-4o-mini"));
      assert.equal(await page.textContent("#usage-saved"), "$0 (0.0%)");

      // The dashboard and routing follow, in words.
      assert.equal(await page.textContent("#stat-configured"), "1 of 5");
      assert.match(await page.textContent('#routes table[data-task="general"]'), /Serves now\s*OpenAI\s*gpt-4o-mini\s*\$0\.15 \/ \$0\.60/);
      assert.match(await page.textContent("#routes"), /no key for them: DeepSeek, Anthropic, Google Gemini, Azure OpenAI\./);
      assert.match(await page.textContent("#audit"), /Key removed — Anthropic \(done\)/);

      // The fragment is the tab: reload keeps it, back returns to the last one.
      await page.click('.tabs a[data-tab="routing"]');
      await page.click('.tabs a[data-tab="activity"]');
      await page.reload();
      await page.waitForSelector("#audit li");
      assert.equal(await page.evaluate(() => document.querySelector('[data-panel="activity"]').hidden), false);
      await page.goBack();
      await page.waitForFunction(() => !document.querySelector('[data-panel="routing"]').hidden);
      // Not the desktop app: no local-gateway panel, and signing out is possible.
      assert.equal(await page.evaluate(() => document.querySelector("#desktop-panel").hidden), true);
    }
    if (name === "phone") {
      // State from the desktop run is there.
      await page.waitForSelector('[data-provider="openai"] .key-row:nth-child(1) .badge.valid'); // the team key, tested
    }
    await tourTabs(page, name, viewport.width);
    await page.click('.tabs a[data-tab="keys"]');
    await page.screenshot({ path: path.join(artifacts, `settings-${name}.png`), fullPage: true });

    // Sign out.
    await page.click("#sign-out");
    await page.waitForSelector("#sign-in:not([hidden])");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("byok.token")), null);
    await page.close();
  }
  assert.deepEqual(violations, [], "no Content-Security-Policy violations");
  console.log("e2e: 2 passed, 0 failed");
} catch (error) {
  failed = true;
  console.error(error);
  console.log("e2e: 0 passed, 1 failed");
} finally {
  await browser.close();
  server.kill("SIGTERM");
  mock.close();
}
process.exit(failed ? 1 : 0);
