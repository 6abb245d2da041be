// mailtrace web view: plain JavaScript, no build step.
// Every value that comes from the lab (addresses, subjects, dialogue lines) is put in the page
// with textContent, never parsed as HTML.  The one exception is the ladder diagram, which the
// server renders with the transcript's HTML exporter (every value escaped there).
"use strict";

const state = {me: null, t: {}, lang: "en", sessions: new Map(), session: null, view: "sessions",
               mailbox: null, message: null, part: "headers", ladderTimer: null};

function t(key) { return state.t[key] || key; }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function api(path, params) {
  const url = new URL(path, location.origin);
  url.searchParams.set("lang", state.lang);
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
  return url.pathname + url.search;
}

async function getJSON(path, params) {
  const resp = await fetch(api(path, params), {credentials: "same-origin"});
  if (!resp.ok) throw new Error(resp.status + " " + path);
  return resp.json();
}

function when(epoch) { return epoch ? new Date(epoch * 1000).toLocaleTimeString(state.lang) : ""; }

// ---- texts --------------------------------------------------------------------------------
function applyTexts() {
  document.title = t("title");
  document.getElementById("title").textContent = t("title");
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  const set = (id, key) => { document.getElementById(id).textContent = t(key); };
  set("tab-sessions", "sessions"); set("tab-messages", "messages");
  set("f-protocol-label", "filter_protocol"); set("f-user-label", "filter_user"); set("f-mistakes-label", "filter_mistakes");
  set("no-sessions", "no_sessions"); set("logout-button", "logout");
  document.querySelector("#f-protocol option[value='']").textContent = t("all");
  for (const part of ["headers", "mime", "text", "html", "raw", "life"]) set("mt-" + part, "part_" + part);
  document.getElementById("ladder").textContent = t("pick_session");
  document.getElementById("message-body").textContent = state.me.mailboxes ? t("pick_message") : t("no_store");
}

// ---- sessions -----------------------------------------------------------------------------
function matches(s) {
  const proto = document.getElementById("f-protocol").value;
  const user = document.getElementById("f-user").value.trim().toLowerCase();
  const bad = document.getElementById("f-mistakes").checked;
  return (!proto || s.protocol === proto) && (!user || (s.user || "").toLowerCase().includes(user)) && (!bad || s.violations > 0);
}

function sessionRow(s) {
  const tr = el("tr", {"data-id": s.id, class: s.violations ? "bad" : ""},
    el("td", {text: s.id}), el("td", {text: s.protocol.toUpperCase()}), el("td", {text: s.client}),
    el("td", {text: s.user || ""}), el("td", {text: when(s.started)}),
    el("td", {text: s.closed ? t("closed") : s.state}), el("td", {class: "mistakes", text: String(s.violations)}));
  if (state.session === s.id) tr.classList.add("sel");
  tr.addEventListener("click", () => { location.hash = "#/sessions/" + encodeURIComponent(s.id); });
  return tr;
}

function renderSessions() {
  const body = document.querySelector("#sessions-table tbody");
  const rows = [...state.sessions.values()].filter(matches).sort((a, b) => b.started - a.started);
  body.replaceChildren(...rows.map(sessionRow));
  document.getElementById("no-sessions").hidden = rows.length > 0;
}

async function loadSessions() {
  for (const s of await getJSON("/api/sessions")) state.sessions.set(s.id, s);
  renderSessions();
}

async function showSession(id) {
  state.session = id;
  renderSessions();
  const downloads = document.getElementById("downloads");
  downloads.replaceChildren(el("span", {text: t("download") + ": "}), ...["jsonl", "txt", "html", "pcap"].map(fmt =>
    el("a", {href: api("/api/sessions/" + encodeURIComponent(id) + "/download/" + fmt), id: "dl-" + fmt, text: fmt.toUpperCase()})));
  await refreshLadder();
}

// A busy session changes many times a second: redraw its ladder at most every 250 ms (2 s for
// long sessions), so a browser watching costs the lab little.
function scheduleLadder() {
  if (state.ladderTimer) return;
  const s = state.sessions.get(state.session);
  const pause = s && s.events > 1000 ? 2000 : 250;
  state.ladderTimer = setTimeout(() => { state.ladderTimer = null; refreshLadder(); }, pause);
}

let ladderAsked = 0;
async function refreshLadder() {
  if (!state.session) return;
  const ladder = document.getElementById("ladder");
  const asked = ++ladderAsked;  // answers may come back out of order: only the latest is shown
  const atBottom = ladder.scrollHeight - ladder.scrollTop - ladder.clientHeight < 40;
  const resp = await fetch(api("/api/sessions/" + encodeURIComponent(state.session) + "/ladder"), {credentials: "same-origin"});
  const html = resp.ok ? await resp.text() : null;
  if (asked !== ladderAsked) return;
  if (html === null) { ladder.textContent = t("not_found"); return; }
  // Rendered by mailtrace.transcript.html on the server: every value there is HTML-escaped.
  ladder.innerHTML = html;
  if (atBottom) ladder.scrollTop = ladder.scrollHeight;
}

