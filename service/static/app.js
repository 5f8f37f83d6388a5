"use strict";
const $ = (id) => document.getElementById(id);
let current = null;  // the last Result

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && data.error ? data.error.message : response.statusText;
    const error = new Error(response.status + ": " + message);
    error.status = response.status;
    throw error;
  }
  return data;
}

// The seed buttons. With STANDPOINT_API_KEY set this first fails with 401; typing the key
// (Enter, or leaving the box) loads them then.
let seedsLoaded = false;
let seedsLoading = null;

async function loadSeeds() {
  let seeds;
  try {
    seeds = await call("GET", "/v1/seeds");
  } catch (e) {
    $("error").textContent = e.status === 401
      ? "This server needs an API key: type it in the API key box and press Enter."
      : "Could not load the seeds (" + e.message + ")";
    return;
  }
  for (const seed of seeds) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "seed";
    b.dataset.seed = seed.id;
    b.textContent = seed.id;
    b.addEventListener("click", () => { $("article").value = seed.text; });
    $("seeds").appendChild(b);
  }
  seedsLoaded = true;
  $("error").textContent = "";
}

function loadSeedsOnce() {
  if (!seedsLoaded && !seedsLoading) {
    seedsLoading = loadSeeds().finally(() => { seedsLoading = null; });
  }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : text;
  row.appendChild(td);
}

// The API's offsets count code points (Python's str); a JavaScript string counts UTF-16 units,
// in which a character outside the Basic Multilingual Plane (an emoji, 𝐀, CJK extension B)
// takes two. The UTF-16 index of code point number `offset` of `text`:
function utf16Index(text, offset) {
  let index = 0;
  for (let n = 0; n < offset && index < text.length; n++) {
    const unit = text.charCodeAt(index);
    const pair = unit >= 0xd800 && unit <= 0xdbff && index + 1 < text.length
      && text.charCodeAt(index + 1) >= 0xdc00 && text.charCodeAt(index + 1) <= 0xdfff;
    index += pair ? 2 : 1;
  }
  return index;
}

// `box` holds `text` with the code points start:end (the API's text[start:end]) wrapped in
// <mark>; text nodes only, never innerHTML.
function markText(box, text, start, end) {
  box.replaceChildren();
  if (start == null || start === end) { box.textContent = text; return; }
  const from = utf16Index(text, start);
  const to = from + utf16Index(text.slice(from), end - start);
  const mark = document.createElement("mark");
  mark.textContent = text.slice(from, to);
  box.append(text.slice(0, from), mark, text.slice(to));
  mark.scrollIntoView({ block: "center" });
}

function showText(start, end) {
  markText($("text"), current.text, start, end);
}

function show(result) {
  current = result;
  $("summary").textContent = result.summary;
  const items = [
    ...result.demands.map((d) => ({ kind: "demand", what: d.demand, extra: d.target, ...d })),
    ...result.positions.map((p) => ({ kind: "position", what: p.issue, extra: p.stance, ...p })),
  ].sort((a, b) => a.start - b.start);
  const body = $("items");
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement("tr");
    row.className = "item " + item.kind;
    row.dataset.start = item.start;
    row.dataset.end = item.end;
    row.title = item.quote;
    cell(row, item.kind); cell(row, item.actor); cell(row, item.what); cell(row, item.extra);
    row.addEventListener("click", () => {
      for (const r of body.querySelectorAll("tr.selected")) r.classList.remove("selected");
      row.classList.add("selected");
      showText(item.start, item.end);
    });
    body.appendChild(row);
  }
  $("empty").hidden = items.length > 0;
  const warnings = $("warnings");
  warnings.replaceChildren();
  for (const w of result.warnings) {
    const li = document.createElement("li");
    li.textContent = w;
    warnings.appendChild(li);
  }
  showText(null, null);
  $("output").hidden = false;
}

async function submit() {
  $("error").textContent = "";
  $("status").textContent = "working…";
  $("submit").disabled = true;
  try {
    show(await call("POST", "/v1/summaries", { text: $("article").value }));
    $("status").textContent = "done";
  } catch (e) {
    $("error").textContent = e.message;
    $("status").textContent = "";
  } finally {
    $("submit").disabled = false;
  }
}

$("submit").addEventListener("click", submit);
$("apikey").addEventListener("change", loadSeedsOnce);
$("apikey").addEventListener("keydown", (e) => { if (e.key === "Enter") loadSeedsOnce(); });
loadSeedsOnce();
