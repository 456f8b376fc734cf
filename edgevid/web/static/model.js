"use strict";
// The model page: what the head ships (its manifest, labels, report and pictures), from /api/model.

// top1 0.533 -> "53.3 %"; counts as they are; other scores (macro_f1) as a number.
function metric(k, v) {
  if (/clips|windows/.test(k) || v > 1.5) return String(v);
  return /top|acc/.test(k) ? (v * 100).toFixed(1) + " %" : v.toFixed(3);
}

async function main() {
  let m;
  try {
    m = await getJSON("/api/model");
  } catch (e) {
    return problem("cannot read the model: " + e.message);
  }
  const man = m.manifest || {};
  document.getElementById("name").textContent = m.name;
  const facts = document.getElementById("facts");
  const ts = man.timescale;
  row(facts, "window", ts ? ts.window_s + " s, " + man.frames + " frames (one every " +
    (ts.window_s / man.frames).toFixed(3) + " s), fit on " + ts.fit : man.frames + " frames per clip");
  row(facts, "labels", m.labels.length);
  if (man.trained_on) row(facts, "trained on", man.trained_on);
  if (man.streams) row(facts, "streams", man.streams.join(" + "));
  if (man.extractor) row(facts, "extractor", man.extractor.name + " (" + man.extractor.feature_dim + "-d)");
  if (man.calibration) {
    const c = man.calibration;
    row(facts, "calibration", "temperature " + c.temperature + (c.ece_after !== null && c.ece_after !== undefined
      ? ", ECE " + c.ece_before + " → " + c.ece_after : "") + (c.fit_on ? " (" + c.fit_on + ")" : ""));
  }
  row(facts, "min_score", man.min_score !== null && man.min_score !== undefined ? man.min_score : "none recommended");
  document.getElementById("labels").replaceChildren(...m.labels.map((l) => el("li", l)));
  const metrics = document.getElementById("metrics");
  const entries = Object.entries(man.metrics || {});
  if (!entries.length) row(metrics, "none recorded", "");
  for (const [k, v] of entries) row(metrics, k, metric(k, v));
  const pics = document.getElementById("pictures");
  for (const name of m.pictures) {
    const fig = el("figure", null, "picture");
    const img = el("img");
    img.src = withToken("/api/model/" + encodeURIComponent(name));
    img.alt = name;
    fig.append(el("h3", name.replace(/\.png$/, "").replace(/_/g, " ") + " (from the head's folder)"), img);
    pics.append(fig);
  }
  if (m.report) {
    const rep = document.getElementById("report");
    rep.textContent = m.report;
    rep.classList.remove("muted");
  }
}

main();
