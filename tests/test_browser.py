"""The page at / in headless Chromium (Debian's /usr/bin/chromium), against a real server.

Needs `apt-get install -y chromium` (see `make browser`); fails, never skips, without it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from service.api import create_app
from service.pipeline import Pipeline
from service.settings import Settings
from tests.conftest import SEEDS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    app = create_app(settings, Pipeline(settings=settings))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(Settings(cache_dir=tmp_path_factory.mktemp("cache"))) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: run `apt-get install -y chromium`"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """What a page tried to fetch from elsewhere, and what its console complained about."""

    external: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def offline_page(browser: Browser, watched: Watched) -> Page:
    """A page that can reach only this machine (as with no network), and reports the rest."""
    page = browser.new_page()
    page.set_default_timeout(15_000)

    def route(request: Route) -> None:
        if request.request.url.startswith("http://127.0.0.1:"):
            request.continue_()
        else:
            watched.external.append(request.request.url)
            request.abort()

    page.route("**/*", route)
    page.on(
        "console",
        lambda m: watched.console_errors.append(m.text) if m.type == "error" else None,
    )
    return page


@pytest.fixture(scope="module")
def watched() -> Watched:
    return Watched()


@pytest.fixture(scope="module")
def page(browser: Browser, watched: Watched) -> Iterator[Page]:
    page = offline_page(browser, watched)
    yield page
    page.close()


def test_seed_summary_table_and_quote_highlight(page: Page, server_url: str) -> None:
    page.goto(server_url + "/")
    seed = SEEDS[0]
    page.click(f"button.seed[data-seed='{seed.stem}']")
    assert page.input_value("#article") == seed.read_text(encoding="utf-8")
    with page.expect_response("**/v1/summaries") as answer:
        page.click("#submit")
    result = answer.value.json()
    expect(page.locator("#status")).to_have_text("done")
    expect(page.locator("#summary")).to_have_text(result["summary"])

    items = sorted(result["demands"] + result["positions"], key=lambda item: item["start"])
    rows = page.locator("#items tr.item")
    expect(rows).to_have_count(len(items))
    assert len(items) >= 2
    expect(page.locator("#text mark")).to_have_count(0)
    for index in (0, len(items) - 1):
        item = items[index]
        rows.nth(index).click()
        expect(rows.nth(index)).to_have_class(re.compile(r"\bselected\b"))
        mark = page.locator("#text mark")
        expect(mark).to_have_count(1)
        assert mark.text_content() == item["quote"]
        assert result["text"][item["start"] : item["end"]] == item["quote"]
        # the mark sits exactly at the item's offsets: the text before it is text[:start]
        before = page.evaluate("document.getElementById('text').firstChild.textContent")
        assert before == result["text"][: item["start"]]


def test_errors_are_shown_not_thrown(page: Page, server_url: str) -> None:
    page.goto(server_url + "/")
    page.fill("#article", "   ")
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("422")
    expect(page.locator("#error")).to_contain_text("no text")


def test_the_page_breaks_no_content_security_rule(page: Page, server_url: str, watched: Watched):
    page.goto(server_url + "/")
    expect(page.locator("button.seed")).to_have_count(len(SEEDS))
    page.click("button.seed")
    with page.expect_response("**/v1/summaries"):
        page.click("#submit")
    expect(page.locator("#status")).to_have_text("done")
    assert watched.external == []
    assert [e for e in watched.console_errors if "Content Security Policy" in e] == []


def test_docs_render_offline_from_the_package(browser: Browser, server_url: str) -> None:
    watched = Watched()
    page = offline_page(browser, watched)
    try:
        page.goto(server_url + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("standpoint")
        paths = page.locator(".opblock-summary-path")
        expect(paths.filter(has_text="/v1/summaries/batch")).to_have_count(1)
    finally:
        page.close()
    assert watched.external == []
    assert [e for e in watched.console_errors if "Content Security Policy" in e] == []


def test_with_an_api_key_the_page_asks_for_it_then_loads_the_seeds(
    browser: Browser, tmp_path: Path
) -> None:
    settings = Settings(cache_dir=tmp_path, api_key="s3cret-key-123")
    watched = Watched()
    with serving(settings) as url:
        page = offline_page(browser, watched)
        try:
            page.goto(url + "/")
            expect(page.locator("#error")).to_contain_text("needs an API key")
            expect(page.locator("button.seed")).to_have_count(0)
            page.fill("#apikey", "s3cret-key-123")
            page.press("#apikey", "Enter")
            expect(page.locator("button.seed")).to_have_count(len(SEEDS))
            expect(page.locator("#error")).to_have_text("")
            page.click("button.seed")
            with page.expect_response("**/v1/summaries") as answer:
                page.click("#submit")
            assert answer.value.status == 200
            expect(page.locator("#status")).to_have_text("done")
        finally:
            page.close()


def test_briefing_of_the_seeds_shows_merged_items_and_highlights_each_source(
    page: Page, server_url: str
) -> None:
    from service.embedding import embed

    embed(["load the sentence-embedding model before the clock starts"])  # same process
    page.goto(server_url + "/")
    page.click("#brief-seeds")
    texts = page.locator(".brief-article textarea")
    expect(texts).to_have_count(len(SEEDS))
    for i, seed in enumerate(SEEDS):  # the page starts with empty boxes; the seeds arrive later
        expect(texts.nth(i)).to_have_value(seed.read_text(encoding="utf-8"))
    with page.expect_response("**/v1/briefings", timeout=60_000) as answer:
        page.click("#brief-submit")
    briefing = answer.value.json()
    expect(page.locator("#brief-status")).to_have_text("done")
    articles = {a["id"]: a["text"] for a in briefing["articles"]}
    assert list(articles) == [s.stem for s in SEEDS]

    rows = page.locator("#brief-items tr.brief-item")
    expect(rows).to_have_count(len(briefing["items"]))
    singles = sum(item["single_source"] for item in briefing["items"])
    assert singles >= 1
    expect(page.locator("#brief-items .badge.single")).to_have_count(singles)
    expect(page.locator("#brief-summary li")).to_have_count(len(briefing["summary"]))

    index, item = next((i, it) for i, it in enumerate(briefing["items"]) if len(it["sources"]) > 1)
    for position, source in enumerate(item["sources"]):
        button = rows.nth(index).locator("button.source").nth(position)
        button.click()
        expect(button).to_have_class(re.compile(r"\bselected\b"))
        expect(page.locator("#brief-text-title")).to_contain_text(source["article"])
        mark = page.locator("#brief-text mark")
        expect(mark).to_have_count(1)
        assert mark.text_content() == source["quote"]
        text = articles[source["article"]]
        assert text[source["start"] : source["end"]] == source["quote"]
        before = page.evaluate("document.getElementById('brief-text').firstChild.textContent")
        assert before == text[: source["start"]]


# Offsets count code points; JavaScript strings count UTF-16 units ----------------------------
ASTRAL = "Filed at dawn 😀😀😀😀😀😀, with 𝐀𝐁𝐂 and 𠀀𠀁 in the headline.\n"  # each 2 units in JS
REPORTS = [
    ASTRAL + "Union leader Maria Lopez demanded a 5% raise from the city council before the "
    "strike ends. Mayor Jane Smith said she opposes any raise this year because the budget "
    "is tight.",
    "🎉🎉 Update 🇫🇷 at noon.\nMaria Lopez, the union leader, demanded a 5% raise from the city "
    "council. “We will strike until the council agrees,” Lopez said. Mayor Jane Smith said "
    "she opposes any raise.",
]


def test_highlights_land_on_the_quote_after_emoji_and_other_astral_characters(
    page: Page, server_url: str
) -> None:
    """Before, six emoji before a quote moved its highlight six characters early."""
    page.goto(server_url + "/")
    page.fill("#article", REPORTS[0])
    with page.expect_response("**/v1/summaries") as answer:
        page.click("#submit")
    result = answer.value.json()
    expect(page.locator("#status")).to_have_text("done")
    items = sorted(result["demands"] + result["positions"], key=lambda item: item["start"])
    assert len(items) >= 2 and result["text"].startswith("Filed at dawn 😀")
    rows = page.locator("#items tr.item")
    for index, item in enumerate(items):
        rows.nth(index).click()
        mark = page.locator("#text mark")
        expect(mark).to_have_count(1)
        assert mark.text_content() == item["quote"] == result["text"][item["start"] : item["end"]]
        before = page.evaluate("document.getElementById('text').firstChild.textContent")
        assert before == result["text"][: item["start"]]


def test_briefing_highlights_land_on_the_quote_after_astral_characters(
    page: Page, server_url: str
) -> None:
    from service.embedding import embed

    embed(["load the sentence-embedding model before the clock starts"])  # same process
    page.goto(server_url + "/")
    boxes = page.locator(".brief-article textarea")
    expect(boxes).to_have_count(2)
    for i, report in enumerate(REPORTS):
        boxes.nth(i).fill(report)
    with page.expect_response("**/v1/briefings", timeout=60_000) as answer:
        page.click("#brief-submit")
    briefing = answer.value.json()
    expect(page.locator("#brief-status")).to_have_text("done")
    articles = {a["id"]: a["text"] for a in briefing["articles"]}
    sources = [s for item in briefing["items"] for s in item["sources"]]
    assert len(sources) >= 3 and briefing["summary"]
    buttons = page.locator("#briefing button.source")  # the summary's sentences and the items'
    expect(buttons).to_have_count(
        len(briefing["summary"]) + len(sources) + sum(len(s["also"]) for s in sources)
    )
    for position in range(buttons.count()):
        button = buttons.nth(position)
        button.click()
        text = articles[str(button.get_attribute("data-article"))]
        start = int(button.get_attribute("data-start") or 0)
        end = int(button.get_attribute("data-end") or 0)
        mark = page.locator("#brief-text mark")
        expect(mark).to_have_count(1)
        assert mark.text_content() == text[start:end]
        before = page.evaluate("document.getElementById('brief-text').firstChild.textContent")
        assert before == text[:start]
