"use strict";
// The labelling page: clips waiting for a label (from /api/clips), each with a player, what the head
// predicted during it and a button per label; a label moves the clip into <dataset>/<label>/.

const clipsPage = { shown: new Map(), labels: [] };

async function postJSON(url, body) {
  const r = await fetch(withToken(url), {
    method: "POST", cache: "no-store", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(text.trim() || r.status);
  return JSON.parse(text);
}

function act(node, url, body) {
  node.classList.add("busy");
  postJSON(url, body)
    .then(() => { node.remove(); clipsPage.shown.delete(node.dataset.clip); problem(""); refresh(); })
    .catch((e) => { node.classList.remove("busy"); problem(String(e.message || e)); });
}

function clipCard(c) {
  const node = document.getElementById("clip").content.firstElementChild.cloneNode(true);
  const base = "/api/clips/" + encodeURIComponent(c.name);
  node.id = "clip-" + c.name;
  node.dataset.clip = c.name;
  node.querySelector(".name").textContent = c.name;
  node.querySelector(".trigger").textContent = (c.triggers || [c.trigger]).join(", ");
  node.querySelector(".player").src = withToken(base + "/video");
  node.querySelector(".predicted").textContent = c.predicted || "–";
  node.querySelector(".meta").textContent =
    c.source + " · " + clock(c.start) + "–" + clock(c.end) + " · " + c.frames + " frames" +
    (c.requested_label ? " · asked: " + c.requested_label : "");
  const top = node.querySelector(".top");
  for (const s of c.top || []) top.append(el("li", s.label + " " + s.score.toFixed(2)));
  const offer = [];
  for (const l of [c.requested_label, c.predicted, ...clipsPage.labels]) {
    if (l && l !== "idle" && l !== "unknown" && !offer.includes(l)) offer.push(l);
  }
  const buttons = node.querySelector(".buttons");
  for (const l of offer) {
    const b = el("button", l, "label-button");
    b.type = "button";
    b.dataset.label = l;
    b.onclick = () => act(node, base + "/label", { label: l });
    buttons.append(b);
  }
  const form = node.querySelector(".other");
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const l = form.querySelector(".new-label").value.trim();
    if (l) act(node, base + "/label", { label: l });
  };
  node.querySelector(".discard").onclick = () => act(node, base + "/discard", {});
  return node;
}

function recorders(data) {
  const box = document.getElementById("recorders");
  if (box.dataset.filled) return;
  box.dataset.filled = "1";
  const seconds = Math.min(5, data.max_s);
  for (const sid of data.sources) {
    const b = el("button", "Record " + seconds + " s of " + sid, "record-button");
    b.type = "button";
    b.dataset.source = sid;
    b.onclick = () => postJSON("/api/sources/" + encodeURIComponent(sid) + "/record", { seconds })
      .then((r) => problem("recording " + r.clip + " …"))
      .catch((e) => problem(String(e.message || e)));
    box.append(b);
  }
}

async function refresh() {
  let data;
  try {
    data = await getJSON("/api/clips");
  } catch (e) {
    problem(String(e.message || e));
    return;
  }
  clipsPage.labels = [...new Set([...data.dataset_labels, ...data.labels])];
  document.getElementById("dataset").textContent = data.dataset;
  const s = data.stats;
  document.getElementById("counters").textContent =
    s.clips_written + " clips written (" + (s.bytes_written / 1e6).toFixed(1) + " MB), " +
    s.frames_dropped + " frames dropped, " + s.deleted_by_quota + " deleted by the quota" +
    (Object.keys(s.recording).length ? ", recording " + Object.values(s.recording).join(", ") : "");
  recorders(data);
  const list = document.getElementById("clips");
  if (!clipsPage.shown.size) list.textContent = "";
  const names = new Set(data.clips.map((c) => c.name));
  for (const [name, node] of clipsPage.shown) if (!names.has(name)) { node.remove(); clipsPage.shown.delete(name); }
  for (const c of data.clips.slice().reverse()) {
    if (clipsPage.shown.has(c.name)) continue;
    const node = clipCard(c);
    clipsPage.shown.set(c.name, node);
    list.prepend(node);
  }
  list.dataset.count = String(clipsPage.shown.size);
  if (!clipsPage.shown.size) list.append(el("p", "No clip waiting for a label.", "muted"));
}

refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 3000);
