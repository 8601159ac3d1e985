// byok settings page: plain JavaScript, no build step, no third-party code.
// The token lives in sessionStorage only (this tab), never in a URL.

const $ = (id) => document.getElementById(id);
const TOKEN = "byok.token";

const PROVIDER_NAMES = {
  openai: "OpenAI", deepseek: "DeepSeek", anthropic: "Anthropic", gemini: "Google Gemini", azure_openai: "Azure OpenAI",
};

const ACTION_WORDS = {
  "user.create": "Account created",
  "user.delete": "Account deleted",
  "token.issue": "Token issued",
  "token.revoke": "Token revoked",
  "user.disable": "Account disabled",
  "user.enable": "Account enabled",
  "key.update": "Key order or label changed",
  "budget.create": "Spending limit set",
  "budget.update": "Spending limit changed",
  "budget.delete": "Spending limit removed",
  "user.limits": "Rate limits changed",
  "auth.failure": "Access refused",
  "key.create": "Key added",
  "key.replace": "Key replaced",
  "key.create_rejected": "Key refused",
  "key.delete": "Key removed",
  "key.test": "Key tested",
  "key.use": "Key used",
  "key.decrypt_failed": "Key could not be opened",
  "key.rewrap": "Key re-encrypted",
  "key.export": "Keys exported",
};

const OUTCOME_WORDS = { success: "done", failure: "failed", denied: "refused" };

const STATUS_WORDS = {
  none: "Not configured",
  untested: "Untested",
  valid: "Working",
  invalid: "Invalid key",
  no_credit: "Out of credit",
  rate_limited: "Rate limited",
  misconfigured: "Needs a setting",
  unavailable: "Provider unavailable",
  unreachable: "Unreachable",
};

// Error codes in words; anything else falls back to the server's message.
const ERROR_WORDS = {
  unauthenticated: "That token was not accepted. Check it and sign in again.",
  key_empty: "Paste a key first.",
  key_invalid_chars: "The key has spaces or characters keys never contain. Paste it again without extra text.",
  key_too_long: "That is longer than any key.",
  key_is_masked: "That is the masked form byok shows; paste the full key from your provider.",
  endpoint_required: "Azure needs your resource's endpoint.",
  deployment_required: "Azure needs the deployment name.",
  invalid_endpoint: "The endpoint must be https://<resource>.openai.azure.com.",
  too_many_tests: "Too many tests in a minute. Wait a little and try again.",
  too_many_failures: "Too many failed sign-ins from here. Wait a minute.",
  too_many_keys: "This provider already has the most keys allowed. Remove one first.",
  invalid_label: "Labels are at most 64 characters.",
  invalid_expiry: "The expiry date must be in the future.",
  token_scope_too_narrow: "This token may not manage tokens. Sign in with your main token.",
  token_door_not_allowed: "This token may not do that.",
  invalid_limit: "Write the limit in dollars, like 5 or 0.50.",
  budget_exists: "There is already a limit for that period and provider; change it instead.",
  budget_above_ceiling: "Your administrator caps monthly limits lower than that.",
  budget_required: "Your administrator requires a monthly limit; you can change it but not remove it.",
  store_busy: "The server is busy. Try again in a moment.",
  internal: "Something went wrong on the server.",
};

function words(error) {
  if (!error) return "Something went wrong.";
  if (error.code === "invalid_key_format") return `That does not look like a key for this provider: ${error.message}.`;
  return ERROR_WORDS[error.code] || error.message || "Something went wrong.";
}

class ApiError extends Error {
  constructor(status, error) { super(words(error)); this.status = status; this.error = error; }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data && data.error);
  return data;
}

function show(el, visible) { el.hidden = !visible; }

// Dollars for people: cents from a dollar up, two significant digits below.
function money(usd) {
  const n = Number(usd);
  if (!Number.isFinite(n) || n === 0) return "$0";
  if (Math.abs(n) >= 1) return `$${n.toFixed(2)}`;
  return `$${Number(n.toPrecision(2))}`;
}

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString();
}

// "3 min ago", "yesterday": in the reader's language, with the exact time on hover.
const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
function ago(iso) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
    if (Math.abs(seconds) >= size) return RELATIVE.format(Math.round(seconds / size), unit);
  }
  return RELATIVE.format(Math.round(seconds), "second");
}

function timeCell(iso) {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = ago(iso);
  time.title = when(iso);
  return time;
}

