// The fleet page: every site, most urgent first (the server sorts), a filter by ward or commune,
// and a map drawn on a plain canvas from the sites' coordinates (or on the operator's image).
"use strict";

const state = {q: "", area: "", data: null, image: null, imageUrl: null, hits: []};
const q = document.getElementById("q");
const area = document.getElementById("area");

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  state.q = p.get("q") || "";
  state.area = p.get("area") || "";
  q.value = state.q;
}

function writeHash() {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.area) p.set("area", state.area);
  history.replaceState(null, "", p.toString() ? "#" + p.toString() : location.pathname);
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  const p = new URLSearchParams({limit: "500"});
  if (state.q) p.set("q", state.q);
  if (state.area) p.set("area", state.area);
  let wait = REFRESH_MS;
  try {
    state.data = await getJSON("/api/fleet?" + p.toString());
    render();
    setLink(document.getElementById("link"), state.data);
    wait = Math.max(REFRESH_MS, 1000 * (state.data.refresh_s || 0));
  } catch (e) {
    setLink(document.getElementById("link"), null, e.message);
  }
  timer = setTimeout(refresh, wait);
}

function render() {
  const d = state.data;
  renderTotals(d);
  renderAreas(d.areas);
  renderTable(d);
  drawMap(d.map);
}

function renderTotals(d) {
  const t = d.totals;
  const chips = [
    ["battery", t.battery + " on battery"], ["offline", t.offline + " offline or silent"],
    ["backhaul", t.backhaul_down + " backhaul down"], ["critical", t.critical + " critical"],
    ["all", t.sites + " sites"],
  ];
  if (t.unknown) {
    chips.push(["unknown", t.unknown + " with values unknown until their integrity refresh"]);
  }
  const box = document.getElementById("totals");
  box.replaceChildren(...chips.map(([k, text]) => el("span", {class: "chip chip-" + k}, text)));
}

function renderAreas(areas) {
  const want = [""].concat(areas.map((a) => a[0]));
  const have = Array.from(area.options).map((o) => o.value);
  if (want.join("\n") === have.join("\n")) return;
  area.replaceChildren(el("option", {value: ""}, "all"),
    ...areas.map(([name, n]) => el("option", {value: name}, name + " (" + n + ")")));
  area.value = state.area;
}

function alarmCell(counts) {
  const parts = [];
  for (const sev of ["critical", "major", "minor", "warning"]) {
    if (counts[sev]) parts.push(el("span", {class: "pill sev-" + sev, title: sev},
      counts[sev] + " " + sev));
  }
  return parts.length ? parts : "–";
}

// A cell of a value the view may not know yet (see isUnknown in common.js).
function valueCell(r, field, cls, text, title) {
  if (isUnknown(r, field)) return el("td", {class: cls + " unknown", title: unknownNote(r)}, text);
  return el("td", {class: cls, title: title}, text);
}

