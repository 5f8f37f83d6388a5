"""The HTTP API with the model-free pipeline (lead + rules): endpoints, errors, batching, cache."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

import service.batcher
from service.api import create_app
from service.cli import main
from service.errors import ModelError
from service.pipeline import Pipeline
from service.settings import Settings
from service.stages import Work
from tests.conftest import SEEDS

SEED = {"id": SEEDS[0].stem, "text": SEEDS[0].read_text(encoding="utf-8")}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(cache_dir=tmp_path, **overrides)


class GatedPipeline(Pipeline):
    """The model-free pipeline; each run records its article ids, then waits for the gate."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings=settings)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: list[list[str | None]] = []

    async def warm_up(self, client: httpx.AsyncClient) -> None:
        """One run with the gate open, so the batcher has timed an article (and admits by
        measured cost); then the gate is closed again and the record cleared."""
        self.gate.set()
        assert (await client.post("/v1/summaries", json=article(999))).status_code == 200
        self.gate.clear()
        self.started.clear()
        self.calls.clear()

    def prepare(self, inputs):  # type: ignore[no-untyped-def]
        self.calls.append([a.id for a in inputs])
        self.started.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().prepare(inputs)


class SpyPipeline(Pipeline):
    """Counts the articles that were really summarized (not answered from the cache)."""

    summarized = 0

    def finish(self, prepared, **kwargs):  # type: ignore[no-untyped-def]
        self.summarized += sum(isinstance(w, Work) for w in prepared)
        return super().finish(prepared, **kwargs)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        yield c


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    message: str = body["error"]["message"]
    assert "Traceback" not in message
    return message


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


async def async_wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def article(i: int) -> dict[str, str]:
    return {
        "id": f"a{i}",
        "text": f"Story {i}. The union demanded a raise of {i} percent from the city council. "
        "The mayor said she opposes any raise this year because the budget is tight.",
    }


# Endpoints ---------------------------------------------------------------------------------
def test_summary_has_grounded_items(client: TestClient) -> None:
    response = client.post("/v1/summaries", json=SEED)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["id"] == SEED["id"] and result["summary"]
    assert result["demands"] and result["positions"]
    for item in result["demands"] + result["positions"]:
        assert result["text"][item["start"] : item["end"]] == item["quote"]


def test_options_and_html_input(client: TestClient) -> None:
    html = "<html><body><article><p>" + SEED["text"].replace("\n", "</p><p>") + "</p></article>"
    result = client.post(
        "/v1/summaries",
        json={"html": html, "options": {"extraction": False, "summary_sentences": 1}},
    ).json()
    assert result["demands"] == [] and result["positions"] == []
    assert result["summary"]


def test_batch_answers_in_order_with_per_article_errors(client: TestClient) -> None:
    articles = [article(1), {"id": "empty", "text": "   "}, article(2)]
    response = client.post("/v1/summaries/batch", json={"articles": articles})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert [results[0]["result"]["id"], results[2]["result"]["id"]] == ["a1", "a2"]
    assert results[1]["error"] == {"status": 422, "message": "the article has no text"}


def test_batch_limits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_batch_articles=2)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        too_many = {"articles": [article(1), article(2), article(3)]}
        assert "limit is 2" in error_of(c.post("/v1/summaries/batch", json=too_many), 422)
        error_of(c.post("/v1/summaries/batch", json={"articles": []}), 422)


def test_health_ready_seeds_page_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "model": "none"}
    seeds = client.get("/v1/seeds").json()
    assert [s["id"] for s in seeds] == [p.stem for p in SEEDS]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="article"' in page.text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    examples = schema["paths"]["/v1/summaries"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    assert examples[SEED["id"]]["value"]["text"] == SEED["text"]


# Errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"text": ""}, "no text"),
        ({"text": "   \n "}, "no text"),
        ({"text": "a", "html": "<p>b</p>"}, "exactly one"),
        ({}, "exactly one"),
        ({"text": 42}, "text"),
        ({"text": "ok", "options": {"summary_sentences": 0}}, "summary_sentences"),
        ({"text": "ok", "colour": "red"}, "colour"),
        ([1, 2], "body"),
    ],
)
def test_invalid_input_is_422(client: TestClient, body: Any, needle: str) -> None:
    assert needle in error_of(client.post("/v1/summaries", json=body), 422)