function cell(row, content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.append(content); else td.textContent = content;
  row.append(td);
  return td;
}

// Each cell names its column, for the stacked layout on narrow screens.
function labelCells(table) {
  const names = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((td, i) => { td.dataset.label = names[i] || ""; });
  }
}

function providerMark(provider) {
  const wrap = document.createElement("span");
  const mark = document.createElement("span");
  mark.className = `swatch ${provider}`;
  mark.setAttribute("aria-hidden", "true");
  wrap.append(mark, PROVIDER_NAMES[provider] || provider);
  return wrap;
}

// Tabs: the URL fragment names the open one, so reload and back work.
const TABS = ["keys", "routing", "usage", "budgets", "tokens", "activity"];
function showTab() {
  let name = location.hash.slice(1);
  const link = document.querySelector(`.tabs a[data-tab="${name}"]`);
  if (!TABS.includes(name) || !link || link.hidden) name = "keys";
  for (const panel of document.querySelectorAll("[data-panel]")) {
    panel.hidden = panel.dataset.panel !== name || panel.dataset.unavailable === "true"
      || (panel.id === "desktop-panel" && panel.dataset.desktop !== "true");
  }
  for (const tab of document.querySelectorAll(".tabs a")) {
    if (tab.dataset.tab === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
}
window.addEventListener("hashchange", showTab);

let user = null;

async function signIn(token) {
  sessionStorage.setItem(TOKEN, token);
  const me = await api("GET", "/api/user/whoami");
  if (me.role !== "user") {
    sessionStorage.removeItem(TOKEN);
    throw new ApiError(403, { code: "admin", message: "This is an admin token. Sign in with a user token." });
  }
  user = me.user_id;
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  $("cards").replaceChildren(); // no typed key survives a sign-out
  $("token-secret").textContent = "";
  show($("token-created"), false);
  user = null;
  $("token").value = "";
  show($("app"), false);
  show($("who"), false);
  show($("sign-in"), true);
  $("token").focus();
}

function badgeFor(key, status) {
  if (!key) return "none";
  // What the provider said about the key comes first: a rate-limited or
  // refused key is not "unavailable".
  const said = key.last_test_status;
  if (said && said !== "valid") return said;
  if (status && status.working === false && status.circuit && status.circuit.state === "open") return "unavailable";
  return said || "untested";
}

function latencyWords(status, ms) {
  return status === "unreachable" || ms == null ? "no answer" : `answered in ${ms} ms`;
}

function keyName(key, index) {
  return key.label || `Key ${index + 1}`;
}

function renderKeyRow(info, key, index, count) {
  const row = $("key-row-template").content.firstElementChild.cloneNode(true);
  row.dataset.keyId = key.id;
  row.classList.toggle("off", !key.enabled);
  row.querySelector(".key-name").textContent = keyName(key, index);
  row.querySelector(".key-masked").textContent = key.masked_key;
  const state = key.enabled ? key.last_test_status || "untested" : "off";
  const badge = row.querySelector(".key-status");
  badge.textContent = state === "off" ? "Turned off" : STATUS_WORDS[state];
  badge.classList.add(state === "off" ? "none" : state);
  const base = `/api/user/api-keys/${encodeURIComponent(user)}/keys/${info.id}/${key.id}`;
  const first = row.querySelector(".key-first");
  show(first, index > 0);
  first.addEventListener("click", async () => {
    await api("PATCH", base, { position: 0 });
    // The others keep their order after it.
    await refresh(`${keyName(key, index)} is now used first for ${info.display_name}.`, { demote: { provider: info.id, except: key.id } });
  });
  const toggle = row.querySelector(".key-toggle");
  toggle.textContent = key.enabled ? "Turn off" : "Turn on";
  toggle.addEventListener("click", async () => {
    await api("PATCH", base, { enabled: !key.enabled });
    await refresh(`${keyName(key, index)} turned ${key.enabled ? "off" : "on"}.`);
  });
  row.querySelector(".key-test").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      const report = await api("POST", `${base}/test`);
      await refresh(`${keyName(key, index)}: ${STATUS_WORDS[report.status]}. ${report.message}.`);
    } catch (e) {
      await refresh(e.message);
    }
  });
  row.querySelector(".key-remove").addEventListener("click", async () => {
    if (!window.confirm(`Remove ${keyName(key, index)} (${info.display_name})? byok will stop using it.`)) return;
    await api("DELETE", base);
    await refresh(`${keyName(key, index)} removed.`);
  });
  show(row.querySelector(".key-remove"), count > 1);
  return row;
}

