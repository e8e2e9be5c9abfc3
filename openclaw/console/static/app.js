// The openclaw web console: one page, no framework, no build step.  It talks
// to the daemon only over the gateway WebSocket (the token in session
// storage), renders with DOM calls (no HTML parsing: every string shown is
// text), and stays current from gateway events.
"use strict";

(() => {
  const TOKEN_KEY = "openclaw.console.token";
  const SEEN_KEY = "openclaw.console.seen";
  const PAGES = ["overview", "chat", "checks", "schedule", "reports", "access", "logs", "instances"];
  const $ = (id) => document.getElementById(id);

  // DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fill(id, ...children) {
    const node = typeof id === "string" ? $(id) : id;
    node.replaceChildren();
    return append(node, children);
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  function table(head, rows, empty) {
    if (!rows.length) return el("p", { class: "empty" }, empty || "Nothing here.");
    return el("div", { class: "scroll" }, el("table", { class: "stack" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell, i) =>
        cell instanceof Node && cell.tagName === "TD" ? cell : el("td", { "data-label": head[i] || null }, cell)))))));
  }

  function pairs(id, items) {
    fill(id, items.filter(Boolean).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  // Formatting

  function seconds(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function toMillis(when) {
    if (when === null || when === undefined || when === "") return null;
    return typeof when === "number" ? when * 1000 : Date.parse(when);
  }

  function when(value) {
    const t = toMillis(value);
    if (t === null || Number.isNaN(t)) return "never";
    const delta = (t - Date.now()) / 1000;
    const rel = Math.abs(delta) < 5 ? "now" : delta < 0 ? `${seconds(-delta)} ago` : `in ${seconds(delta)}`;
    return el("time", { datetime: new Date(t).toISOString(), title: new Date(t).toLocaleString() }, rel);
  }

  function bytes(n) {
    return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${Math.round((n || 0) / 1024)} KiB`;
  }

  function flag(good, yes, no) {
    return el("span", { class: good ? "ok" : "bad" }, good ? yes : no);
  }

  // The gateway connection

  class Gateway {
    constructor(url, token, handlers) {
      this.url = url;
      this.token = token;
      this.handlers = handlers;
      this.pending = new Map();
      this.next = 1;
      this.ws = null;
      this.retry = 0;
      this.closing = false;
    }

    open() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(this.url);
        this.ws = ws;
        let authenticated = false;
        ws.addEventListener("open", () => {
          this.request("connect", { token: this.token, client: "console" }).then((hello) => {
            authenticated = true;
            this.retry = 0;
            resolve(hello);
          }, reject);
        });
        ws.addEventListener("message", (event) => this.received(event.data));
        ws.addEventListener("close", () => {
          for (const { fail } of this.pending.values()) fail({ code: "disconnected", message: "the connection closed" });
          this.pending.clear();
          if (!authenticated) reject({ code: "unreachable", message: "the gateway did not answer" });
          else if (!this.closing) this.handlers.lost();
        });
      });
    }

    received(data) {
      let frame;
      try { frame = JSON.parse(data); } catch { return; }
      if (frame.type === "event") { this.handlers.event(frame.event, frame.payload || {}); return; }
      const waiting = this.pending.get(frame.id);
      if (!waiting) return;
      this.pending.delete(frame.id);
      if (frame.ok) waiting.done(frame.payload);
      else waiting.fail(frame.error || { code: "error", message: "failed" });
    }

    request(method, params) {
      return new Promise((done, fail) => {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
          fail({ code: "disconnected", message: "not connected to the daemon" });
          return;
        }
        const id = String(this.next++);
        this.pending.set(id, { done, fail });
        this.ws.send(JSON.stringify({ type: "req", id, method, params: params || {} }));
      });
    }

    close() {
      this.closing = true;
      if (this.ws) this.ws.close(1000);
    }
  }

  // State

  const state = {
    gateway: null, session: null, status: null, previous: null, page: null,
    alerts: [], seenAlerts: new Set(), replies: new Set(), shown: new Set(), chatLoaded: false,
    history: null, reportDay: null, logSeq: -1,
  };

  function call(method, params) {
    return state.gateway.request(method, params);
  }

  function failed(target) {
    return (error) => fill(target, el("span", { class: "bad" }, error.message || error.code || "failed"));
  }

  // Sign-in

  async function gatewayUrl() {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) throw { message: "the daemon is starting; try again in a moment" };
    return (await response.json()).gateway;
  }

  async function redeemLink() {
    const match = /(?:^#|&)code=([A-Za-z0-9_-]+)/.exec(location.hash);
    if (!match) return;
    history.replaceState(null, "", location.pathname + "#overview");  // the code leaves the address bar and history
    const response = await fetch("session", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code: match[1] }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok && body.token) sessionStorage.setItem(TOKEN_KEY, body.token);
    else showLogin((body.error && body.error.message) || "this link is used or expired");
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  async function signIn(token, quiet) {
    let url;
    try { url = await gatewayUrl(); } catch (e) { showLogin(e.message); return false; }
    const gateway = new Gateway(url, token, { event: onEvent, lost: onLost });
    try {
      const hello = await gateway.open();
      state.session = hello.session;
    } catch (error) {
      gateway.close();
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(error.code === "unauthorized" ? "That token is wrong." : (quiet ? "" : error.message));
      return false;
    }
    state.gateway = gateway;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("app").hidden = false;
    setLink(true);
    await subscribe();
    route();
    return true;
  }

  async function subscribe() {
    onStatus(await call("console.subscribe"));
    await call("subscribe", {});
    loadAlerts();
  }

  function onLost() {
    const gateway = state.gateway;
    if (!gateway) return;  // signed out
    setLink(false);
    const wait = Math.min(10000, 500 * 2 ** gateway.retry++);
    setTimeout(async () => {
      if (state.gateway !== gateway) return;
      try {
        await gateway.open();
        setLink(true);
        await subscribe();
        state.chatLoaded = false;
        fill("chat-log");
        refresh();
      } catch (error) {
        if (error.code === "unauthorized") {
          sessionStorage.removeItem(TOKEN_KEY);
          state.gateway = null;
          showLogin("The token changed; sign in again.");
        } else onLost();  // still down: try again, a little later each time
      }
    }, wait);
  }

  function setLink(up) {
    const node = $("link-state");
    node.textContent = up ? "live" : "disconnected from the daemon; reconnecting";
    node.classList.toggle("down", !up);
  }

  // Events

  function onEvent(name, payload) {
    if (name === "console.status") onStatus(payload);
    else if (name === "chat.reply") onReply(payload);
    else if (name === "alert") onAlert(payload);
    else if (name === "heartbeat") onBeat(payload);
  }

  function onStatus(status) {
    state.previous = state.status;
    state.status = status;
    renderOverview();
    if (state.page === "checks") renderChecks();
    if (state.page === "schedule") refreshSchedule(false);
    if (state.page === "access") refreshAccess();
    if (state.page === "logs" && status.log_seq !== state.logSeq) refreshLogs();
  }

  function alertKey(a) {
    return a.id || `${a.kind}|${a.check}|${a.message}|${Math.round(a.at || a.timestamp || 0)}`;
  }

  function onAlert(alert) {
    const key = alertKey(alert);
    if (state.seenAlerts.has(key)) return;
    state.seenAlerts.add(key);
    state.alerts.push({ ...alert, timestamp: alert.at || Date.now() / 1000 });
    renderRecent();
    // A webchat alert is also a history entry (its id): show it once.
    if (alert.id && state.shown.has(alert.id)) return;
    if (alert.id) state.shown.add(alert.id);
    chatItem(alert.kind === "recovery" ? "recovery" : alert.kind === "info" ? "info" : "alert",
      `${alert.kind}${alert.check ? ` · ${alert.check}` : ""}`, alert.message, alert.at, alert.while_away);
  }

  function onReply(reply) {
    if (reply.session !== state.session || state.replies.has(reply.reply_to)) return;
    state.replies.add(reply.reply_to);
    chatItem("assistant", "assistant", reply.text, Date.now() / 1000);
  }

  function onBeat(beat) {
    if (beat.text) chatItem("heartbeat", `heartbeat · ${beat.verdict}`, beat.text, beat.timestamp);
    if (state.page === "schedule") refreshSchedule(true);
  }

  // Overview

  function renderOverview() {
    const s = state.status;
    if (!s) return;
    const prev = state.previous;
    const cpu = prev && s.uptime > prev.uptime ? `${(100 * (s.cpu_seconds - prev.cpu_seconds) / (s.uptime - prev.uptime)).toFixed(1)}%` : "…";
    const config = s.config || {};
    const reload = config.last_reload;
    const store = s.store || {};
    const status = el("span", { class: s.status === "ok" ? "ok" : s.status === "degraded" ? "warn" : "bad", id: "ov-status" },
      s.status === "ok" ? "ready" : s.status);
    pairs("ov-daemon", [
      ["Status", [status, s.problems && s.problems.length ? el("ul", {}, s.problems.map((p) => el("li", {}, p))) : null]],
      ["Uptime", seconds(s.uptime)],
      ["Version", s.version],
      ["Config", [el("code", {}, config.digest || s.config_digest || "?"), " ", config.path || "built-in defaults"]],
      ["Last reload", reload ? [reload.result, " ", when(reload.at), reload.reason ? ` (${reload.reason})` : ""] : "none"],
      ["Memory", `${bytes(s.memory && s.memory.rss_bytes)} RSS`],
      ["CPU", cpu],
      ["Store", [el("span", { class: store.state === "ok" ? "ok" : "bad" }, store.state || "?"), ` ${store.kind || ""}`,
        store.last_error ? ` (${store.last_error})` : ""]],
      ["Sessions", String(s.sessions)],
      ["Gateway", `${(s.gateway || {}).connections || 0} open connection(s)`],
    ]);
    const beat = s.heartbeat || {};
    pairs("ov-heartbeat", [
      ["Last beat", [when(beat.last), beat.last_verdict ? ` (${beat.last_verdict})` : ""]],
      ["Next beat", beat.next ? when(beat.next) : "not scheduled"],
      ["Dead-man", beat.overdue ? flag(false, "", "OVERDUE") : flag(true, "fine", "")],
      beat.running ? ["Running", "yes"] : null,
    ]);
    const connectors = Object.entries(s.connectors || {});
    fill("ov-connectors", table(["Connector", "State", "Last error", "Reconnects", "Last message"],
      connectors.map(([name, c]) => [name,
        el("td", { "data-label": "State", "data-connector": name },
          c.connected ? flag(true, "connected", "") : flag(false, "", `disconnected (${c.state})`)),
        c.last_error || "—", el("td", { class: "num", "data-label": "Reconnects" }, String(c.reconnects || 0)),
        when(c.last_receive)]),
      "No chat connectors are enabled (webchat is always on)."));
    const alerting = Object.values(s.checks || {}).filter((c) => c.alerting);
    fill("ov-alerts", alerting.length
      ? el("ul", {}, alerting.map((c) => el("li", { class: "bad" },
        el("a", { href: "#checks" }, c.name), ` is down since `, when(c.since), `: ${c.last_detail || ""}`)))
      : el("p", { class: "ok" }, "None: every check is passing."));
  }

  function loadAlerts() {
    call("alerts.list", { since: 86400 }).then((payload) => {
      for (const a of payload.alerts) state.seenAlerts.add(alertKey(a));
      const live = state.alerts.filter((a) => !payload.alerts.some((b) => b.message === a.message && b.check === a.check));
      state.alerts = [...payload.alerts, ...live];
      renderRecent();
    }, failed("ov-recent"));
  }

  function renderRecent() {
    const recent = state.alerts.slice(-20).reverse();
    fill("ov-recent", table(["When", "Kind", "Check", "Message"], recent.map((a) => [
      when(a.timestamp), el("span", { class: a.kind === "recovery" ? "ok" : "bad" }, a.kind), a.check || "—", a.message]),
    "No alerts in the last day."));
  }

  // Chat

  function chatItem(kind, meta, text, at, away, detached) {
    const item = el("li", { class: kind },
      el("span", { class: "meta" }, meta, at ? [" · ", when(at)] : null, away ? el("span", { class: "badge" }, "while you were away") : null),
      text);
    if (detached) return item;
    $("chat-log").append(item);
    if (state.page === "chat") item.scrollIntoView({ block: "nearest" });
    return item;
  }

  function loadChat() {
    if (state.chatLoaded) return;
    state.chatLoaded = true;
    call("chat.history", { limit: 200 }).then((payload) => {
      // The history goes above what arrived live meanwhile (alerts to no session are not in it).
      const earlier = document.createDocumentFragment();
      const seen = Number(localStorage.getItem(SEEN_KEY) || 0);
      let marked = false;
      for (const m of payload.messages) {
        if (!marked && seen && m.role !== "user" && m.timestamp > seen) {
          earlier.append(el("li", { class: "away-mark", role: "separator" }, "While you were away"));
          marked = true;
        }
        if (state.shown.has(m.event_id)) continue;  // arrived live already
        state.shown.add(m.event_id);
        earlier.append(chatItem(m.role === "user" ? "user" : "assistant", m.role, m.text, m.timestamp, false, true));
      }
      $("chat-log").prepend(earlier);
      localStorage.setItem(SEEN_KEY, String(Date.now() / 1000));
      const last = $("chat-log").lastElementChild;
      if (last) last.scrollIntoView({ block: "end" });
    }, failed("chat-log"));
  }

  async function sendChat(event) {
    event.preventDefault();
    const box = $("chat-text");
    const text = box.value.trim();
    if (!text) return;
    const button = event.target.querySelector("button");
    button.disabled = true;
    const mine = chatItem("user", "you", text, Date.now() / 1000);  // before the reply can arrive
    try {
      await call("chat.send", { text, client_msg_id: `console-${Date.now()}-${Math.random().toString(36).slice(2, 8)}` });
      box.value = "";
      localStorage.setItem(SEEN_KEY, String(Date.now() / 1000));
    } catch (error) {
      mine.remove();
      chatItem("alert", "not sent", error.message || error.code);
    } finally {
      button.disabled = false;
      box.focus();
    }
  }

  // Checks

  function sparkline(points, width, height) {
    const values = points.filter((p) => p[1] !== null);
    const peak = Math.max(...values.map((p) => p[1]), 0.001);
    const step = width / Math.max(points.length - 1, 1);
    const shape = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img" });
    const title = svg("title");
    title.textContent = `latency over the last day, peak ${(peak * 1000).toFixed(0)} ms`;
    shape.append(title);
    const xy = points.map((p, i) => (p[1] === null ? null : [i * step, height - 2 - (height - 4) * (p[1] / peak)]));
    const drawn = xy.filter(Boolean);
    if (drawn.length === 1) shape.append(svg("circle", { cx: drawn[0][0].toFixed(1), cy: drawn[0][1].toFixed(1), r: 2, class: "dot" }));
    else shape.append(svg("polyline", { points: drawn.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ") }));
    points.forEach((p, i) => { if (p[2] === false) shape.append(svg("circle", { cx: (i * step).toFixed(1), cy: height - 3, r: 2, class: "fail" })); });
    return shape;
  }

  function renderChecks() {
    const checks = Object.values((state.status && state.status.checks) || {});
    const history = (state.history && state.history.checks) || {};
    if (!checks.length) {
      fill("checks-body", el("p", { class: "empty" }, "No checks are configured (the checks: list in the config)."));
      return;
    }
    fill("checks-body", table(["Check", "State", "Latency", "Last day", "Incidents", ""], checks.map((c) => {
      const h = history[c.name];
      const incidents = h ? h.incidents.slice(-5).reverse() : [];
      const label = c.ok === null || c.ok === undefined ? el("span", { class: "warn" }, "not run yet")
        : c.alerting ? flag(false, "", "ALERTING") : c.ok ? flag(true, "up", "") : el("span", { class: "warn" }, "failing");
      return [
        [el("strong", {}, c.name), el("div", { class: "fields" }, `${c.type} ${c.target}`)],
        [label, c.flapping ? el("span", { class: "badge" }, "flapping") : null, el("div", { class: "fields" }, "since ", when(c.since)),
          c.last_detail ? el("div", { class: "fields" }, c.last_detail) : null],
        el("td", { class: "num", "data-label": "Latency" }, c.last_latency === null ? "—" : `${(c.last_latency * 1000).toFixed(0)} ms`),
        h ? sparkline(h.points, 160, 32) : el("span", { class: "empty" }, "no results yet"),
        incidents.length ? el("ul", {}, incidents.map((i) => el("li", {}, when(i.start), i.end ? ` for ${seconds(i.end - i.start)}` : " (ongoing)",
          ` · ${i.failures} failed`))) : "none",
        el("button", { type: "button", class: "quiet", onclick: (e) => runCheck(e.target, c.name) }, `Run ${c.name} now`),
      ];
    })));
  }

  function refreshChecks() {
    renderChecks();
    call("checks.history").then((payload) => { state.history = payload; renderChecks(); }, () => {});
  }

  async function runCheck(button, name) {
    button.disabled = true;
    try {
      const { check } = await call("checks.run", { name });
      fill("checks-result", `${name} ran: `, flag(check.ok, "passed", "failed"), check.last_detail ? ` (${check.last_detail})` : "");
      state.history = await call("checks.history");
    } catch (error) {
      fill("checks-result", el("span", { class: "bad" }, `${name}: ${error.message || error.code}`));
    }
    renderChecks();
  }

  // Schedule

  let lastBeat = null;

  function refreshSchedule(force) {
    const beat = (state.status && state.status.heartbeat) || {};
    pairs("sched-heartbeat", [
      ["Every", beat.every ? seconds(beat.every) : "off"],
      ["Last", [when(beat.last), beat.last_verdict ? ` (${beat.last_verdict})` : ""]],
      ["Next", beat.next ? when(beat.next) : "not scheduled"],
      ["Dead-man", beat.overdue ? flag(false, "", "OVERDUE") : flag(true, "fine", "")],
      beat.active_hours ? ["Active hours", `${beat.active_hours.start}–${beat.active_hours.end} ${beat.timezone || ""}`] : null,
    ]);
    call("cron.list").then((payload) => fill("sched-cron", table(["Job", "Schedule", "Action", "Last run", "Result", "Next run"],
      payload.jobs.map((j) => [j.name, el("code", {}, j.schedule), j.action, when(j.last_run),
        j.running ? el("span", { class: "warn" }, "running") : j.outcome ? el("span", { class: j.outcome === "ok" ? "ok" : "bad" }, j.outcome, j.error ? `: ${j.error}` : "") : "—",
        when(j.next_due)]), "No cron jobs.")), failed("sched-cron"));
    if (!force && lastBeat === beat.last) return;
    lastBeat = beat.last;
    call("heartbeat.history").then((payload) => fill("sched-beats", table(["When", "Verdict", "Reason", "Took"],
      payload.beats.slice().reverse().map((b) => [when(b.timestamp), b.verdict, b.reason || b.error || "—",
        el("td", { class: "num", "data-label": "Took" }, b.duration === undefined ? "—" : `${Number(b.duration).toFixed(2)}s`)]),
    "No beats in the last day.")), failed("sched-beats"));
  }

  async function beatNow(event) {
    const button = event.target;
    button.disabled = true;
    fill("beat-result", "running…");
    try {
      const beat = await call("heartbeat.run", {});
      fill("beat-result", `verdict: ${beat.verdict}${beat.reason ? ` (${beat.reason})` : ""}`);
    } catch (error) {
      fill("beat-result", el("span", { class: "bad" }, error.message || error.code));
    }
    button.disabled = false;
    refreshSchedule(true);
  }

  // Reports

  function refreshReports() {
    call("reports.list").then((payload) => {
      const days = payload.days.slice().reverse();
      const pick = (day) => { state.reportDay = day; showReport(); };
      fill("reports-list",
        el("button", { type: "button", "aria-pressed": String(state.reportDay === null), onclick: () => pick(null) }, "Today so far"),
        days.map((d) => el("button", { type: "button", class: "quiet", "aria-pressed": String(state.reportDay === d), onclick: () => pick(d) }, d)));
      showReport();
    }, failed("reports-list"));
  }

  function showReport() {
    for (const b of $("reports-list").querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b.textContent === (state.reportDay || "Today so far")));
    }
    if (state.reportDay) {
      // The written report, as /reports/ serves it (escaped, no scripts), with its chart.
      fill("report-view", el("iframe", { src: `../reports/${state.reportDay}`, title: `Report for ${state.reportDay}`, sandbox: "" }));
      return;
    }
    Promise.all([call("reports.get", { today: true }), call("checks.history")]).then(([report, history]) => {
      fill("report-view", markdown(report.markdown, history));
    }, failed("report-view"));
  }

  function chart(history) {
    const names = Object.keys(history.checks);
    if (!names.length) return null;
    const width = 640, height = 180, left = 44, bottom = 20;
    const peak = Math.max(0.001, ...names.flatMap((n) => history.checks[n].points.map((p) => p[1] || 0)));
    const shape = svg("svg", { viewBox: `0 0 ${width} ${height + 16 * names.length}`, class: "chart", role: "img", width: "100%" });
    const title = svg("title");
    title.textContent = "Check latency over the last day";
    shape.append(title, svg("rect", { x: left, y: 4, width: width - left - 4, height: height - bottom - 4, class: "axis" }));
    const label = (x, y, text, anchor) => { const t = svg("text", { x, y, "text-anchor": anchor || "start" }); t.textContent = text; shape.append(t); };
    label(left - 4, 14, `${(peak * 1000).toFixed(0)} ms`, "end");
    label(left - 4, height - bottom, "0", "end");
    label(left, height - 4, "24 h ago");
    label(width - 4, height - 4, "now", "end");
    names.forEach((name, n) => {
      const points = history.checks[name].points;
      const step = (width - left - 4) / Math.max(points.length - 1, 1);
      const xy = points.map((p, i) => (p[1] === null ? null : `${(left + i * step).toFixed(1)},${(height - bottom - (height - bottom - 8) * (p[1] / peak)).toFixed(1)}`));
      shape.append(svg("polyline", { points: xy.filter(Boolean).join(" "), class: `c${n % 8}` }));
      label(left, height + 12 + 16 * n, `— ${name}`);
    });
    return shape;
  }

  // The report's markdown: headings, tables, lists, paragraphs; all text.
  function markdown(text, history) {
    const out = el("article", {});
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const heading = /^(#{1,3}) (.*)$/.exec(line);
      if (heading) {
        out.append(el(`h${Number(heading[1].length) + 1}`, {}, heading[2]));
        if (heading[2] === "Checks" && history) { const c = chart(history); if (c) out.append(c); }  // where the written report draws it
      } else if (line.startsWith("|")) {
        const rows = [];
        while (i < lines.length && lines[i].startsWith("|")) rows.push(lines[i++].split("|").slice(1, -1).map((c) => c.trim()));
        i--;
        const body = rows.slice(1).filter((r) => !r.every((c) => /^:?-+:?$/.test(c)));
        out.append(table(rows[0], body));
      } else if (/^[-*] /.test(line)) {
        const items = [];
        while (i < lines.length && /^[-*] /.test(lines[i])) items.push(lines[i++].slice(2));
        i--;
        out.append(el("ul", {}, items.map((t) => el("li", {}, t))));
      } else if (line.trim()) {
        out.append(el("p", {}, line));
      }
    }
    return out;
  }

  // Access

  function refreshAccess() {
    call("pairing.list").then((payload) => {
      fill("access-pending", table(["Code", "Sender", "Name", "Expires", ""], payload.pending.map((p) => [
        el("code", {}, p.code), `${p.connector}:${p.sender_id}`, p.sender_name || "—", when(p.expires),
        el("div", { class: "actions" },
          el("button", { type: "button", onclick: () => pairing("pairing.approve", { code: p.code }, `approved ${p.connector}:${p.sender_id}`) }, `Approve ${p.code}`),
          el("button", { type: "button", class: "danger", onclick: () => pairing("pairing.deny", { code: p.code }, `denied ${p.code}`) }, `Deny ${p.code}`)),
      ]), "Nobody is waiting. Unknown senders get a pairing code when pairing is on."));
      fill("access-approved", table(["Sender", "Name", "Approved", ""], payload.approved.map((a) => [
        a.sender, a.sender_name || "—", when(a.approved),
        el("button", { type: "button", class: "danger", onclick: (event) => {
          // Two steps, no dialog: the first click asks, the second revokes.
          const button = event.target;
          if (button.dataset.armed) pairing("pairing.revoke", { sender: a.sender }, `revoked ${a.sender}`);
          else { button.dataset.armed = "1"; button.textContent = `Really revoke ${a.sender}? (a new pairing code is needed)`; }
        } }, `Revoke ${a.sender}`),
      ]), "Nobody is approved by pairing."));
      fill("access-config", table(["Connector", "Sender"], (payload.allowed || []).map((a) => [a.connector, el("code", {}, a.sender)]),
        "No connector's allow_from lists anyone."));
    }, failed("access-pending"));
  }

  async function pairing(method, params, done) {
    try {
      await call(method, params);
      fill("access-result", el("span", { class: "ok" }, done));
    } catch (error) {
      fill("access-result", el("span", { class: "bad" }, error.message || error.code));
    }
    refreshAccess();
  }

  // Logs

  function refreshLogs() {
    const params = { level: $("logs-level").value };
    if ($("logs-component").value) params.component = $("logs-component").value;
    call("logs.recent", params).then((payload) => {
      state.logSeq = payload.seq;
      const select = $("logs-component");
      const chosen = select.value;
      fill(select, el("option", { value: "" }, "all"), payload.components.map((c) => el("option", { value: c }, c)));
      select.value = payload.components.includes(chosen) ? chosen : "";
      fill("logs-body", table(["When", "Level", "Type", "Details"], payload.records.slice().reverse().map((r) => [
        when(r.timestamp), el("span", { class: r.level === "error" ? "bad" : "warn" }, r.level), el("code", {}, r.type),
        el("span", { class: "fields" }, Object.entries(r.fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join("  ")),
      ]), "No warnings or errors since the daemon started."));
    }, failed("logs-body"));
  }

  // Instances

  function refreshInstances() {
    const store = (state.status && state.status.store) || {};
    call("cluster.status").then((payload) => {
      // {instance_id, holds, instances: [{id, host, pid, started_at, version, holds}]}
      fill("instances-body", table(["Instance", "Leases held", "Host", "Started", "Version"], (payload.instances || []).map((i) => [
        [el("code", {}, i.id), i.id === payload.instance_id ? el("span", { class: "badge" }, "this one") : null],
        (i.holds || []).join(", ") || "none", `${i.host || "?"} (pid ${i.pid || "?"})`, when(i.started_at), i.version || "?",
      ]), "No live instances reported."));
    }, (error) => {
      if (error.code === "unknown_method") {
        fill("instances-body", el("p", {}, "Single instance: this daemon holds every role",
          store.kind ? ` (store: ${store.kind}).` : "."));
      } else failed("instances-body")(error);
    });
  }

  // Pages

  const REFRESH = {
    overview: loadAlerts, chat: loadChat, checks: refreshChecks, schedule: () => refreshSchedule(true),
    reports: refreshReports, access: refreshAccess, logs: refreshLogs, instances: refreshInstances,
  };

  function refresh() {
    if (state.page) REFRESH[state.page]();
  }

  function route() {
    if (!state.gateway) return;
    const name = location.hash.slice(1);
    const page = PAGES.includes(name) ? name : "overview";
    const changed = page !== state.page;
    state.page = page;
    for (const p of PAGES) $(`page-${p}`).hidden = p !== page;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === page) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${page[0].toUpperCase()}${page.slice(1)} · openclaw console`;
    if (changed) {
      refresh();
      if (page === "chat") $("chat-text").focus();
      else $("main").focus({ preventScroll: true });
    }
  }

  function start() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (token) signIn(token, false);
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      if (state.gateway) state.gateway.close();
      state.gateway = null;
      state.page = null;
      showLogin("Signed out.");
    });
    $("chat-form").addEventListener("submit", sendChat);
    $("chat-text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("chat-form").requestSubmit(); }
    });
    $("beat-now").addEventListener("click", beatNow);
    $("logs-level").addEventListener("change", refreshLogs);
    $("logs-component").addEventListener("change", refreshLogs);
    window.addEventListener("hashchange", route);
    setInterval(() => { if (state.page === "overview") renderOverview(); }, 15000);  // relative times age
    redeemLink().finally(() => {
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) signIn(token, true);
      else if ($("login").hidden && $("app").hidden) showLogin("");
    });
  }

  start();
})();
