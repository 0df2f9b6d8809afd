// tandem's dashboard. Everything it shows comes from this server's admin API: the overview
// over server-sent events (GET /v1/migrations/{name}/events), changes through the same POST
// endpoints as the CLI, with the session cookie and the X-Tandem-Dashboard header. Values are
// put in the page as text, never as HTML.
"use strict";

const state = { migration: "", session: null, source: null };

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c);
    else td.textContent = c === undefined || c === null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tableId, rows) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows.map(row));
  $(tableId).hidden = rows.length === 0;
}

function defs(dlId, pairs) {
  const dl = $(dlId);
  const items = [];
  for (const [k, v] of pairs) {
    items.push(el("dt", k));
    const dd = el("dd");
    if (v instanceof Node) dd.appendChild(v);
    else dd.textContent = String(v);
    items.push(dd);
  }
  dl.replaceChildren(...items);
}

function badge(text) {
  return el("span", text, "badge " + stateClass(text));
}

function stateClass(s) {
  switch (s) {
    case "done": case "running": case "copying": case "ok": case "clean": case "cutover": case "finalized":
      return "good";
    case "paused": case "backing_off": case "stalled": case "waiting": case "warning": case "pending":
      return "warn";
    case "stopped": case "history_lost": case "invalidated": case "bad_event": case "critical": case "failed":
      return "bad";
  }
  return "";
}

function duration(ns) {
  if (!ns) return "—";
  let s = Math.round(ns / 1e9);
  if (s < 1) return (ns / 1e6).toFixed(0) + " ms";
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
}

function when(t) {
  if (!t || t.startsWith("0001-")) return "—";
  const d = new Date(t);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function num(n) {
  return (n || 0).toLocaleString("en-US");
}

function say(text, ok) {
  const m = $("message");
  m.textContent = text;
  m.className = "message " + (ok ? "ok" : "error");
  m.hidden = false;
}

// api calls the admin API; a change carries the dashboard's header and the audit name.
async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") {
    headers["X-Tandem-Dashboard"] = "1";
    headers["Content-Type"] = "application/json";
    const who = $("who").value.trim();
    if (who) headers["X-Tandem-User"] = who;
  }
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined, credentials: "same-origin" });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.status + " " + res.statusText);
    err.status = res.status;
    err.data = data;
    throw err;
  }
  return data;
}

function migrationPath(suffix) {
  return "/v1/migrations/" + encodeURIComponent(state.migration) + suffix;
}

// act makes a change, says how it went (describe turns the answer into words), and reads the
// overview again at once.
async function act(what, suffix, body, describe) {
  try {
    const res = await api("POST", migrationPath(suffix), body);
    say(what + ": done" + (describe ? " — " + describe(res) : "") + ".", true);
    await refresh();
    return true;
  } catch (e) {
    let text = what + " refused: " + e.message;
    if (e.data && e.data.gates) {
      text += " — " + e.data.gates.filter((g) => !g.ok).map((g) => g.gate + ": " + g.detail).join("; ");
    }
    say(text, false);
    return false;
  }
}

function confirmed(inputId) {
  if ($(inputId).value.trim() !== state.migration) {
    say("Type the migration's name, " + state.migration + ", to confirm.", false);
    return false;
  }
  return true;
}

function wireForms() {
  $("flag-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const set = {};
    set[$("flag-name").value] = $("flag-value").value.trim();
    if (await act("Set " + $("flag-name").value, "/flags", { set, reason: $("flag-reason").value })) $("flag-form").reset();
  });
  $("phase-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!confirmed("phase-confirm")) return;
    if (await act("Move to " + $("phase-to").value, "/phase", { to: $("phase-to").value, reason: $("phase-reason").value })) $("phase-form").reset();
  });
  $("cutover-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!confirmed("cutover-confirm")) return;
    if (await act("Cutover", "/cutover", { reason: $("cutover-reason").value })) $("cutover-form").reset();
  });
  $("rollback-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!confirmed("rollback-confirm")) return;
    if (await act("Rollback", "/rollback", { reason: $("rollback-reason").value })) $("rollback-form").reset();
  });
  $("pause-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await act("Pause the backfill", "/backfill/pause", { reason: $("pause-reason").value })) $("pause-form").reset();
  });
  $("resume-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await act("Resume the backfill", "/backfill/resume", { reason: $("resume-reason").value })) $("resume-form").reset();
  });
  $("rate-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = $("rate-docs").value.trim();
    const rate = v === "unlimited" ? "unlimited" : Number(v);
    if (await act("Set the backfill rate", "/backfill/rate", { docs_per_sec: rate, reason: $("rate-reason").value })) $("rate-form").reset();
  });
  $("retry-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const done = await act("Retry the dead letters", "/dead-letters/retry", { all: $("retry-all").checked, reason: $("retry-reason").value },
      (r) => r.retried + " retried, " + r.resolved + " resolved, " + r.still_failing + " still failing" +
        (r.skipped_reverse ? ", " + r.skipped_reverse + " reverse left until cutover" : ""));
    if (done) $("retry-form").reset();
  });
  $("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-Tandem-Dashboard": "1" }, credentials: "same-origin" });
    window.location.assign("/login");
  });
  $("who").value = window.localStorage.getItem("tandem.who") || "";
  $("who").addEventListener("change", () => window.localStorage.setItem("tandem.who", $("who").value.trim()));
  $("migration").addEventListener("change", () => select($("migration").value));
}