function azureSettings(card) {
  const settings = {};
  for (const field of ["endpoint", "deployment", "embedding_deployment", "api_version"]) {
    const value = card.querySelector(`.${field}`).value.trim();
    if (value) settings[field] = value;
  }
  return settings;
}

function renderCard(info, keys, status) {
  const key = keys[0];
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  const id = info.id;
  card.dataset.provider = id;
  card.querySelector(".name").textContent = info.display_name;
  const state = badgeFor(key, status);
  const badge = card.querySelector(".badge");
  badge.textContent = STATUS_WORDS[state];
  badge.classList.add(state);
  card.querySelector(".best-for").textContent = `Best for ${info.best_for}.`;
  const getKey = card.querySelector(".console");
  getKey.href = info.console_url;
  getKey.textContent = `Get ${/^[AEIOU]/.test(info.display_name) ? "an" : "a"} ${info.display_name} key`;
  card.querySelector(".masked").textContent = !key
    ? "No key saved."
    : keys.length > 1 ? `${keys.length} keys, tried in this order:` : `Key ${key.masked_key}${key.label ? ` (${key.label})` : ""}`;
  const list = card.querySelector(".key-list");
  show(list, keys.length > 1);
  keys.forEach((k, index) => list.append(renderKeyRow(info, k, index, keys.length)));
  card.querySelector(".tested").textContent = key && key.last_tested_at
    ? `Last tested ${ago(key.last_tested_at)}, ${latencyWords(key.last_test_status, key.last_test_latency_ms)}.`
    : "";
  const form = card.querySelector("form");
  const input = card.querySelector(".key");
  const keyId = `key-${id}`;
  input.id = keyId;
  card.querySelector(".key-label").htmlFor = keyId;
  card.querySelector(".key-label").textContent = key
    ? `Replace the first ${info.display_name} key, or add another`
    : `${info.display_name} API key`;
  const labelInput = card.querySelector(".label");
  labelInput.id = `label-${id}`;
  card.querySelector(".label-label").htmlFor = labelInput.id;
  card.querySelector(".hint").textContent = `Keys ${info.key_format_hint}.`;
  input.placeholder = key ? "paste a new key to replace it" : "paste your key";
  const azure = card.querySelector(".azure");
  if (id === "azure_openai") {
    show(azure, true);
    for (const field of ["endpoint", "deployment", "embedding_deployment", "api_version"]) {
      const el = card.querySelector(`.${field}`);
      el.id = `${field}-${id}`;
      card.querySelector(`.${field}-label`).htmlFor = el.id;
      if (key && key.settings[field]) el.value = key.settings[field];
    }
  }
  const error = card.querySelector(".error");
  const result = card.querySelector(".result");
  const removeButton = card.querySelector(".remove-button");
  const testButton = card.querySelector(".test-button");
  const addButton = card.querySelector(".add-button");
  show(removeButton, Boolean(key));
  show(testButton, keys.length === 1);
  show(addButton, Boolean(key));
  removeButton.textContent = keys.length > 1 ? "Remove all" : "Remove";

  const save = async (path, done) => {
    show(error, false);
    const body = { api_key: input.value };
    if (labelInput.value.trim()) body.label = labelInput.value.trim();
    if (id === "azure_openai") Object.assign(body, azureSettings(card));
    try {
      await api("POST", path, body);
      input.value = ""; // the key is not kept in the page
      await refresh(done);
    } catch (e) {
      // Kept (in the page only) so it can be fixed; cleared on success and sign-out.
      error.textContent = e.message;
      show(error, true);
    }
  };
  const keysPath = `/api/user/api-keys/${encodeURIComponent(user)}/keys/${id}`;
  const settingsButton = card.querySelector(".settings-button");
  show(settingsButton, Boolean(key));
  settingsButton.addEventListener("click", async () => {
    show(error, false);
    try {
      await api("PATCH", `${keysPath}/${key.id}`, azureSettings(card));
      await refresh(`${info.display_name} settings saved; the key is unchanged.`);
    } catch (e) {
      error.textContent = e.message;
      show(error, true);
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(keysPath, `${info.display_name} key saved.`);
  });
  addButton.addEventListener("click", () => save(`${keysPath}/add`, `Another ${info.display_name} key added; it is tried after the others.`));

  testButton.addEventListener("click", async () => {
    testButton.disabled = true;
    result.textContent = "Testing…";
    result.classList.add("busy");
    try {
      const report = await api("POST", `/api/user/api-keys/${encodeURIComponent(user)}/keys/${id}/test`);
      await refresh();
      const again = document.querySelector(`[data-provider="${id}"] .result`);
      again.textContent = `${STATUS_WORDS[report.status]} — ${latencyWords(report.status, report.latency_ms)}. ${report.message}.`;
    } catch (e) {
      result.classList.remove("busy");
      result.textContent = e.message;
      testButton.disabled = false;
    }
  });

  removeButton.addEventListener("click", async () => {
    const what = keys.length > 1 ? `all ${keys.length} ${info.display_name} keys` : `your ${info.display_name} key`;
    if (!window.confirm(`Remove ${what}? byok will stop using them.`)) return;
    try {
      await api("DELETE", `/api/user/api-keys/${encodeURIComponent(user)}/keys/${id}`);
      await refresh(`${info.display_name} key removed.`);
    } catch (e) {
      error.textContent = e.message;
      show(error, true);
    }
  });
  return card;
}

const TASK_WORDS = {
  general: "General chat", code: "Code", reasoning: "Reasoning", embeddings: "Embeddings",
};

function circuitWords(circuit) {
  if (!circuit || circuit.state === "closed") return "working";
  if (circuit.state === "open") return `paused after failures; retried in ${Math.ceil((circuit.remaining_ms || 0) / 1000)} s`;
  return "recovering: the next request tests it";
}

// Prices per 1M tokens: cents at least ($0.40), more digits where they matter ($0.075).
function perMillion(usd) {
  const n = Number(usd);
  return Number.isFinite(n) && Number(n.toFixed(2)) === n ? `$${n.toFixed(2)}` : `$${usd}`;
}

function renderRoutes(tasks) {
  const box = $("routes");
  box.replaceChildren();
  for (const task of tasks) {
    const title = document.createElement("h3");
    title.textContent = TASK_WORDS[task.task] || task.task;
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    // Scrolls sideways on a phone: reachable by keyboard, and named.
    wrap.tabIndex = 0;
    wrap.setAttribute("role", "region");
    const table = document.createElement("table");
    table.className = "grid";
    table.dataset.task = task.task;
    const caption = document.createElement("caption");
    caption.className = "visually-hidden";
    caption.textContent = `How ${title.textContent.toLowerCase()} requests are routed now`;
    wrap.setAttribute("aria-label", caption.textContent);
    const head = document.createElement("thead");
    head.innerHTML = '<tr><th scope="col">Order</th><th scope="col">Provider</th><th scope="col">Model</th>'
      + '<th scope="col" class="num">Price per 1M tokens (in / out)</th><th scope="col">Can also do</th><th scope="col">Now</th></tr>';
    const body = document.createElement("tbody");
    task.chain.forEach((link, index) => {
      const row = document.createElement("tr");
      cell(row, index === 0 ? "Serves now" : `If that fails (${index + 1})`, "nowrap");
      cell(row, providerMark(link.provider), "nowrap");
      cell(row, link.model, "mono");
      const price = cell(row, `${perMillion(link.input_usd_per_million)} / ${perMillion(link.output_usd_per_million)}`, "num");
      if (link.price_rules && link.price_rules.length) price.title = link.price_rules.join("; ");
      cell(row, (link.capabilities || []).map((c) => c.replace("_", " ")).join(", ") || "text only");
      const now = [circuitWords(link.circuit)];
      if (link.shutdown_date) {
        const past = new Date(`${link.shutdown_date}T00:00:00Z`).getTime() <= Date.now();
        now.push(`${past ? "retired" : "retires"} on ${new Date(`${link.shutdown_date}T00:00:00Z`).toLocaleDateString(undefined, { timeZone: "UTC", dateStyle: "medium" })}`);
      }
      cell(row, now.join("; "));
      body.append(row);
    });
    // Left out: grouped when the reason is only "no key", one row otherwise.
    const noKey = new Set();
    for (const line of task.skipped) {
      const [where, why] = line.split(" skipped: ");
      const [provider, ...model] = (where || "").split(":");
      if (why === "no key for this provider") { noKey.add(PROVIDER_NAMES[provider] || provider); continue; }
      const row = document.createElement("tr");
      row.className = "skipped";
      cell(row, "Left out");
      cell(row, providerMark(provider));
      cell(row, model.join(":"), "mono");
      cell(row, "", "num");
      cell(row, "");
      cell(row, why || line);
      body.append(row);
    }
    table.append(caption, head, body);
    labelCells(table);
    wrap.append(table);
    box.append(title);
    if (!task.chain.length) {
      const none = document.createElement("p");
      none.className = "error";
      none.textContent = "No provider can serve these requests now.";
      box.append(none);
    }
    box.append(wrap);
    if (noKey.size) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = `Not used because you have no key for them: ${[...noKey].join(", ")}.`;
      box.append(p);
    }
  }
}

