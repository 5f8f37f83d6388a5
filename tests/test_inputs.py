"""One input model for every door: summarize, batch, the API, summarize_many (Ray: test_ray).

Each article succeeds or fails on its own, whatever its neighbours are, and the same row gets
the same answer at every door: unknown fields are refused, ``options`` are honoured, integer
ids become strings, and text that is not valid Unicode (a lone surrogate) is refused.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service import summarize_many
from service.api import create_app
from service.cache import ResultCache
from service.cli import parser
from service.errors import InputError, StandpointError
from service.pipeline import Pipeline
from service.schemas import Result
from service.settings import Settings
from tests.conftest import ROOT

TEXT = (
    "Union leader Maria Lopez demanded higher wages from the city council. "
    "Mayor John Smith said he opposes the plan because the budget is tight."
)
SURROGATE = json.loads('"The union demanded \\ud800 wages. The mayor said no."')
ROWS: list[dict[str, Any]] = [
    {"id": 7, "text": TEXT},
    {"id": "u", "text": TEXT, "colour": "red"},
    {"id": "o", "text": TEXT, "options": {"extraction": False}},
    {"id": "s", "text": SURROGATE},
    {"id": "g", "text": TEXT},
]
# What every door must answer, row by row: ("ok", items found) or ("error", words in it).
EXPECTED = {
    "7": ("ok", True),
    "u": ("error", "colour"),
    "o": ("ok", False),
    "s": ("error", "surrogate"),
    "g": ("ok", True),
}


def outcome(result: Result | StandpointError | dict[str, Any]) -> tuple[str, Any]:
    if isinstance(result, StandpointError):
        return "error", result.message
    data = result.model_dump() if isinstance(result, Result) else result
    if "error" in data:
        error = data["error"]
        return "error", error["message"] if isinstance(error, dict) else error
    return "ok", bool(data["demands"] or data["positions"])


def check(answers: dict[str, tuple[str, Any]]) -> None:
    assert list(answers) == list(EXPECTED)
    for key, (kind, detail) in EXPECTED.items():
        got_kind, got = answers[key]
        assert got_kind == kind, (key, got)
        if kind == "ok":
            assert got == detail, key
        else:
            assert detail in got, (key, got)


def write_rows(path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))  # surrogate as \ud800
    return path


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDPOINT_CACHE_DIR", str(tmp_path / "cache-dir"))


# The doors --------------------------------------------------------------------------------
def test_summarize_many_with_the_cache(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "results.sqlite")
    results = summarize_many(ROWS, settings=Settings(cache_dir=tmp_path), cache=cache)
    answers = {str(row["id"]): outcome(r) for row, r in zip(ROWS, results, strict=True)}
    check(answers)
    assert isinstance(results[3], InputError) and results[3].status_code == 422
    assert [r.id for r in results if isinstance(r, Result)] == ["7", "o", "g"]


def test_standpoint_batch(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    argv = ["batch", str(write_rows(tmp_path / "in.jsonl")), "-o", str(output), "--no-progress"]
    args = parser().parse_args(argv)

    assert args.handler(args) == 2

    rows = [json.loads(line) for line in output.read_text().splitlines()]
    check({r["id"]: outcome(r) for r in rows})


def test_standpoint_summarize(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "summarize", str(write_rows(tmp_path / "in.jsonl"))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    answers = {r["id"]: outcome(r) for r in map(json.loads, done.stdout.splitlines())}
    for line in done.stderr.splitlines():  # standpoint: <id or FILE:LINE>: <message>
        _, where, message = line.split(": ", 2)
        if where.startswith("in.jsonl:"):  # refused as it was read: named by its line
            where = str(ROWS[int(where.split(":")[1]) - 1]["id"])
        answers[where] = ("error", message)
    check({key: answers[key] for key in EXPECTED})


def test_api_one_article_per_request(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    answers = {}
    with TestClient(create_app(settings, Pipeline(settings=settings))) as client:
        for row in ROWS:
            response = client.post(
                "/v1/summaries",
                content=json.dumps(row),  # the surrogate travels as the escape \ud800
                headers={"content-type": "application/json"},
            )
            assert response.status_code in {200, 422}, response.text
            answers[str(row["id"])] = outcome(response.json())
    check(answers)


def test_api_batch_answers_a_bad_article_in_its_own_row(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as client:
        response = client.post(
            "/v1/summaries/batch",
            content=json.dumps({"articles": [*ROWS, "not an object"]}),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    answers = {
        str(row["id"]): ("ok", outcome(r["result"])[1]) if r["ok"] else ("error", r["error"])
        for row, r in zip(ROWS, results, strict=False)
    }
    check({k: (kind, d["message"] if kind == "error" else d) for k, (kind, d) in answers.items()})
    assert [r["error"]["status"] for r in results if not r["ok"]] == [422, 422, 422]
    assert "JSON object" in results[-1]["error"]["message"]


# One bad article among good ones, where they share one pipeline call ------------------------
class GatedPipeline(Pipeline):
    """Holds the worker on its first call until the test opens the gate."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings=settings)
        self.gate = threading.Event()
        self.calls: list[int] = []

    def prepare(self, inputs):  # type: ignore[no-untyped-def]
        self.calls.append(len(inputs))
        assert self.gate.wait(10), "the test never opened the gate"
        return super().prepare(inputs)