def test_broken_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/summaries", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    error_of(response, 422)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (
            b'{"text": "'
            + b"x" * 10
            + b'", "options": '
            + b'{"a":' * 50_000
            + b"1"
            + b"}" * 50_001,
            "nested too deeply",
        ),
        ('{"text": "café"}'.encode("latin-1"), "not UTF-8"),
    ],
)
def test_an_unreadable_body_is_400_saying_why(client: TestClient, body: bytes, needle: str) -> None:
    response = client.post(
        "/v1/summaries", content=body, headers={"content-type": "application/json"}
    )
    assert needle in error_of(response, 400)


def test_text_over_max_chars_is_422(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_chars=100)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        assert "limit is 100" in error_of(c.post("/v1/summaries", json={"text": "word " * 60}), 422)


def test_an_article_over_max_article_tokens_is_422_naming_the_limit(tmp_path: Path) -> None:
    """Every door: a single request, a batch's row, a briefing's failed article."""
    settings = make_settings(tmp_path, max_article_tokens=500)
    long = {"id": "long", "text": article(1)["text"] * 40}  # about 1,000 tokens
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        message = error_of(c.post("/v1/summaries", json=long), 422)
        assert "limit is 500" in message and "STANDPOINT_MAX_ARTICLE_TOKENS" in message
        rows = c.post("/v1/summaries/batch", json={"articles": [long, article(2)]}).json()
        assert rows["results"][0]["error"]["status"] == 422
        assert "limit is 500" in rows["results"][0]["error"]["message"]
        assert rows["results"][1]["ok"] is True
        briefing = c.post("/v1/briefings", json={"articles": [long, article(2), article(3)]})
        assert [f["id"] for f in briefing.json()["failed"]] == ["long"]


def test_body_over_limit_is_413_with_or_without_content_length(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=2048)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        big = json.dumps({"text": "word " * 1000}).encode()
        error_of(c.post("/v1/summaries", content=big), 413)

        def chunks() -> Iterator[bytes]:  # streamed: no Content-Length header
            yield from (big[i : i + 500] for i in range(0, len(big), 500))

        error_of(c.post("/v1/summaries", content=chunks()), 413)
        assert c.post("/v1/summaries", json=article(1)).status_code == 200


def test_unknown_route_and_method(client: TestClient) -> None:
    error_of(client.get("/nowhere"), 404)
    error_of(client.delete("/v1/summaries"), 405)


def test_model_error_is_503(tmp_path: Path) -> None:
    class Broken(Pipeline):
        def finish(self, prepared, **kwargs):  # type: ignore[no-untyped-def]
            return [ModelError("the model failed: timeout") for _ in prepared]

    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, Broken(settings=settings))) as c:
        assert error_of(c.post("/v1/summaries", json=article(1)), 503) == (
            "the model failed: timeout"
        )


def test_unexpected_exception_is_a_generic_500_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Crashing(Pipeline):
        def prepare(self, inputs):  # type: ignore[no-untyped-def]
            raise RuntimeError("secret internals at /srv/db")

    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, Crashing(settings=settings))) as c:
        response = c.post("/v1/summaries", json=article(1))
        message = error_of(response, 500)
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert message == "internal server error; it has been logged"
    assert any("secret internals" in r.getMessage() or r.exc_info for r in caplog.records)


def test_not_ready_until_the_pipeline_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = threading.Event()

    def slow_load(settings: Settings, *, load_model: bool = False) -> Pipeline:
        assert loaded.wait(10)
        return Pipeline(settings=settings)

    monkeypatch.setattr(service.api, "build_pipeline", slow_load)
    with TestClient(create_app(make_settings(tmp_path))) as c:
        assert "loading" in error_of(c.get("/readyz"), 503)
        error_of(c.post("/v1/summaries", json=article(1)), 503)
        assert c.get("/healthz").status_code == 200
        loaded.set()
        wait_until(lambda: c.get("/readyz").status_code == 200)
        assert c.post("/v1/summaries", json=article(1)).status_code == 200


