"use strict";
// Shared by the pages: the token (from ?token=, sent back on every request) and small DOM helpers.
// Everything the daemon sends is shown with textContent, never parsed as HTML.
const TOKEN = new URLSearchParams(location.search).get("token");

function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

async function getJSON(url) {
  const r = await fetch(withToken(url), { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()).trim());
  return r.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(tbody, key, value) {
  const tr = el("tr");
  tr.append(el("td", key), el("td", value));
  tbody.append(tr);
}

function problem(text) {
  const p = document.getElementById("problem");
  p.hidden = !text;
  p.textContent = text || "";
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString();
}

for (const a of document.querySelectorAll("a.tokened")) a.href = withToken(a.getAttribute("href"));
