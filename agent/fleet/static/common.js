// Shared by the fleet page and the site page. Plain browser JavaScript, no libraries: the page
// must work in a room with no internet. Text from the network is only ever set as textContent.
"use strict";

const REFRESH_MS = 3000;

// Build an element: el("td", {class: "x", title: "y"}, "text" or [children]).
function el(tag, attrs, content) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "data") for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = dv;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  if (content === null || content === undefined) return e;
  for (const c of Array.isArray(content) ? content : [content]) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// Seconds as a short duration: 45 s, 12 min, 3 h 05 min, 2 d 4 h.
function fmtDur(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.floor(s));
  if (s < 90) return s + " s";
  let m = Math.floor(s / 60);
  if (m < 60) return m + " min";
  let h = Math.floor(m / 60);
  m = m % 60;
  if (h < 48) return h + " h " + String(m).padStart(2, "0") + " min";
  return Math.floor(h / 24) + " d " + (h % 24) + " h";
}

function fmtClock(t) {
  if (t === null || t === undefined) return "–";
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
}

function fmtDateTime(t) {
  if (t === null || t === undefined) return "–";
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
    fmtClock(t);
}

function fmtPct(v) {
  return v === null || v === undefined ? "–" : (Math.round(v * 10) / 10) + " %";
}

function placeOf(r) {
  return [r.commune, r.province].filter(Boolean).join(", ");
}

// A value this view cannot know yet: the site's contract v2 compact stream left it out (it was
// within its deadband of a value carried before this view joined the stream). Never shown as a
// value, and said so, until the stream's integrity refresh carries every series again.
function isUnknown(r, field) {
  return Array.isArray(r.unknown) && r.unknown.includes(field);
}

function unknownText(r) {
  return r.known_by ? "unknown until " + fmtClock(r.known_by).slice(0, 5) : "unknown";
}

function unknownNote(r) {
  return "Not known yet: this view joined the site's data stream mid-way (contract v2 compact), " +
    "and the stream sends a value only when it moves. Known again at the site's integrity " +
    "refresh" + (r.known_by ? ", by " + fmtClock(r.known_by) : "") + ".";
}

function contractText(r) {
  return r.contract ? r.contract.replace("json", "JSON") : null;
}

function powerText(r) {
  if (isUnknown(r, "power")) return unknownText(r);
  if (!r.power) return "unknown";
  if (r.power === "battery" && r.on_battery_s) return "battery for " + fmtDur(r.on_battery_s);
  return r.power;
}

function runtimeText(r) {
  if (isUnknown(r, "runtime")) return "unknown";
  if (r.runtime === null || r.runtime === undefined) return "–";
  return fmtDur(r.runtime) + (r.runtime_est ? " (est.)" : "");
}

function heardText(r) {
  if (r.age === null || r.age === undefined) return "never";
  return fmtDur(r.age) + " ago";
}

function statusText(r) {
  if (r.status === "offline") return "offline" + (r.reason ? ": " + r.reason : "");
  if (r.status === "online" && r.silent) return "online, silent";
  return r.status || "unknown";
}

const LEVEL_COLOURS = {
  critical: "#c4001d", major: "#e06a00", minor: "#b59a00", ok: "#2e7d32",
  offline: "#5b2a86", unknown: "#8a8a8a",
};
const SOURCE_COLOURS = {
  mains: "#2e7d32", battery: "#c4001d", generator: "#1f5fbf", solar: "#d4a000",
  unknown: "#9e9e9e",
};
const BACKHAUL_COLOURS = {up: "#2e7d32", degraded: "#e06a00", down: "#c4001d", unknown: "#9e9e9e"};

async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) {
    const err = new Error(url + ": HTTP " + r.status);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

function setLink(node, data, failed) {
  node.textContent = "";
  if (failed) {
    node.className = "link bad";
    node.textContent = "page cannot reach the fleet server: " + failed;
    return;
  }
  node.className = "link " + (data.connected ? "good" : "bad");
  node.textContent = (data.connected ? "broker " : "NOT CONNECTED to broker ") +
    (data.broker || "") + (data.share ? " · share " + data.share : "") +
    (data.partition ? " · partition " + data.partition[0] + "/" + data.partition[1] : "") +
    " · updated " + fmtClock(data.now);
}