def test_a_model_that_fails_to_load_keeps_readyz_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_load(settings: Settings, *, load_model: bool = False) -> Pipeline:
        raise ModelError("no weights at /models/x")

    monkeypatch.setattr(service.api, "build_pipeline", failing_load)
    with TestClient(create_app(make_settings(tmp_path))) as c:
        wait_until(lambda: "failed" in c.get("/readyz").text)
        assert "no weights" in error_of(c.get("/readyz"), 503)
        assert "no weights" in error_of(c.post("/v1/summaries", json=article(1)), 503)


def test_the_server_leaves_one_core_to_the_http_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unless STANDPOINT_THREADS says otherwise, the model gets all cores but one (the plan of
    service.machine, applied when the model loads, as at every door): with torch on every core,
    the event loop's own work made its threads wait on each other (one article of model-write +
    model-json took 410 s with 2 threads and 56 s with 1, on 2 cores)."""
    import os

    from service.machine import thread_plan

    seen: list[Settings] = []

    def record(settings: Settings, *, load_model: bool = False) -> Pipeline:
        seen.append(settings)
        return Pipeline(settings=settings)

    monkeypatch.setattr(service.api, "build_pipeline", record)
    with TestClient(create_app(make_settings(tmp_path))) as c:
        wait_until(lambda: c.get("/readyz").status_code == 200)
    with TestClient(create_app(make_settings(tmp_path, threads=3))) as c:
        wait_until(lambda: c.get("/readyz").status_code == 200)
    plans = [thread_plan(s.threads, environ={}).threads for s in seen]
    assert plans == [max(1, len(os.sched_getaffinity(0)) - 1), 3]


# Security ----------------------------------------------------------------------------------
def test_api_key_when_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key="s3cret-key-123")
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        missing = c.post("/v1/summaries", json=article(1))
        error_of(missing, 401)
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer nope"}
        error_of(c.post("/v1/summaries", json=article(1), headers=wrong), 401)
        error_of(c.get("/metrics", headers=wrong), 401)
        right = {"Authorization": "Bearer s3cret-key-123"}
        assert c.post("/v1/summaries", json=article(1), headers=right).status_code == 200
        assert c.get("/v1/seeds", headers=right).status_code == 200
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/").status_code == 200


@pytest.mark.parametrize("path", ["/v1/summaries", "/v1/summaries/batch", "/v1/briefings"])
def test_the_key_is_checked_before_the_body(tmp_path: Path, path: str) -> None:
    """Without the key, no body is read: broken JSON, an invalid body, the wrong content type
    or bytes that are not UTF-8 all get 401, so nobody learns the API's shape without it."""
    settings = make_settings(tmp_path, api_key="s3cret-key-123")
    json_type = {"content-type": "application/json"}
    bodies = [
        {"content": b"{not json", "headers": json_type},
        {"json": {"bogus": 1}},
        {"json": {"articles": "none"}},
        {"content": b"text=1", "headers": {"content-type": "text/plain"}},
        {"content": b'{"text": "\xff\xfe"}', "headers": json_type},
    ]
    wrong = {"Authorization": "Bearer nope"}
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        for body in bodies:
            for extra in ({}, wrong):
                headers = {**body.get("headers", {}), **extra}
                response = c.post(path, **{**body, "headers": headers})
                assert "API key" in error_of(response, 401), body
                assert response.headers["www-authenticate"] == "Bearer"
        right = {**json_type, "Authorization": "Bearer s3cret-key-123"}
        error_of(c.post(path, content=b"{not json", headers=right), 422)


def test_no_api_key_means_open(client: TestClient) -> None:
    assert client.post("/v1/summaries", json=article(1)).status_code == 200
    assert client.get("/metrics").status_code == 200