function renderTable(d) {
  const body = document.querySelector("#sites tbody");
  const rows = d.sites.map((r) => {
    const link = el("a", {href: "/site/" + encodeURIComponent(r.id)}, r.name || r.id);
    const elsewhere = r.elsewhere !== undefined && r.elsewhere !== null;
    return el("tr", {class: "lvl-" + r.level + (r.silent ? " silent" : ""), data: {site: r.id},
      title: r.why}, [
      el("td", {class: "c-level"}, el("span", {class: "level level-" + r.level}, r.level)),
      el("td", {class: "c-site"}, [link, el("div", {class: "sub"}, r.id +
        (r.contract ? " · " + contractText(r) : ""))]),
      el("td", {class: "c-place"}, r.commune || r.province ? [r.commune || r.province,
        r.commune && r.province ? el("div", {class: "sub"}, r.province) : null] : "–"),
      valueCell(r, "power", "c-power " + (r.silent ? "last-known" : "src-" +
        (r.power || "unknown")), r.silent && r.power ? "last: " + powerText(r) : powerText(r),
        r.silent ? "last known: the site is not reporting" : null),
      valueCell(r, "charge", "c-charge num", isUnknown(r, "charge") ? "unknown" :
        fmtPct(r.charge)),
      valueCell(r, "runtime", "c-runtime num" + (r.runtime_est ? " est" : "") +
        (r.power !== "battery" ? " idle" : ""), runtimeText(r), r.power !== "battery" ?
        "what the battery would give; the site is not on battery" : null),
      valueCell(r, "backhaul", "c-backhaul bh-" + (r.backhaul || "unknown"),
        isUnknown(r, "backhaul") ? "unknown" : r.backhaul || "–"),
      el("td", {class: "c-alarms"}, alarmCell(r.alarms)),
      el("td", {class: "c-status st-" + r.status}, [el("span", {class: "st"}, statusText(r)),
        el("div", {class: "sub c-heard"}, ["heard " + heardText(r), r.time_est ?
          el("span", {class: "badge est", title: "the site's clock was not trusted: its times " +
            "are estimates"}, "time est.") : null, elsewhere ?
          el("span", {class: "badge elsewhere", title: "another instance (partition " +
            r.elsewhere + ") reads this site's live data; here: its retained state, status " +
            "and alarms"}, "live on " + r.elsewhere) : null])]),
    ]);
  });
  body.replaceChildren(...rows);
  document.getElementById("empty").hidden = rows.length > 0;
  const shown = document.getElementById("shown");
  shown.textContent = d.matched > d.sites.length
    ? "showing the " + d.sites.length + " most urgent of " + d.matched
    : d.matched + " of " + d.totals.sites + " sites";
}

// --- the map ------------------------------------------------------------------------------
function loadImage(url) {
  if (state.imageUrl === url) return;
  state.imageUrl = url;
  state.image = null;
  const img = new Image();
  img.onload = () => {
    // The canvas takes the image's proportions: its edges are the bounds the operator gave.
    const canvas = document.getElementById("map");
    canvas.height = Math.round(canvas.width * img.naturalHeight / img.naturalWidth);
    state.image = img;
    drawMap(state.data.map);
  };
  img.src = url;
}

function drawMap(map) {
  const canvas = document.getElementById("map");
  const note = document.getElementById("map-note");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#f4f1ea";
  ctx.fillRect(0, 0, W, H);
  const pts = map.points;
  state.hits = [];
  let s, w, n, e;
  if (map.image) {
    [s, w, n, e] = map.image.bounds;
    loadImage(map.image.url);
    if (state.image) ctx.drawImage(state.image, 0, 0, W, H);
  } else if (pts.length) {
    s = Math.min(...pts.map((p) => p[1])); n = Math.max(...pts.map((p) => p[1]));
    w = Math.min(...pts.map((p) => p[2])); e = Math.max(...pts.map((p) => p[2]));
    const padLat = Math.max((n - s) * 0.08, 0.05), padLon = Math.max((e - w) * 0.08, 0.05);
    s -= padLat; n += padLat; w -= padLon; e += padLon;
    // Same scale on both axes (a degree of longitude is cos(latitude) of one of latitude).
    const k = Math.cos(((s + n) / 2) * Math.PI / 180);
    const spanX = (e - w) * k, spanY = n - s;
    if (spanX / spanY > W / H) {
      const grow = (spanX * H / W - spanY) / 2; s -= grow; n += grow;
    } else {
      const grow = (spanY * W / H - spanX) / 2 / k; w -= grow; e += grow;
    }
  } else {
    note.textContent = "No site has coordinates (site.location.lat and lon in its config).";
    return;
  }
  const x = (lon) => (lon - w) / (e - w) * W;
  const y = (lat) => (n - lat) / (n - s) * H;
  if (!map.image) drawGraticule(ctx, s, w, n, e, x, y, W, H);
  // Draw the calm sites first so the urgent ones stay on top.
  const order = {ok: 0, unknown: 1, minor: 2, major: 3, offline: 4, critical: 5};
  const sorted = pts.slice().sort((a, b) => (order[a[3]] || 0) - (order[b[3]] || 0));
  for (const [id, lat, lon, level, name] of sorted) {
    const px = x(lon), py = y(lat);
    const r = level === "ok" ? 4 : 6;
    ctx.beginPath();
    ctx.arc(px, py, r, 0, 2 * Math.PI);
    ctx.fillStyle = LEVEL_COLOURS[level] || "#777";
    ctx.fill();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#fff";
    ctx.stroke();
    state.hits.push([px, py, id, name]);
  }
  // Names of the sites that need attention, most urgent first, where they do not cover one
  // another (the rest are a hover or a click away).
  ctx.font = "12px sans-serif";
  const boxes = [];
  for (const [, lat, lon, level, name] of sorted.slice().reverse()) {
    if (level === "ok" || level === "unknown" || boxes.length >= 40) continue;
    const px = x(lon), py = y(lat), w = ctx.measureText(name).width;
    const left = px + 8 + w > W;  // near the right edge: write it on the left
    const box = [left ? px - 8 - w : px + 8, py - 9, w, 13];
    if (boxes.some((b) => box[0] < b[0] + b[2] && b[0] < box[0] + box[2] &&
                          box[1] < b[1] + b[3] && b[1] < box[1] + box[3])) continue;
    boxes.push(box);
    ctx.fillStyle = "rgba(255,255,255,0.75)";
    ctx.fillRect(box[0] - 1, box[1], box[2] + 2, box[3]);
    ctx.fillStyle = "#222";
    ctx.fillText(name, box[0], py + 2);
  }
  const outside = pts.filter((p) => p[1] < s || p[1] > n || p[2] < w || p[2] > e).length;
  note.textContent = pts.length + " sites on the map" +
    (outside ? " (" + outside + " outside the image's bounds)" : "") +
    ". Click a site to open it.";
}