function render(o) {
  $("updated").textContent = when(o.at);
  const v = o.flags;
  const ph = $("phase");
  ph.textContent = v.phase;
  ph.className = "badge " + stateClass(v.phase);
  defs("flags", [
    ["phase", v.phase], ["read_source", v.read_source], ["shadow_read_percent", v.shadow_read_percent + "%"],
    ["write_block", v.write_block ? "on" : "off"], ["revision", v.revision],
  ]);
  // The server says where the phase can move (a cutover has its own form, with the gates).
  const sel = $("phase-to");
  if (sel.dataset.for !== v.phase) {
    const next = o.next_phase ? [o.next_phase] : [];
    sel.replaceChildren(...next.map((p) => { const op = el("option", p); op.value = p; return op; }));
    sel.dataset.for = v.phase;
  }
  $("phase-form").hidden = !o.next_phase;

  // What needs a person.
  $("problems").replaceChildren(...o.problems.map((p) => {
    const li = el("li", null, p.severity);
    li.appendChild(el("strong", p.severity + " · " + p.component + ": "));
    li.appendChild(document.createTextNode(p.message + " "));
    li.appendChild(el("code", p.runbook));
    return li;
  }));
  $("problems-none").hidden = o.problems.length > 0;
  const errs = Object.entries(o.errors || {});
  $("errors").hidden = errs.length === 0;
  $("errors").textContent = errs.map(([k, e]) => "could not read " + k + ": " + e).join("; ");

  // Gates.
  $("gates").replaceChildren(...o.gates.map((g) => {
    const li = el("li", null, g.ok ? "good" : "bad");
    li.appendChild(el("strong", (g.ok ? "✓ " : "✗ ") + g.gate + ": "));
    li.appendChild(document.createTextNode(g.detail));
    return li;
  }));

  renderBackfill(o.backfill);
  renderStreams(o);
  renderVerify(o);

  const dl = o.dead_letters;
  defs("deadletter-counts", [["forward", num(dl.forward)], ["reverse", num(dl.reverse)]]);
  fill("deadletters", dl.oldest.map((d) => [d.key, d.direction, d.step, d.reason, d.spec_version, num(d.attempts), when(d.first_seen)]));
  $("retry-form").hidden = dl.forward + dl.reverse === 0;

  $("runtime-none").hidden = !!o.runtime;
  fill("paths", o.runtime ? o.runtime.paths.map((p) => [p.name + (p.shared ? " (shared)" : ""), badge(p.state), p.wanted ? "yes" : "no", p.restarts, p.last_error || ""]) : []);

  fill("audit", o.audit.map((a) => [when(a.at), a.kind + (a.subject ? " " + a.subject : ""), a.from, a.to, a.who, a.why]));
  applySession();
}

function renderBackfill(b) {
  $("backfill-none").hidden = !!b;
  $("backfill-body").hidden = !b;
  const st = $("backfill-state");
  if (!b) { st.textContent = ""; st.className = "badge"; return; }
  st.textContent = b.state;
  st.className = "badge " + stateClass(b.state);
  const pct = b.estimate > 0 ? Math.min(100, (100 * (b.copied + b.dead_lettered)) / b.estimate) : (b.state === "done" ? 100 : 0);
  $("backfill-bar").style.width = pct.toFixed(1) + "%";
  defs("backfill", [
    ["partitions", b.partitions_done + " of " + b.partitions + " done, " + b.partitions_active + " active"],
    ["copied", num(b.copied) + " of ~" + num(b.estimate) + " (" + pct.toFixed(1) + "%)"],
    ["rate", b.docs_per_sec.toFixed(0) + " docs/s (limit " + (b.rate ? num(b.rate) : "none") + ")"],
    ["ETA", b.state === "done" ? "done" : duration(b.eta_ns)],
    ["dead letters", num(b.dead_lettered)], ["errors retried", num(b.errors)],
    ["processes", b.runners ? b.runners.length : 0],
  ]);
  $("pause-form").hidden = b.paused || b.state === "done";
  $("resume-form").hidden = !b.paused;
  fill("partitions", b.partition_list.map((p) => [
    p.index, p.class || (p.segments ? "segment " + p.segment + "/" + p.segments : ""), badge(p.state),
    num(p.copied), num(p.estimate), p.owner || "", p.docs_per_sec ? p.docs_per_sec.toFixed(0) : "", p.state === "copying" ? duration(p.eta_ns) : "",
  ]));
}