function live() {
  const badge = document.getElementById("live");
  const source = new EventSource(api("/api/stream"));
  source.onopen = () => { badge.className = "live on"; badge.textContent = t("live"); };
  source.onerror = () => { badge.className = "live off"; badge.textContent = t("reconnecting"); };
  source.addEventListener("sessions", (ev) => {
    let touched = false;
    for (const s of JSON.parse(ev.data)) {
      state.sessions.set(s.id, s);
      if (s.id === state.session) touched = true;
    }
    renderSessions();
    if (touched) scheduleLadder();
    if (state.view === "messages") scheduleMailboxRefresh();
  });
}

// ---- mailboxes and messages ---------------------------------------------------------------
let mailboxTimer = null;
function scheduleMailboxRefresh() {
  if (mailboxTimer) return;
  mailboxTimer = setTimeout(() => { mailboxTimer = null; loadMailboxes(); if (state.mailbox) loadMessages(); }, 1000);
}

async function loadMailboxes() {
  if (!state.me.mailboxes) return;
  const list = document.getElementById("mailboxes");
  const boxes = await getJSON("/api/mailboxes");
  list.replaceChildren(...boxes.map(b => {
    const li = el("li", {"data-user": b.user, "data-mailbox": b.mailbox, text: b.user + " / " + b.mailbox + " (" + b.messages + ")"});
    if (state.mailbox && state.mailbox.user === b.user && state.mailbox.mailbox === b.mailbox) li.classList.add("sel");
    li.addEventListener("click", () => { location.hash = "#/mailbox/" + encodeURIComponent(b.user) + "/" + encodeURIComponent(b.mailbox); });
    return li;
  }));
}

async function loadMessages() {
  const {user, mailbox} = state.mailbox;
  const body = document.querySelector("#messages-table tbody");
  let rows = [];
  try { rows = await getJSON("/api/mailboxes/" + encodeURIComponent(user) + "/messages", {mailbox}); } catch (e) { rows = []; }
  body.replaceChildren(...rows.map(m => {
    const tr = el("tr", {"data-uid": String(m.uid)}, el("td", {text: m.from}), el("td", {text: m.to}),
      el("td", {text: m.subject}), el("td", {text: m.date}), el("td", {text: String(m.size)}), el("td", {text: m.flags.join(" ")}));
    if (state.message && state.message.uid === m.uid) tr.classList.add("sel");
    tr.addEventListener("click", () => {
      location.hash = "#/message/" + encodeURIComponent(user) + "/" + encodeURIComponent(mailbox) + "/" + m.uid;
    });
    return tr;
  }));
}

function withRfc(text, rfc) {
  const span = el("span", {text: text});
  if (rfc) span.append(" ", el("span", {class: "rfc", text: rfc}));
  return span;
}

function mimeNode(node) {
  const facts = [node.charset && "charset=" + node.charset, "Content-Transfer-Encoding: " + node.encoding,
                 node.disposition && "Content-Disposition: " + node.disposition, node.filename && "filename=" + node.filename,
                 node.size + " " + t("octets") + (node.decoded_size !== undefined ? " → " + node.decoded_size + " " + t("octets_decoded") : "")]
    .filter(Boolean).join(" · ");
  const div = el("div", {class: "mime-node", "data-path": node.path},
    el("div", {class: "what", text: node.path + "  " + node.type}), el("div", {class: "facts", text: facts}));
  if (node.encoded !== undefined) {
    const decoded = node.decoded !== "" ? node.decoded : t("binary_part");
    div.append(el("div", {class: "side"},
      el("div", {}, el("div", {text: t("encoded")}), el("pre", {class: "encoded", text: node.encoded + (node.encoded_cut ? "\n[…]" : "")})),
      el("div", {}, el("div", {text: t("decoded")}), el("pre", {class: "decoded", text: decoded + (node.decoded_cut ? "\n[…]" : "")}))));
  }
  for (const child of node.children) div.append(mimeNode(child));
  return div;
}

async function showMessage(user, mailbox, uid) {
  state.message = {user, mailbox, uid: Number(uid)};
  const data = await getJSON("/api/messages/" + encodeURIComponent(user) + "/" + uid, {mailbox});
  state.message.data = data;
  document.getElementById("message-tabs").hidden = false;
  document.getElementById("mt-html").disabled = !data.has_html;
  const subject = (data.headers.find(h => h.name.toLowerCase() === "subject") || {}).decoded || "";
  document.getElementById("message-head").replaceChildren(el("h2", {id: "message-subject", text: subject}),
    el("p", {class: "hint", text: user + " / " + mailbox + " · UID " + uid + " · " + data.size + " " + t("octets") + " · " + data.flags.join(" ")}));
  showPart(state.part);
}

