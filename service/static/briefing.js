"use strict";
// Briefings: uses $, call and markText from the script above.
let briefing = null;  // the last Briefing

function addBriefArticle(id, text) {
  const box = document.createElement("div");
  box.className = "brief-article";
  const name = document.createElement("input");
  name.className = "brief-outlet";
  name.placeholder = "outlet (optional)";
  const area = document.createElement("textarea");
  area.className = "brief-text";
  area.placeholder = "Article text";
  if (text) area.value = text;
  box.dataset.id = id || "";
  box.append(name, area);
  $("brief-articles").appendChild(box);
  return box;
}

async function useSeeds() {
  try {
    const seeds = await call("GET", "/v1/seeds");
    $("brief-articles").replaceChildren();
    for (const seed of seeds) addBriefArticle(seed.id, seed.text);
  } catch (e) {
    $("brief-error").textContent = "Could not load the seeds (" + e.message + ")";
  }
}

function badge(text, kind) {
  const b = document.createElement("span");
  b.className = "badge " + kind;
  b.textContent = text;
  return b;
}

function articleLabel(id) {
  const a = briefing.articles.find((x) => x.id === id);
  return a && a.outlet ? a.outlet + " (" + id + ")" : id;
}

// One article's text with text[start:end] (code points) marked (markText, in app.js).
function showBriefText(articleId, start, end) {
  const article = briefing.articles.find((a) => a.id === articleId);
  const box = $("brief-text");
  box.dataset.article = articleId;
  $("brief-text-title").textContent = articleLabel(articleId);
  markText(box, article.text, start, end);
}

function select(button) {
  for (const b of document.querySelectorAll("#briefing .selected")) b.classList.remove("selected");
  button.classList.add("selected");
  showBriefText(button.dataset.article, Number(button.dataset.start), Number(button.dataset.end));
}

function sourceButton(source, quote, start, end) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "source";
  b.dataset.article = source.article;
  b.dataset.start = start;
  b.dataset.end = end;
  b.textContent = articleLabel(source.article) + ": “" + quote + "”";
  b.addEventListener("click", () => select(b));
  return b;
}

function showBriefing(result) {
  briefing = result;
  const summary = $("brief-summary");
  summary.replaceChildren();
  for (const s of result.summary) {
    const li = document.createElement("li");
    const b = sourceButton(s, s.quote, s.start, s.end);
    b.classList.add("summary-source");
    li.appendChild(b);
    summary.appendChild(li);
  }
  const failed = $("brief-failed");
  failed.replaceChildren();
  for (const f of result.failed) {
    const li = document.createElement("li");
    li.className = "failed";
    li.textContent = "failed: " + f.id + ": " + f.message;
    failed.appendChild(li);
  }
  const body = $("brief-items");
  body.replaceChildren();
  for (const item of result.items) {
    const row = document.createElement("tr");
    row.className = "brief-item";
    row.dataset.item = item.id;
    const who = document.createElement("td");
    who.textContent = item.actor;
    const what = document.createElement("td");
    what.textContent = item.kind + ": " + item.claim;
    if (item.single_source) what.appendChild(badge("only in " + articleLabel(item.carried_by[0]), "single"));
    else if (item.missing_from.length) what.appendChild(badge("not in " + item.missing_from.map(articleLabel).join(", "), "single"));
    if (item.conflict) what.appendChild(badge("conflicting stances", "conflict"));
    if (item.conditions_differ) {
      what.appendChild(badge("conditions differ", "conditions"));
      const sides = document.createElement("div");
      sides.className = "sides";
      for (const s of item.sources) {
        const cell = document.createElement("div");
        cell.textContent = articleLabel(s.article) + ": " + (s.conditions || "(no condition)");
        sides.appendChild(cell);
      }
      what.appendChild(sides);
    }
    const sources = document.createElement("td");
    for (const s of item.sources) {
      sources.appendChild(sourceButton(s, s.quote, s.start, s.end));
      for (const more of s.also) sources.appendChild(sourceButton(s, more.quote, more.start, more.end));
    }
    row.append(who, what, sources);
    body.appendChild(row);
  }
  if (result.articles.length) showBriefText(result.articles[0].id, 0, 0);
  $("brief-output").hidden = false;
}

async function submitBriefing() {
  $("brief-error").textContent = "";
  $("brief-status").textContent = "working…";
  $("brief-submit").disabled = true;
  const articles = [...document.querySelectorAll(".brief-article")].map((box, i) => {
    const article = { id: box.dataset.id || "article-" + (i + 1), text: box.querySelector("textarea").value };
    const outlet = box.querySelector("input").value.trim();
    if (outlet) article.outlet = outlet;
    return article;
  });
  try {
    showBriefing(await call("POST", "/v1/briefings", { articles }));
    $("brief-status").textContent = "done";
  } catch (e) {
    $("brief-error").textContent = e.message;
    $("brief-status").textContent = "";
  } finally {
    $("brief-submit").disabled = false;
  }
}

$("brief-add").addEventListener("click", () => addBriefArticle());
$("brief-seeds").addEventListener("click", useSeeds);
$("brief-submit").addEventListener("click", submitBriefing);
addBriefArticle();
addBriefArticle();