// A bar chart in SVG, with a money axis, a label per day and each day's total.
const SVG = "http://www.w3.org/2000/svg";
function svg(name, attributes, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function renderChart(usage) {
  const chart = $("chart");
  chart.replaceChildren();
  const days = new Map();
  for (const group of usage.by_day) {
    const day = days.get(group.day) || { spend: [], total: 0, baseline: 0 };
    day.spend.push({ provider: group.provider, cost: Number(group.cost_usd) });
    day.total += Number(group.cost_usd);
    day.baseline += Number(group.baseline_cost_usd);
    days.set(group.day, day);
  }
  show($("chart-empty"), days.size === 0);
  show($("chart-figure"), days.size > 0);
  const legend = $("legend");
  legend.replaceChildren();
  if (days.size === 0) return;
  const providers = [...new Set(usage.by_day.map((g) => g.provider))];
  for (const provider of [...providers, "baseline"]) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${provider}`;
    swatch.setAttribute("aria-hidden", "true");
    item.append(swatch, provider === "baseline" ? `${usage.baseline_model || "baseline"} (what it would have cost)` : PROVIDER_NAMES[provider] || provider);
    legend.append(item);
  }
  let max = 0;
  for (const day of days.values()) max = Math.max(max, day.total, day.baseline);
  const left = 64, bottom = 28, top = 18, height = 180, slot = 44;
  const width = left + days.size * slot + 8;
  const plot = svg("svg", { viewBox: `0 0 ${width} ${top + height + bottom}`, width, height: top + height + bottom, role: "img",
    "aria-labelledby": "chart-caption" });
  const y = (usd) => top + height - (max ? (usd / max) * height : 0);
  for (const tick of [0, max / 2, max]) {
    plot.append(svg("line", { x1: left, x2: width, y1: y(tick), y2: y(tick), class: "gridline" }));
    plot.append(svg("text", { x: left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" }, money(tick)));
  }
  let x = left + 6;
  for (const [date, day] of days) {
    let stacked = 0;
    for (const spend of day.spend) {
      const bar = svg("rect", { x, y: y(stacked + spend.cost), width: 16, height: Math.max(0, y(stacked) - y(stacked + spend.cost)), class: `fill ${spend.provider}` });
      bar.append(svg("title", {}, `${PROVIDER_NAMES[spend.provider] || spend.provider} on ${date}: ${money(spend.cost)}`));
      plot.append(bar);
      stacked += spend.cost;
    }
    const base = svg("rect", { x: x + 18, y: y(day.baseline), width: 10, height: Math.max(0, y(0) - y(day.baseline)), class: "fill baseline" });
    base.append(svg("title", {}, `${usage.baseline_model || "baseline"} on ${date}: ${money(day.baseline)}`));
    plot.append(base);
    plot.append(svg("text", { x: x + 14, y: y(Math.max(day.total, day.baseline)) - 4, class: "amount", "text-anchor": "middle" }, money(day.total)));
    plot.append(svg("text", { x: x + 14, y: top + height + 18, class: "axis", "text-anchor": "middle" }, date.slice(5)));
    x += slot;
  }
  chart.append(plot);
  const total = [...days.values()].reduce((sum, d) => sum + d.total, 0);
  $("chart-caption").textContent = `Spend per day (UTC) over ${days.size} day${days.size === 1 ? "" : "s"}: ${money(total)} in all; `
    + `grey bars show what ${usage.baseline_model || "the baseline"} would have cost.`;
}

function howKnown(group) {
  const parts = [];
  if (Number(group.exact_cost_usd) > 0 || Number(group.estimated_cost_usd) === 0) parts.push("exact");
  if (Number(group.estimated_cost_usd) > 0) parts.push(`${money(group.estimated_cost_usd)} estimated`);
  if (group.unknown_cost_requests) parts.push(`${group.unknown_cost_requests} unpriced`);
  return parts.join(", ");
}

function renderUsage(usage, services) {
  $("usage-spent").textContent = money(usage.total.cost_usd);
  $("usage-spent").title = `$${usage.total.cost_usd} exactly`;
  $("usage-requests").textContent = String(usage.total.requests);
  $("usage-saved").textContent = `${money(usage.savings_usd)} (${usage.savings_percent}%)`;
  const select = $("baseline");
  const chosen = select.value;
  const models = new Set(services.tasks.filter((t) => t.task !== "embeddings")
    .flatMap((t) => t.chain.map((l) => `${l.provider}:${l.model}`)));
  if (usage.baseline_model) models.add(usage.baseline_model);
  select.replaceChildren(new Option("the administrator's choice", ""),
    ...[...models].sort().map((m) => new Option(m.replace(":", " · "), m)));
  select.value = chosen;
  $("baseline-words").textContent = usage.baseline_model
    ? `Savings are what the same requests would have cost on ${usage.baseline_model.replace(":", " ")}, minus what they cost.`
    : "No baseline is set, so there are no savings to show.";
  const body = $("by-model").tBodies[0];
  body.replaceChildren();
  for (const group of usage.by_model) {
    const row = document.createElement("tr");
    cell(row, providerMark(group.provider));
    cell(row, group.model, "mono");
    cell(row, String(group.requests), "num");
    cell(row, `${group.input_tokens.toLocaleString()} / ${group.output_tokens.toLocaleString()}`, "num");
    cell(row, money(group.cost_usd), "num").title = `$${group.cost_usd} exactly`;
    cell(row, howKnown(group));
    body.append(row);
  }
  labelCells($("by-model"));
  renderChart(usage);
}

const DOOR_WORDS = { chat: "Chat Completions", messages: "Anthropic Messages", responses: "Responses", embeddings: "Embeddings" };
const REQUEST_OUTCOMES = { success: "answered", partial: "cut short by the provider", cancelled: "stopped by the client" };

function renderRequests(log) {
  const body = $("requests").tBodies[0];
  body.replaceChildren();
  for (const entry of log.requests.slice(0, 25)) {
    const row = document.createElement("tr");
    cell(row, timeCell(entry.at));
    cell(row, DOOR_WORDS[entry.door] || entry.door);
    const who = providerMark(entry.provider);
    who.append(` · ${entry.model}`);
    cell(row, who);
    cell(row, `${entry.input_tokens.toLocaleString()} / ${entry.output_tokens.toLocaleString()}`, "num");
    cell(row, entry.cost_usd == null ? "unknown" : `${money(entry.cost_usd)}${entry.cost_source === "estimated" ? " (estimated)" : ""}`, "num");
    cell(row, REQUEST_OUTCOMES[entry.outcome] || entry.outcome);
    body.append(row);
  }
  labelCells($("requests"));
  show($("requests-empty"), log.requests.length === 0);
  show($("requests").parentElement, log.requests.length > 0);
}

let auditBefore = null;

function auditItem(event) {
  const item = document.createElement("li");
  const what = ACTION_WORDS[event.action] || event.action;
  const where = event.provider ? ` — ${PROVIDER_NAMES[event.provider] || event.provider}` : "";
  item.append(timeCell(event.occurred_at), `: ${what}${where} (${OUTCOME_WORDS[event.outcome] || event.outcome})`);
  return item;
}

function renderAudit(page, more) {
  const list = $("audit");
  if (!more) list.replaceChildren();
  list.append(...page.events.map(auditItem));
  auditBefore = page.next_before ?? null;
  show($("audit-more"), auditBefore !== null);
}

function renderBudgets(budgets) {
  const list = $("budgets");
  list.replaceChildren();
  for (const budget of budgets) {
    const item = document.createElement("li");
    item.dataset.budgetId = budget.id;
    const scope = budget.provider ? PROVIDER_NAMES[budget.provider] || budget.provider : "all providers";
    const title = document.createElement("div");
    title.textContent = `${money(budget.limit_usd)} per ${budget.period}, ${scope} (${budget.hard ? "hard" : "soft"}): ${money(budget.spent_usd)} spent${Number(budget.reserved_usd) > 0 ? `, ${money(budget.reserved_usd)} in flight` : ""} — ${budget.used_percent}%, resets ${when(budget.resets_at)}`;
    const meter = document.createElement("div");
    meter.className = "meter";
    meter.setAttribute("role", "img");
    meter.setAttribute("aria-label", `${budget.used_percent}% used`);
    const fill = document.createElement("span");
    fill.style.width = `${Math.min(100, budget.used_percent)}%`;
    if (budget.used_percent >= 100) fill.className = "full";
    else if (budget.used_percent >= 80) fill.className = "high";
    meter.append(fill);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary budget-remove";
    remove.textContent = "Remove";
    remove.addEventListener("click", async () => {
      try {
        await api("DELETE", `/api/user/api-keys/${encodeURIComponent(user)}/budgets/${budget.id}`);
        await refresh("Spending limit removed.");
      } catch (e) {
        await refresh(e.message);
      }
    });
    item.append(title, meter, remove);
    list.append(item);
  }
}

function renderTokens(tokens) {
  const list = $("tokens");
  list.replaceChildren();
  for (const token of tokens) {
    const item = document.createElement("li");
    item.dataset.tokenId = token.id;
    const doors = token.scope.doors ? token.scope.doors.join(", ") : "everything";
    const models = token.scope.models ? `; models: ${token.scope.models.join(", ")}` : "";
    const rpm = token.scope.requests_per_minute ? `; ${token.scope.requests_per_minute} requests a minute` : "";
    const used = token.last_used_at ? `last used ${when(token.last_used_at)}` : "never used";
    const expires = token.expires_at ? `; expires ${when(token.expires_at)}` : "";
    const state = token.status === "active" ? "" : ` — ${token.status}`;
    item.textContent = `${token.label || "(no label)"}${state}: ${doors}${models}${rpm}; ${used}${expires}; ${token.requests} requests, ${money(token.cost_usd)}. `;
    if (token.status === "active") {
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "danger token-revoke";
      revoke.textContent = "Revoke";
      revoke.addEventListener("click", async () => {
        if (!window.confirm(`Revoke "${token.label || token.id}"? Tools using it stop working at once.`)) return;
        await api("DELETE", `/api/user/api-keys/${encodeURIComponent(user)}/tokens/${token.id}`);
        await refresh(`Token "${token.label || token.id}" revoked.`);
      });
      item.append(revoke);
    }
    list.append(item);
  }
}

async function refresh(notice, options = {}) {
  const base = `/api/user/api-keys/${encodeURIComponent(user)}`;
  if (options.demote) {
    // "Use first": the chosen key goes to position 0, the others after it.
    const listed = await api("GET", `${base}/keys`);
    const others = listed.keys.filter((k) => k.provider === options.demote.provider && k.id !== options.demote.except);
    for (const [index, key] of others.entries()) {
      if (key.position !== index + 1) await api("PATCH", `${base}/keys/${key.provider}/${key.id}`, { position: index + 1 });
    }
  }
  const tokens = api("GET", `${base}/tokens`).catch(() => null);
  const [providers, keys, status, services, usage, audit] = await Promise.all([
    api("GET", "/api/user/api-keys/providers"),
    api("GET", `${base}/keys`),
    api("GET", `${base}/status`),
    api("GET", `${base}/services`),
    api("GET", `${base}/usage${$("baseline").value ? `?baseline=${encodeURIComponent($("baseline").value)}` : ""}`),
    api("GET", `${base}/audit?limit=20`),
  ]);
  const requests = api("GET", `${base}/requests?limit=25`).catch(() => ({ requests: [], next_before: null }));
  $("stat-configured").textContent = `${status.configured} of ${providers.providers.length}`;
  $("stat-working").textContent = String(status.working);
  $("stat-spend").textContent = money(status.spend_this_month_usd);
  $("stat-spend").title = `$${status.spend_this_month_usd} exactly`;
  $("stat-savings").textContent = `${money(usage.savings_usd)} (${usage.savings_percent}%)`;
  $("stat-baseline").textContent = usage.baseline_model || "the baseline";
  const retiring = $("retiring");
  retiring.replaceChildren(
    ...(status.retiring || []).map((line) => {
      const item = document.createElement("li");
      item.textContent = `Model retirement: ${line}`;
      return item;
    }),
  );
  retiring.hidden = retiring.childElementCount === 0;
  renderBudgets(status.budgets || []);
  const providerSelect = $("budget-provider");
  if (providerSelect.options.length === 1) {
    for (const info of providers.providers) providerSelect.append(new Option(info.display_name, info.id));
  }
  const cards = $("cards");
  cards.replaceChildren();
  for (const info of providers.providers) {
    const mine = keys.keys.filter((k) => k.provider === info.id);
    const state = status.providers.find((p) => p.provider === info.id);
    cards.append(renderCard(info, mine, state));
  }
  const listed = await tokens;
  // A token that may not manage tokens has no Tokens tab.
  $("tokens-panel").dataset.unavailable = String(listed === null);
  document.querySelector('.tabs a[data-tab="tokens"]').hidden = listed === null;
  if (listed) renderTokens(listed.tokens);
  renderRoutes(services.tasks);
  renderUsage(usage, services);
  renderRequests(await requests);
  renderAudit(audit, false);
  showTab();
  $("notice").textContent = notice || "";
}

// In the desktop app (which says so before the page loads): no signing
// out of the one local user, and the local gateway's settings to copy.
function desktopMode() {
  const desktop = window.byokDesktop;
  if (!desktop || typeof desktop.origin !== "string") return;
  show($("sign-out"), false);
  $("desktop-openai").textContent = `${desktop.origin}/v1`;
  $("desktop-anthropic").textContent = desktop.origin;
  $("desktop-panel").dataset.desktop = "true";
}

async function copyText(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy it by hand";
  }
}

for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", () => copyText(button, $(button.dataset.copy).textContent));
}
$("desktop-token").addEventListener("click", (event) => copyText(event.target, sessionStorage.getItem(TOKEN) || ""));

async function enter() {
  desktopMode();
  showTab();
  show($("sign-in"), false);
  show($("app"), true);
  show($("who"), true);
  $("who-name").textContent = user;
  show($("app-error"), false);
  try {
    await refresh();
  } catch (e) {
    if (e.status === 401) return signOut();
    $("app-error").textContent = `The page could not load everything: ${e.message}`;
    show($("app-error"), true);
  }
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("sign-in-error");
  show(error, false);
  try {
    await signIn($("token").value.trim());
    $("token").value = "";
  } catch (e) {
    sessionStorage.removeItem(TOKEN);
    error.textContent = e.message;
    show(error, true);
    return;
  }
  await enter();
});
$("sign-out").addEventListener("click", signOut);

$("baseline").addEventListener("change", () => refresh().catch((e) => { $("notice").textContent = e.message; }));

$("audit-more").addEventListener("click", async () => {
  if (auditBefore === null) return;
  const page = await api("GET", `/api/user/api-keys/${encodeURIComponent(user)}/audit?limit=20&before=${auditBefore}`);
  renderAudit(page, true);
});

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("token-error");
  show(error, false);
  const body = { label: $("token-label").value.trim() };
  const expires = $("token-expires").value;
  if (expires) body.expires_at = new Date(`${expires}T23:59:59`).toISOString();
  const doors = [...document.querySelectorAll('#token-form input[name="door"]:checked')].map((c) => c.value);
  if (doors.length < 3) body.doors = doors;
  const models = $("token-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  if (models.length) body.models = models;
  const rpm = Number.parseInt($("token-rpm").value, 10);
  if (rpm > 0) body.requests_per_minute = rpm;
  try {
    const created = await api("POST", `/api/user/api-keys/${encodeURIComponent(user)}/tokens`, body);
    $("token-secret").textContent = created.token;
    show($("token-created"), true);
    $("token-label").value = "";
    $("token-models").value = "";
    $("token-rpm").value = "";
    await refresh(`Token "${created.label}" created.`);
  } catch (e) {
    error.textContent = doors.length === 0 ? "Choose at least one thing the token may use." : e.message;
    show(error, true);
  }
});

$("budget-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("budget-error");
  show(error, false);
  const body = {
    period: $("budget-period").value,
    limit_usd: $("budget-limit").value.trim().replace(/^\$/, ""),
    hard: $("budget-hard").checked,
  };
  if ($("budget-provider").value) body.provider = $("budget-provider").value;
  try {
    await api("POST", `/api/user/api-keys/${encodeURIComponent(user)}/budgets`, body);
    $("budget-limit").value = "";
    await refresh("Spending limit set.");
  } catch (e) {
    error.textContent = e.message;
    show(error, true);
  }
});

$("token-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("token-secret").textContent);
    $("token-copy").textContent = "Copied";
  } catch {
    $("token-copy").textContent = "Select and copy it by hand";
  }
});

if (sessionStorage.getItem(TOKEN)) {
  signIn(sessionStorage.getItem(TOKEN)).then(enter).catch(signOut);
}
