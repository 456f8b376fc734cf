"use strict";
// The sources page: one card per source, filled from /api/state, kept live by /api/stream (server-
// sent events), or by polling /api/state when the stream is refused or unavailable.

const COLORS = ["#0b6bcb", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#c2255c", "#0c8599", "#5c940d"];
const TOP_LINES = 3; // labels drawn on a timeline
const W = 600, H = 140; // the timeline's viewBox
const SVG = "http://www.w3.org/2000/svg";

const page = { model: "", labels: [], historyS: 300, snapshotFps: 1, sources: new Map(), polling: null };

function color(label) {
  const i = page.labels.indexOf(label);
  return COLORS[(i < 0 ? page.labels.length : i) % COLORS.length];
}

function card(item) {
  let src = page.sources.get(item.id);
  if (src) return src;
  const node = document.getElementById("card").content.firstElementChild.cloneNode(true);
  node.id = "source-" + item.id;
  node.dataset.source = item.id;
  node.querySelector(".sid").textContent = item.id;
  document.getElementById("sources").append(node);
  src = { id: item.id, node, history: [], events: [], status: null, last: null, minScore: null, dirty: true };
  page.sources.set(item.id, src);
  if (item.snapshot) live(src);
  if (item.record_max_s) recordButton(src, Math.min(5, item.record_max_s));
  return src;
}

// [record] on for this source: a button asks for the next few seconds (labelled on the Clips page).
function recordButton(src, seconds) {
  const b = src.node.querySelector(".record-button");
  const idle = "Record " + seconds + " s";
  b.textContent = idle;
  b.hidden = false;
  b.onclick = async () => {
    const url = withToken("/api/sources/" + encodeURIComponent(src.id) + "/record");
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ seconds }) });
    const text = (await r.text()).trim();
    problem(r.ok ? "" : text);
    b.textContent = r.ok ? "Recording " + JSON.parse(text).clip : idle;
    if (r.ok) setTimeout(() => { b.textContent = idle; }, seconds * 1000);
  };
}

// The live view: the next snapshot is asked for only once the last one arrived (or failed), at the
// daemon's snapshot rate, and not at all while the tab is hidden.
function live(src) {
  const img = src.node.querySelector(".snapshot");
  const none = src.node.querySelector(".nolive");
  const base = "/api/sources/" + encodeURIComponent(src.id) + "/snapshot.jpg";
  const next = () => setTimeout(tick, 1000 / page.snapshotFps);
  function tick() {
    if (document.hidden) return setTimeout(tick, 1000);
    img.src = withToken(base + "?t=" + Date.now());
  }
  img.onload = () => { img.hidden = false; none.hidden = true; next(); };
  img.onerror = () => { next(); };
  tick();
}

function trim(src) {
  const cut = src.history.length ? src.history[src.history.length - 1].t - page.historyS : 0;
  let n = 0;
  while (n < src.history.length && src.history[n].t < cut) n++;
  if (n) src.history.splice(0, n);
}

function addPoints(src, points) {
  // seq only grows within a daemon's life; a restarted daemon is met by a full reload (stream reopened)
  for (const p of points) {
    if (!src.history.length || p.seq > src.history[src.history.length - 1].seq) src.history.push(p);
  }
  if (src.history.length) src.last = src.history[src.history.length - 1];
  trim(src);
  src.dirty = true;
}

function apply(state, full) {
  page.labels = state.model.labels;
  page.historyS = state.history_s;
  page.snapshotFps = state.snapshot_fps;
  page.model = state.model.name;
  header(state);
  if (full) document.getElementById("sources").querySelector("p")?.remove();
  for (const item of state.sources) {
    const src = card(item);
    if (full) { src.history = []; }
    addPoints(src, item.history);
    src.events = item.events.slice();
    src.status = item.status;
    src.minScore = item.min_score;
    if (!src.last && item.last) src.last = item.last;
    src.dirty = true;
  }
}

// The oldest of the sources' latest points: a partial load asks for everything newer (seq dedupes).
function since() {
  let t = Infinity;
  for (const src of page.sources.values()) t = Math.min(t, src.history.length ? src.history[src.history.length - 1].t : 0);
  return t === Infinity ? 0 : t;
}

async function load(full) {
  try {
    const t = since();
    apply(await getJSON(full || !t ? "/api/state" : "/api/state?since=" + t), full);
    problem(null);
  } catch (e) {
    problem("cannot read the daemon's state: " + e.message);
  }
}

function stream() {
  if (!window.EventSource) return poll();
  const es = new EventSource(withToken("/api/stream"));
  let opened = false;
  // Opened: fill what was published since the state was read; reopened (a restart, or dropped for
  // lagging): read it all again.
  es.onopen = () => { load(opened); opened = true; problem(null); };
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) { es.close(); poll(); } // refused (503): poll instead
  };
  es.addEventListener("prediction", (e) => {
    const p = JSON.parse(e.data);
    const src = page.sources.get(p.source);
    if (src) addPoints(src, [p]);
  });
  es.addEventListener("event", (e) => {
    const ev = JSON.parse(e.data);
    const src = page.sources.get(ev.source);
    if (src) { src.events.push(ev); if (src.events.length > 50) src.events.shift(); src.dirty = true; }
  });
  es.addEventListener("status", (e) => {
    const st = JSON.parse(e.data);
    for (const s of st.sources) {
      const src = page.sources.get(s.id);
      if (src) { src.status = s; src.dirty = true; }
    }
    header(st);
  });
}

// The daemon's line in the header: model, uptime, and overload with its reason in numbers.
function header(st) {
  document.getElementById("daemon").textContent = page.model + " · up " + Math.round(st.uptime_s) + " s" +
    (st.overloaded ? " · OVERLOADED: " + (st.overload || "") : "");
}