function showPart(part) {
  state.part = part;
  for (const b of document.querySelectorAll("#message-tabs button")) b.classList.toggle("on", b.dataset.part === part);
  const m = state.message;
  if (!m || !m.data) return;
  const body = document.getElementById("message-body");
  const base = "/api/messages/" + encodeURIComponent(m.user) + "/" + m.uid;
  if (part === "headers") {
    const grid = el("div", {class: "hdr", id: "headers"});
    for (const h of m.data.headers) {
      const row = h.trace ? "trace" : "";
      grid.append(el("div", {class: "name " + row, text: h.name + ":"}),
                  el("div", {class: "value", text: h.decoded !== h.value ? h.decoded + "\n(" + h.value + ")" : h.value}));
      if (h.meaning) grid.append(el("div", {class: "meaning"}, withRfc(h.meaning, h.rfc)));
    }
    body.replaceChildren(el("p", {class: "hint", text: t("headers_hint")}), grid);
  } else if (part === "mime") {
    body.replaceChildren(el("p", {class: "hint", text: t("mime_hint")}), el("div", {id: "mime-tree"}, mimeNode(m.data.mime)));
  } else if (part === "text") {
    body.replaceChildren(el("pre", {class: "body", id: "text-part", text: m.data.text === null ? t("no_text") : m.data.text}));
  } else if (part === "html") {
    // sandbox="" : no scripts, no forms, an opaque origin; the server adds a CSP that loads nothing
    body.replaceChildren(el("p", {class: "hint", text: t("html_hint")}),
      el("iframe", {id: "html-frame", sandbox: "", referrerpolicy: "no-referrer", src: api(base + "/html", {mailbox: m.mailbox})}));
  } else if (part === "raw") {
    const pre = el("pre", {class: "body", id: "raw-source"});
    body.replaceChildren(pre);
    fetch(api(base + "/raw", {mailbox: m.mailbox}), {credentials: "same-origin"}).then(r => r.text()).then(txt => { pre.textContent = txt; });
  } else if (part === "life") {
    const list = el("ol", {id: "life"});
    for (const step of m.data.life) {
      const a = el("a", {href: "#/sessions/" + encodeURIComponent(step.session), "data-session": step.session,
                         text: step.session + " (" + step.protocol.toUpperCase() + ")"});
      list.append(el("li", {}, el("span", {text: t("action_" + step.action) + " · " + when(step.started + step.t) + " · " + (step.verb || "") + " · "}), a,
                      el("span", {text: step.user ? " · " + step.user : ""})));
    }
    body.replaceChildren(el("p", {class: "hint", text: t("life_hint")}), m.data.life.length ? list : el("p", {text: t("no_life")}));
  }
}

// ---- navigation ---------------------------------------------------------------------------
function showView(view) {
  state.view = view;
  document.getElementById("view-sessions").hidden = view !== "sessions";
  document.getElementById("view-messages").hidden = view !== "messages";
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.view === view);
  if (view === "messages") loadMailboxes();
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "sessions" && parts[1]) { showView("sessions"); await showSession(parts[1]); }
  else if (parts[0] === "mailbox" && parts[2]) {
    showView("messages"); state.mailbox = {user: parts[1], mailbox: parts[2]}; await loadMailboxes(); await loadMessages();
  } else if (parts[0] === "message" && parts[3]) {
    showView("messages"); state.mailbox = {user: parts[1], mailbox: parts[2]};
    await loadMailboxes(); await loadMessages(); await showMessage(parts[1], parts[2], parts[3]);
  } else if (parts[0] === "messages") showView("messages");
  else showView("sessions");
}

async function main() {
  const params = new URLSearchParams(location.search);
  state.me = await getJSON("/api/me", params.get("lang") ? {lang: params.get("lang")} : {});
  state.lang = state.me.lang; state.t = state.me.texts;
  document.documentElement.lang = state.lang;
  applyTexts();
  document.getElementById("who").textContent = state.me.user ? t("logged_in_as") + " " + state.me.user + (state.me.admin ? " (" + t("admin") + ")" : "") : "";
  document.getElementById("logout").hidden = !state.me.login;
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => { location.hash = "#/" + b.dataset.view; });
  for (const b of document.querySelectorAll("#message-tabs button")) b.addEventListener("click", () => showPart(b.dataset.part));
  for (const id of ["f-protocol", "f-user", "f-mistakes"]) { document.getElementById(id).addEventListener("input", renderSessions); document.getElementById(id).addEventListener("change", renderSessions); }
  window.addEventListener("hashchange", route);
  await loadSessions();
  live();
  await route();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", main);