def test_metrics_key_is_a_setting(tmp_path: Path) -> None:
    right = {"Authorization": "Bearer s3cret-key-123"}
    settings = make_settings(tmp_path, api_key="s3cret-key-123")
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        error_of(c.get("/metrics"), 401)
        assert c.get("/metrics", headers=right).status_code == 200
    settings = make_settings(tmp_path, api_key="s3cret-key-123", metrics_require_key=False)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        assert c.get("/metrics").status_code == 200
        error_of(c.get("/v1/seeds"), 401)
        error_of(c.post("/v1/summaries", json=article(1)), 401)


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_security_headers_on_every_response(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=1024)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        responses = [
            c.get("/"),
            c.get("/docs"),
            c.get("/v1/seeds"),
            c.get("/nowhere"),
            c.post("/v1/summaries", json=article(1)),
            c.post("/v1/summaries", json={"text": ""}),
            c.post("/v1/summaries", content=b"x" * 2048),
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 422, 413]
    for response in responses:
        assert_security_headers(response)
    page_policy = responses[0].headers["content-security-policy"]
    assert "style-src 'self';" in page_policy  # the page needs no inline style either


def local_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_the_page_has_no_inline_script_or_style(client: TestClient) -> None:
    page = client.get("/").text
    assert "<style" not in page and " style=" not in page
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assets = local_assets(page)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for url in assets:
        assert url.startswith("/static/"), url
        assert client.get(url).status_code == 200, url