function drawGraticule(ctx, s, w, n, e, x, y, W, H) {
  const span = Math.max(n - s, e - w);
  const step = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10].find((v) => span / v <= 8) || 20;
  ctx.strokeStyle = "#d8d2c4";
  ctx.fillStyle = "#8a8272";
  ctx.lineWidth = 1;
  ctx.font = "11px sans-serif";
  for (let lat = Math.ceil(s / step) * step; lat <= n; lat += step) {
    ctx.beginPath(); ctx.moveTo(0, y(lat)); ctx.lineTo(W, y(lat)); ctx.stroke();
    ctx.fillText(lat.toFixed(2) + "°N", 4, y(lat) - 3);
  }
  for (let lon = Math.ceil(w / step) * step; lon <= e; lon += step) {
    ctx.beginPath(); ctx.moveTo(x(lon), 0); ctx.lineTo(x(lon), H); ctx.stroke();
    ctx.fillText(lon.toFixed(2) + "°E", x(lon) + 3, H - 4);
  }
}

function siteAt(ev) {
  const canvas = document.getElementById("map");
  const rect = canvas.getBoundingClientRect();
  const px = (ev.clientX - rect.left) * canvas.width / rect.width;
  const py = (ev.clientY - rect.top) * canvas.height / rect.height;
  let best = null, bestD = 12 * 12;
  for (const h of state.hits) {
    const d = (h[0] - px) ** 2 + (h[1] - py) ** 2;
    if (d <= bestD) { best = h; bestD = d; }
  }
  return best;
}

document.getElementById("map").addEventListener("click", (ev) => {
  const hit = siteAt(ev);
  if (hit) location.href = "/site/" + encodeURIComponent(hit[2]);
});
document.getElementById("map").addEventListener("mousemove", (ev) => {
  const hit = siteAt(ev);
  ev.target.style.cursor = hit ? "pointer" : "default";
  ev.target.title = hit ? hit[3] + " (" + hit[2] + ")" : "";
});

let typing = null;
q.addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => { state.q = q.value.trim(); writeHash(); refresh(); }, 250);
});
area.addEventListener("change", () => { state.area = area.value; writeHash(); refresh(); });
window.addEventListener("hashchange", () => { readHash(); refresh(); });

readHash();
refresh();
