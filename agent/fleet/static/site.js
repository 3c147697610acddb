// One site: what it is doing now, its active alarms, and the last day of battery and power as a
// plot on a plain canvas (charge or voltage as a line, runtime left as a second line, the power
// source and the backhaul as coloured bands; blank where nothing was heard).
"use strict";

const siteId = decodeURIComponent(location.pathname.replace(/^\/site\//, ""));

async function refresh() {
  try {
    const d = await getJSON("/api/site/" + encodeURIComponent(siteId));
    document.getElementById("missing").hidden = true;
    render(d);
    setLink(document.getElementById("link"), {connected: true, now: Date.now() / 1000});
  } catch (e) {
    if (e.status === 404) {
      document.getElementById("missing").hidden = false;
      document.getElementById("title").textContent = siteId;
    } else {
      setLink(document.getElementById("link"), null, e.message);
    }
  }
}

function card(key, label, value, extra, cls) {
  return el("div", {class: "card " + (cls || ""), data: {card: key}}, [
    el("div", {class: "label"}, label), el("div", {class: "value"}, value),
    extra ? el("div", {class: "sub"}, extra) : null,
  ]);
}

// A card of a value the view may not know yet (see isUnknown in common.js).
function valueCard(d, key, label, value, extra, cls) {
  if (isUnknown(d, key)) return card(key, label, value, unknownNote(d), "unknown");
  return card(key, label, value, extra, cls);
}

function render(d) {
  document.title = (d.name || d.id) + " · site-agent";
  document.getElementById("title").textContent = (d.name || d.id) + "  ";
  document.getElementById("title").append(el("span", {class: "sub"}, d.id +
    (d.kind ? " · " + d.kind : "")));
  const loc = d.location || {};
  const place = [loc.address, loc.commune, loc.province].filter(Boolean).join(", ");
  const coords = loc.lat !== undefined && loc.lon !== undefined
    ? " (" + loc.lat.toFixed(4) + ", " + loc.lon.toFixed(4) + ")" : "";
  document.getElementById("place").textContent = (place || "no place given") + coords;
  const why = document.getElementById("why");
  why.textContent = d.why;
  why.className = "why level-" + d.level;
  const volts = d.voltage !== null ? d.voltage.toFixed(2) + " V (" + d.voltage_device + ")" : null;
  const rtExtra = d.runtime_reported !== null && d.runtime_at
    ? "reported " + fmtDur(d.runtime_reported) + " at " + fmtClock(d.runtime_at) : null;
  document.getElementById("cards").replaceChildren(
    card("status", "Status", statusText(d), d.status_time ? "since " +
      fmtDateTime(d.status_time) : null, "st-" + d.status),
    valueCard(d, "power", "Power", d.silent && d.power ? "last: " + powerText(d) :
      powerText(d), d.silent ? "what it said last: the site is not reporting" : null,
      d.silent ? "last-known" : "src-" + (d.power || "unknown")),
    valueCard(d, "charge", "Battery charge", isUnknown(d, "charge") ? "unknown" :
      fmtPct(d.charge), volts),
    valueCard(d, "runtime", "Runtime left", runtimeText(d), rtExtra, d.runtime_est ? "est" : ""),
    valueCard(d, "backhaul", "Backhaul", isUnknown(d, "backhaul") ? "unknown" :
      d.backhaul || "–", null, "bh-" + (d.backhaul || "unknown")),
    card("heard", "Last heard", heardText(d), (d.last_heard ? fmtDateTime(d.last_heard) : "") +
      (d.time_est ? " · time estimated (the site's clock was not trusted)" : ""),
      d.time_est ? "est" : ""),
    card("agent", "Agent", d.agent || "–", [d.session ? "session " + d.session : null,
      contractText(d) ? "contract " + contractText(d) : null, d.elsewhere !== undefined &&
      d.elsewhere !== null ? "live data read by partition " + d.elsewhere : null]
      .filter(Boolean).join(" · ") || null),
  );
  renderAlarms(d.active_alarms);
  renderEvents(d.events);
  drawPlot(d.history);
}

function renderAlarms(list) {
  const body = document.querySelector("#alarms tbody");
  body.replaceChildren(...list.map((a) => el("tr", {class: "sev-row-" + a.severity,
    data: {alarm: a.alarm}}, [
    el("td", null, el("span", {class: "pill sev-" + a.severity}, a.severity)),
    el("td", null, [a.rule || a.alarm, el("div", {class: "sub"}, a.alarm)]),
    el("td", null, fmtDateTime(a.first_seen || a.time)),
    el("td", null, a.value === null || a.value === undefined ? "–" : String(a.value)),
  ])));
  document.getElementById("no-alarms").hidden = list.length > 0;
}

function renderEvents(list) {
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...list.map((a) => el("tr", null, [
    el("td", null, fmtDateTime(a.time)), el("td", null, a.event),
    el("td", null, el("span", {class: "pill sev-" + a.severity}, a.severity)),
    el("td", null, a.alarm),
  ])));
}

function drawPlot(h) {
  const canvas = document.getElementById("plot");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const L = 52, R = 52, T = 12, bandH = 14, B = 26 + 2 * bandH + 10;
  const pw = W - L - R, ph = H - T - B;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  const n = h.charge.length;
  const t0 = h.start, t1 = h.start + n * h.step;
  document.getElementById("span").textContent = "Last " + fmtDur(t1 - t0).replace(" 00 min", "");
  const x = (t) => L + (t - t0) / (t1 - t0) * pw;
  const useCharge = h.charge.some((v) => v !== null);
  const level = useCharge ? h.charge : h.voltage;
  let lo = 0, hi = 100, unit = "%";
  if (!useCharge) {
    const vs = level.filter((v) => v !== null);
    unit = "V";
    lo = vs.length ? Math.floor(Math.min(...vs) - 1) : 0;
    hi = vs.length ? Math.ceil(Math.max(...vs) + 1) : 60;
  }
  const y = (v) => T + ph - (v - lo) / (hi - lo) * ph;
  const rts = h.runtime.filter((v) => v !== null);
  const rtMax = rts.length ? Math.max(3600, ...rts) : 3600;
  const yr = (v) => T + ph - v / rtMax * ph;
  // Axes and grid.
  ctx.strokeStyle = "#e3e3e3";
  ctx.fillStyle = "#555";
  ctx.font = "11px sans-serif";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, py = y(v);
    ctx.beginPath(); ctx.moveTo(L, py); ctx.lineTo(L + pw, py); ctx.stroke();
    ctx.fillText((Math.round(v * 10) / 10) + " " + unit, 4, py + 4);
    const rv = rtMax * i / 4;
    ctx.fillText(rv >= 3600 ? (rv / 3600).toFixed(1) + " h" : Math.round(rv / 60) + " min",
      L + pw + 6, yr(rv) + 4);
  }
  const span = t1 - t0;
  const hourStep = [300, 600, 1800, 3600, 3 * 3600, 6 * 3600].find((v) => span / v <= 10) || 86400;
  for (let t = Math.ceil(t0 / hourStep) * hourStep; t <= t1; t += hourStep) {
    ctx.beginPath(); ctx.moveTo(x(t), T); ctx.lineTo(x(t), T + ph); ctx.stroke();
    ctx.fillText(fmtClock(t).slice(0, 5), x(t) - 14, H - 6);
  }
  // A gap of at most maxGap seconds between two points is a site reporting less often than
  // the buckets are fine, not silence: lines and bands bridge it. A longer gap stays blank.
  const maxGap = Math.max(2 * h.step, 60);
  const nextPoint = (values, i) => {
    for (let j = i + 1; j < n && (j - i) * h.step <= maxGap; j++) if (values[j] !== null) return j;
    return i + 1;
  };
  // Bands: power source, then backhaul.
  const band = (values, colours, top, label) => {
    ctx.fillStyle = "#555";
    ctx.fillText(label, 4, top + bandH - 3);
    for (let i = 0; i < n; i++) {
      if (!values[i]) continue;
      ctx.fillStyle = colours[values[i]] || "#999";
      // Whole pixels, so that neighbouring buckets meet without hairlines between them.
      const xa = Math.floor(x(t0 + i * h.step));
      const xb = Math.ceil(x(t0 + nextPoint(values, i) * h.step));
      ctx.fillRect(xa, top, Math.max(1, xb - xa), bandH);
    }
  };
  band(h.source, SOURCE_COLOURS, T + ph + 8, "power");
  band(h.backhaul, BACKHAUL_COLOURS, T + ph + 10 + bandH, "link");
  // Lines, broken where nothing was heard.
  const line = (values, fy, colour, width, dash) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.setLineDash(dash || []);
    ctx.beginPath();
    let last = null;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v === null) continue;
      const px = x(t0 + (i + 0.5) * h.step), py = fy(v);
      if (last !== null && (i - last) * h.step <= maxGap) ctx.lineTo(px, py);
      else ctx.moveTo(px, py);
      last = i;
      if (nextPoint(values, i) === i + 1 && values[i + 1] == null) {
        ctx.fillRect(px - 1, py - 1, 2, 2);  // a lone point or a line's end stays visible
      }
    }
    ctx.stroke();
    ctx.setLineDash([]);
  };
  ctx.fillStyle = "#1f5fbf";
  line(level, y, "#1f5fbf", 2);
  ctx.fillStyle = "#7a3db8";
  line(h.runtime, yr, "#7a3db8", 1.5, [5, 3]);
  ctx.strokeStyle = "#999";
  ctx.strokeRect(L, T, pw, ph);
  const legend = document.getElementById("legend");
  legend.replaceChildren(
    el("span", {class: "key k-charge"}, useCharge ? "battery charge (%)" : "battery voltage (V)"),
    el("span", {class: "key k-runtime"}, "runtime left (right axis)"),
    ...Object.keys(SOURCE_COLOURS).map((k) => el("span", {class: "key sw-" + k}, k)),
    el("span", {class: "muted"}, "one point per " + fmtDur(h.step) + "; blank: nothing heard"),
  );
}

refresh();
setInterval(refresh, REFRESH_MS);