def test_docs_are_served_from_the_package_not_a_cdn(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "http" not in docs.text.replace('xmlns="http', "")  # nothing from elsewhere
    assets = local_assets(docs.text)
    assert any("swagger-ui-bundle.js" in a for a in assets)
    for url in assets:
        response = client.get(url)
        assert response.status_code == 200 and len(response.content) > 100, url
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", docs.text) == []
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN


def test_head_is_answered_like_get(client: TestClient) -> None:
    for path in ("/", "/healthz", "/docs", "/static/app.js"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == str(len(got.content))
    assert client.head("/nowhere").status_code == 404
    assert client.head("/v1/summaries").status_code == 405
    metrics = client.get("/metrics").text
    assert 'method="HEAD",route="/",status="200"' in metrics


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_with_the_wrong_content_type_gets_a_hint(
    client: TestClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps(article(1)).encode()
    message = error_of(client.post("/v1/summaries", content=body, headers=headers), 422)
    assert "Content-Type: application/json" in message
    assert (content_type or "no Content-Type") in message
    batch = json.dumps({"articles": [article(1)]}).encode()
    message = error_of(client.post("/v1/summaries/batch", content=batch, headers=headers), 422)
    assert "Content-Type: application/json" in message


def test_json_content_types_get_no_hint(client: TestClient) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8"):
        response = client.post(
            "/v1/summaries", content=b'{"text": 1}', headers={"content-type": content_type}
        )
        assert "Content-Type" not in error_of(response, 422)


def test_cors_only_when_configured(tmp_path: Path) -> None:
    preflight = {
        "Origin": "http://news.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        response = c.options("/v1/summaries", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    settings = make_settings(tmp_path, cors_origins=["http://news.example"])
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        response = c.options("/v1/summaries", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "http://news.example"


def test_settings_refuse_bad_values(tmp_path: Path) -> None:
    for bad in ({"port": 0}, {"queue_size": 0}, {"api_key": "short"}, {"request_timeout_s": 0}):
        with pytest.raises(ValueError):
            make_settings(tmp_path, **bad)
    assert Settings(cors_origins="http://a, http://b").cors_origins == ["http://a", "http://b"]  # type: ignore[arg-type]


def test_serve_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    assert main(["serve"]) == 0
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8000)
    assert main(["serve", "--port", "8123", "--summarizer", "centrality"]) == 0
    assert seen["port"] == 8123
    assert seen["app"].state.settings.summarizer == "centrality"


# Cache and metrics -------------------------------------------------------------------------
def test_a_repeated_article_comes_from_the_cache_across_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "elsewhere", cache_path=tmp_path / "shared.sqlite")
    first_pipeline = SpyPipeline(settings=settings)
    with TestClient(create_app(settings, first_pipeline)) as c:
        first = c.post("/v1/summaries", json=SEED).json()
    assert first_pipeline.summarized == 1
    assert (tmp_path / "shared.sqlite").exists()

    second_pipeline = SpyPipeline(settings=settings)
    with TestClient(create_app(settings, second_pipeline)) as c:
        again = c.post("/v1/summaries", json={**SEED, "id": "renamed"}).json()
        metrics = c.get("/metrics").text
    assert second_pipeline.summarized == 0
    assert again == {**first, "id": "renamed"}
    assert "standpoint_cache_hits_total 1.0" in metrics
    assert "standpoint_cache_misses_total 0.0" in metrics


def test_metrics_count_requests_latency_queue_tokens_and_cache(client: TestClient) -> None:
    client.post("/v1/summaries", json=article(1))
    client.post("/v1/summaries", json=article(1))
    client.post("/v1/summaries", json={"text": ""})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in [
        'standpoint_http_requests_total{method="POST",route="/v1/summaries",status="200"} 2.0',
        'standpoint_http_requests_total{method="POST",route="/v1/summaries",status="422"} 1.0',
        'standpoint_http_request_duration_seconds_count{route="/v1/summaries"} 3.0',
        "standpoint_queue_depth 0.0",
        "standpoint_generated_tokens_total 0.0",
        "standpoint_prompt_tokens_total 0.0",
        "standpoint_cache_hits_total 1.0",
        "standpoint_cache_misses_total 1.0",
        'standpoint_articles_total{outcome="ok"} 2.0',
        'standpoint_articles_total{outcome="error"} 1.0',
        "standpoint_batch_articles_count 3.0",
    ]:
        assert line in text, line


# Fuzz --------------------------------------------------------------------------------------
# The fast tier runs a sample; the `fuzz` tier (make test) runs over 1,000 cases in all.
FUZZ_EXAMPLES = 50  # per operation and generation mode
FULL_FUZZ_EXAMPLES = 120
HOSTILE_EXAMPLES = 25  # per kind (surrogates, deep nesting)
FULL_HOSTILE_EXAMPLES = 150


def fuzz_app(tmp_path: Path) -> FastAPI:
    settings = make_settings(tmp_path, max_chars=20_000)
    return create_app(settings, Pipeline(settings=settings))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_against_the_openapi_schema_never_gives_a_5xx(
    tmp_path: Path, mode: GenerationMode
) -> None:
    """Schemathesis requests from the app's own schema: no 5xx, and responses match the schema."""
    from service.embedding import embed

    embed(["/v1/briefings embeds: load the model before the requests' 10 s timeouts run"])
    ran = _fuzz_schema(fuzz_app(tmp_path), modes=[mode], examples=FUZZ_EXAMPLES)
    print(f"fuzz {mode}: {sum(ran.values())} cases: {dict(ran)}")
    assert len(ran) >= 4 and all(n > 0 for n in ran.values())


def test_hostile_bodies_never_give_a_5xx(tmp_path: Path) -> None:
    """Lone surrogates (as JSON escapes) in every field, and nesting up to 100,000 deep."""
    with TestClient(fuzz_app(tmp_path)) as client:
        ran = _fuzz_hostile(client, examples=HOSTILE_EXAMPLES)
    print(f"hostile: {dict(ran)}")
    assert min(ran.values()) >= HOSTILE_EXAMPLES // 2


@pytest.mark.fuzz
def test_over_a_thousand_fuzz_cases_never_give_a_5xx(tmp_path: Path) -> None:
    """The full run: schemathesis in both modes plus the hostile bodies, over 1,000 requests."""
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    ran = _fuzz_schema(fuzz_app(tmp_path / "schema"), modes=modes, examples=FULL_FUZZ_EXAMPLES)
    with TestClient(fuzz_app(tmp_path / "hostile")) as client:
        hostile = _fuzz_hostile(client, examples=FULL_HOSTILE_EXAMPLES)
    print(f"fuzz: {sum(ran.values())} schema cases {dict(ran)}; hostile {dict(hostile)}")
    assert hostile["surrogates"] >= 100 and hostile["deep nesting"] >= 100
    assert sum(ran.values()) + sum(hostile.values()) >= 1000


def _fuzz_schema(app: FastAPI, *, modes: list[GenerationMode], examples: int) -> Counter[str]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ran: Counter[str] = Counter()
    for mode in modes:
        for found in schema.get_all_operations():
            operation = found.ok()
            inputs = [operation.body, operation.query, operation.headers, operation.path_parameters]
            if mode is GenerationMode.NEGATIVE and not any(len(i) for i in inputs):
                continue  # nothing to make invalid (GET /healthz, GET /readyz)
            _fuzz_operation(operation, mode=mode, ran=ran, examples=examples)()
    return ran


def _fuzz_operation(
    operation: Any, *, mode: GenerationMode, ran: Counter[str], examples: int
) -> Any:
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def fuzz(case: Any) -> None:
        ran[f"{mode.value} {operation.label}"] += 1
        case.call_and_validate(checks=checks)

    return fuzz


# Schemathesis never sends lone surrogates (it encodes strings for the wire) nor deep nesting,
# so these bodies are built here, as the raw JSON bytes a hostile client sends.
ENDPOINTS = ["/v1/summaries", "/v1/summaries/batch"]
GOOD = {"id": "good", "text": "The union demanded a raise from the city council on Monday."}
surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
with_surrogate = st.tuples(st.text(max_size=30), surrogate, st.text(max_size=30)).map("".join)


@st.composite
def surrogate_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    bad = draw(with_surrogate)
    article: dict[str, Any] = dict(GOOD)
    where = draw(st.sampled_from(["text", "html", "id", "option", "option name", "field name"]))
    if where == "text":
        article["text"] = GOOD["text"] + " " + bad
    elif where == "html":
        del article["text"]
        article["html"] = f"<p>{GOOD['text']}</p><p>{bad}</p>"
    elif where == "id":
        article["id"] = bad
    elif where == "option":
        article["options"] = {"summary_sentences": bad}
    elif where == "option name":
        article["options"] = {bad: True}
    else:
        article[bad] = "x"
    endpoint = draw(st.sampled_from(ENDPOINTS))
    body = article if endpoint == ENDPOINTS[0] else {"articles": [GOOD, article]}
    return endpoint, json.dumps(body).encode()  # ASCII: the surrogate travels as \udXXX


@st.composite
def deep_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    depth = draw(st.one_of(st.integers(1, 3000), st.sampled_from([10_000, 100_000])))
    if draw(st.booleans()):
        nested = "[" * depth + "]" * depth
    else:
        nested = '{"a":' * depth + "1" + "}" * depth
    template = draw(
        st.sampled_from(
            [
                "%s",
                '{"text": %s}',
                '{"id": %s, "text": "A raise was demanded."}',
                '{"text": "A raise was demanded.", "options": %s}',
                '{"articles": %s}',
                '{"articles": [%s]}',
            ]
        )
    )
    return draw(st.sampled_from(ENDPOINTS)), (template % nested).encode()


def _fuzz_hostile(client: TestClient, *, examples: int) -> Counter[str]:
    ran: Counter[str] = Counter()
    settings = hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )

    def check(kind: str, endpoint: str, body: bytes) -> None:
        ran[kind] += 1
        response = client.post(endpoint, content=body, headers={"content-type": "application/json"})
        assert response.status_code < 500, (kind, body[:200], response.text[:300])
        if response.status_code >= 400:
            error_of(response, response.status_code)

    @settings
    @hypothesis.given(case=surrogate_bodies())
    def surrogates(case: tuple[str, bytes]) -> None:
        check("surrogates", *case)

    @settings
    @hypothesis.given(case=deep_bodies())
    def deep(case: tuple[str, bytes]) -> None:
        check("deep nesting", *case)

    surrogates()
    deep()
    return ran