function poll() {
  if (!page.polling) page.polling = setInterval(() => load(false), 2000);
}

// -- drawing ---------------------------------------------------------------------------------------
function draw(src) {
  const n = src.node;
  const st = src.status;
  const state = n.querySelector(".state");
  state.textContent = st ? st.state : "?";
  state.className = "state " + (st ? st.state : "");
  const label = n.querySelector(".label");
  if (src.last) {
    label.textContent = src.last.label;
    const idle = src.last.label === "idle"; // the motion gate found the picture still: nothing ran
    label.className = "label" + (src.last.label === "unknown" || idle ? " unknown" : "") +
      (st && st.state !== "running" ? " stale" : "");
    n.querySelector(".score").textContent = (idle ? "still picture: the head did not run · "
      : (src.last.label === "unknown" ? "top-1 " + src.last.top[0][0] + " " : "") +
      "score " + src.last.score.toFixed(2) + " · ") + "window ending " + clock(src.last.t);
    const top = n.querySelector(".top");
    top.replaceChildren(...src.last.top.map(([l, s]) => el("li", l + " " + s.toFixed(2))));
  }
  timeline(src);
  counters(src);
  events(src);
}

function timeline(src) {
  const svg = src.node.querySelector(".timeline");
  const h = src.history;
  const end = h.length ? h[h.length - 1].t : 0;
  const span = h.length ? Math.min(page.historyS, Math.max(60, end - h[0].t)) : 60;
  const start = end - span;
  const totals = new Map();
  for (const p of h) for (const [l, s] of p.top) totals.set(l, (totals.get(l) || 0) + s);
  const labels = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP_LINES).map((e) => e[0]);
  const x = (t) => ((t - start) / span * W).toFixed(1);
  const y = (s) => (H - 4 - s * (H - 8)).toFixed(1);
  const hop = src.status ? src.status.hop_s : 0.5;
  const parts = [];
  for (const g of [0.25, 0.5, 0.75]) parts.push(["grid", "M0 " + y(g) + " H" + W]);
  if (src.minScore) parts.push(["min-score", "M0 " + y(src.minScore) + " H" + W]);
  let still = ""; // idle windows (the motion gate): a grey band, and no line through them
  for (const p of h) {
    if (p.t >= start && p.label === "idle") still += "M" + x(p.t - hop) + " 0 H" + x(p.t) + " V" + H + " H" + x(p.t - hop) + " Z ";
  }
  if (still) parts.push(["idle", still.trim()]);
  for (const l of labels) {
    let d = "", prev = null;
    for (const p of h) {
      if (p.t < start) continue;
      if (p.label === "idle") { prev = null; continue; }
      const hit = p.top.find((e) => e[0] === l);
      const s = hit ? hit[1] : 0;
      d += (prev === null || p.t - prev > 3 * hop + 1 ? "M" : "L") + x(p.t) + " " + y(s) + " "; // a gap: no line
      prev = p.t;
    }
    parts.push(["line", d.trim(), color(l), l]);
  }
  svg.replaceChildren(...parts.map(([cls, d, stroke, l]) => {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("class", cls);
    path.setAttribute("d", d);
    if (stroke) { path.setAttribute("stroke", stroke); path.dataset.label = l; }
    return path;
  }));
  svg.dataset.points = String(h.length);
  svg.dataset.lastSeq = h.length ? String(h[h.length - 1].seq) : "";
  src.node.querySelector(".axis-start").textContent = h.length ? "−" + Math.round(span) + " s" : "";
  src.node.querySelector(".legend").replaceChildren(...labels.map((l) => {
    const s = el("span", l);
    const i = el("i");
    i.style.background = color(l);
    s.prepend(i);
    return s;
  }));
}

function counters(src) {
  const st = src.status;
  const tb = src.node.querySelector(".counters tbody");
  tb.replaceChildren();
  if (!st) return;
  row(tb, "fps in", st.fps_in.toFixed(1) + " (processed " + st.fps_processed.toFixed(1) + ")");
  row(tb, "window / hop", st.window_s + " s / " + st.hop_s + " s");
  row(tb, "windows published", st.predictions);
  const why = Object.entries(st.skipped || {}).map(([k, v]) => k + " " + v).join(", ");
  row(tb, "windows skipped", st.skipped_windows + (why ? " (" + why + ")" : ""));
  row(tb, "frames in / sampled / extracted", st.frames_in + " / " + st.sampled + " / " + st.extracted);
  row(tb, "frames dropped", st.dropped);
  row(tb, "reconnects", st.reconnects);
  if (st.motion !== null && st.motion !== undefined) {
    row(tb, "motion gate", (st.motion ? "moving" : "still") + " · idle windows " + st.idle_windows +
      " · frames not extracted " + st.gated_frames + " · still " + Math.round(st.idle_s) + " s");
  }
  if (st.loop !== null && st.loop !== undefined) row(tb, "file passes", st.loop);
  if (st.last_error) row(tb, "last problem", st.last_error);
}

function events(src) {
  const ul = src.node.querySelector(".events");
  const byId = new Map();
  for (const e of src.events) byId.set(e.id, e); // the latest message of each event
  const list = [...byId.values()].sort((a, b) => b.t - a.t).slice(0, 10);
  if (!list.length) return ul.replaceChildren(el("li", "none yet", "muted"));
  ul.replaceChildren(...list.map((e) => el("li",
    clock(e.started_at) + " " + e.label + " · " + e.duration_s.toFixed(1) + " s · best " + e.best_score.toFixed(2) +
    (e.phase === "end" ? " · ended" : " · ongoing"))));
}

setInterval(() => {
  for (const src of page.sources.values()) if (src.dirty) { src.dirty = false; draw(src); }
}, 500);

load(true).then(stream);