function renderStreams(o) {
  $("streams-none").hidden = o.streams.length > 0;
  fill("streams", o.streams.map((s) => [s.direction, badge(s.state), s.lag_known ? (s.lag_ns ? duration(s.lag_ns) : "0 s") : "no report", num(s.applied), when(s.at)]));
  fill("lags", o.lags.map((l) => [l.component, l.owner, l.lag_ns ? duration(l.lag_ns) : "0 s", when(l.updated_at)]));
}

function renderVerify(o) {
  const v = o.verify;
  $("verify-none").hidden = !!v;
  $("verify-body").hidden = !v;
  const st = $("verify-state");
  if (!v) { st.textContent = ""; st.className = "badge"; } else {
    const confirmedCount = Object.values(v.confirmed).reduce((a, b) => a + b, 0);
    const word = confirmedCount > v.mismatch_budget ? "failed" : (v.full_pass_done ? "clean" : "running");
    st.textContent = word;
    st.className = "badge " + stateClass(word);
    defs("verify", [
      ["run", v.run_id + " (" + v.mode + ")"], ["started", when(v.started)],
      ["full pass", v.full_pass_done ? "done " + when(v.full_pass_finished) : num(v.compared) + " of ~" + num(v.total) + " compared"],
      ["generation", v.generation], ["confirmed", num(confirmedCount) + " (budget " + num(v.mismatch_budget) + ")"],
      ["pending", num(v.pending)], ["recheck backlog", num(v.backlog)],
    ]);
    drawDrift(o.drift);
  }
  $("mismatches-none").hidden = o.mismatches.length > 0;
  fill("mismatches", o.mismatches.map((m) => {
    const diffs = el("span");
    for (const f of m.fields || []) {
      diffs.appendChild(el("code", f.path + ": " + (f.want_type || "absent") + " " + (f.want_hash || "") + " → " + (f.got_type || "absent") + " " + (f.got_hash || "")));
      diffs.appendChild(el("br"));
    }
    return [m.key, m.kind, badge(m.state), m.detail, diffs, when(m.last_seen)];
  }));
}

function drawDrift(points) {
  const svg = $("drift");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (!points || points.length === 0) return;
  const max = Math.max(1, ...points.map((p) => Math.max(p.confirmed, p.pending)));
  const t0 = new Date(points[0].at).getTime();
  const span = Math.max(1, new Date(points[points.length - 1].at).getTime() - t0);
  for (const [field, cls] of [["pending", "pending"], ["confirmed", "confirmed"]]) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("points", points.map((p) => {
      const x = points.length === 1 ? 300 : ((new Date(p.at).getTime() - t0) / span) * 600;
      const y = 135 - (p[field] / max) * 125;
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    svg.appendChild(line);
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "12");
  label.textContent = "max " + max;
  svg.appendChild(label);
}

// applySession enables the controls only for a caller who may change things.
function applySession() {
  const s = state.session;
  if (!s) return;
  $("session").textContent = s.signed_in ? "signed in" : (s.open_reads ? "read-only (not signed in)" : "");
  $("logout").hidden = !s.signed_in;
  for (const f of document.querySelectorAll("form[data-needs=change]")) {
    for (const c of f.querySelectorAll("input, select, button")) c.disabled = !s.can_change;
  }
}

async function refresh() {
  if (!state.migration) return;
  try {
    render(await api("GET", migrationPath("/overview")));
  } catch (e) {
    say("Reading the overview failed: " + e.message, false);
  }
}

function listen() {
  if (state.source) state.source.close();
  const src = new EventSource(migrationPath("/events"));
  state.source = src;
  src.addEventListener("open", () => { $("live").textContent = "live"; $("live").className = "live on"; });
  src.addEventListener("overview", (ev) => render(JSON.parse(ev.data)));
  src.addEventListener("problem", (ev) => say("The server could not read the overview: " + JSON.parse(ev.data).error, false));
  src.addEventListener("error", () => { $("live").textContent = "reconnecting"; $("live").className = "live off"; });
}

function select(name) {
  state.migration = name;
  window.location.hash = "m=" + encodeURIComponent(name);
  refresh();
  listen();
}

async function start() {
  wireForms();
  try {
    state.session = await api("GET", "/v1/session");
    const list = await api("GET", "/v1/migrations");
    const names = list.migrations.map((m) => m.name);
    $("migration").replaceChildren(...names.map((n) => { const op = el("option", n); op.value = n; return op; }));
    if (names.length === 0) {
      say("The catalog holds no migration yet.", false);
      return;
    }
    const wanted = decodeURIComponent((window.location.hash.match(/m=([^&]+)/) || [])[1] || "");
    const name = names.includes(wanted) ? wanted : names[0];
    $("migration").value = name;
    select(name);
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      window.location.assign("/login");
      return;
    }
    say("Starting the dashboard failed: " + e.message, false);
  }
}

document.addEventListener("DOMContentLoaded", start);