async def warm_up(client: httpx.AsyncClient, pipeline: GatedPipeline, size: int) -> None:
    """One run of ``size`` articles with the gate open, then the record cleared. The API
    takes one request at a time until it has timed an article, and a run holds at most one
    article more than the largest run that finished in time (``service.api.Batcher``); after
    this, ``size`` queued requests are admitted and share one run."""
    pipeline.gate.set()
    articles = [{"id": f"w{i}", "text": f"Warm-up {i}. {TEXT}"} for i in range(size)]
    response = await client.post("/v1/summaries/batch", json={"articles": articles})
    assert response.status_code == 200, response.text
    pipeline.gate.clear()
    pipeline.calls.clear()


def run_queued(app: Any, pipeline: GatedPipeline, bodies: list[bytes]) -> list[httpx.Response]:
    """The first body alone, then the rest queued while it runs (so they batch together)."""

    async def scenario() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await warm_up(client, pipeline, len(bodies) - 1)

                def post(body: bytes) -> asyncio.Task[httpx.Response]:
                    headers = {"content-type": "application/json"}
                    return asyncio.create_task(
                        client.post("/v1/summaries", content=body, headers=headers)
                    )

                first = post(bodies[0])
                while not pipeline.calls:
                    await asyncio.sleep(0.01)
                rest = [post(body) for body in bodies[1:]]
                # each waits in the queue, or was answered at the door (a 422 before queueing)
                while app.state.batcher.depth + sum(t.done() for t in rest) < len(rest):
                    await asyncio.sleep(0.01)
                pipeline.gate.set()
                return list(await asyncio.gather(first, *rest))

    return asyncio.run(scenario())


def article(i: int) -> dict[str, str]:
    return {"id": f"a{i}", "text": f"Report {i}. {TEXT}"}


def test_a_surrogate_among_seven_queued_requests_fails_alone(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, batch_size=8)
    pipeline = GatedPipeline(settings)
    app = create_app(settings, pipeline)
    bodies = [json.dumps(article(i)).encode() for i in range(8)]
    bodies.insert(4, json.dumps({"id": "bad", "text": SURROGATE}).encode())

    responses = run_queued(app, pipeline, bodies)

    assert [r.status_code for r in responses] == [200] * 4 + [422] + [200] * 4
    assert "surrogate" in responses[4].json()["error"]["message"]


def test_an_article_that_crashes_a_stage_fails_alone(tmp_path: Path) -> None:
    """A bug one article triggers inside a batched stage costs that article, not its batch."""
    settings = Settings(cache_dir=tmp_path, batch_size=8)
    pipeline = GatedPipeline(settings)
    run_extractor = pipeline.extractor.run

    def fragile(works, ctx):  # type: ignore[no-untyped-def]
        if any("BOOM" in w.text for w in works):
            raise RuntimeError("a bug this article triggers")
        run_extractor(works, ctx)

    pipeline.extractor.run = fragile  # type: ignore[method-assign]
    app = create_app(settings, pipeline)
    bodies = [json.dumps(article(i)).encode() for i in range(8)]
    bodies[5] = json.dumps({"id": "boom", "text": f"BOOM. {TEXT}"}).encode()

    responses = run_queued(app, pipeline, bodies)

    assert [r.status_code for r in responses] == [200] * 5 + [500] + [200] * 2
    assert pipeline.calls == [1, 7]
    assert [r.json()["id"] for r in responses if r.status_code == 200] == [
        f"a{i}" for i in (0, 1, 2, 3, 4, 6, 7)
    ]
