"""HTTP API: the FastAPI app factory, routes, error handlers, and the dynamic batcher.

One model, many clients: each request waits in a bounded queue; a single worker takes up to
``batch_size`` waiting articles at once and answers them with one ``Pipeline.run`` call, in
one thread (the model and the cache's SQLite connection live there). The queue admits only
what the measured cost per article says can be answered within the deadline: otherwise 429
with Retry-After at once (503 for one request too big for the deadline), rather than a 504
after waiting. A client that hangs up (or reaches its deadline) before its turn is dropped
from the queue without its work being run, and a run whose every client has gone stops at its
next step. Errors become JSON ``{"error": {"status", "message"}}`` in the handlers here and
nowhere else.

No ``from __future__ import annotations`` here: the routes are built inside a function, and
FastAPI must see their annotations (which use local values such as the seed examples) as objects.
"""

import argparse
import asyncio
import collections
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, SkipValidation
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from service.briefing import MAX_ARTICLES, MIN_ARTICLES, briefing_from, source_articles
from service.cache import CachedPipeline, ResultCache
from service.errors import Cancelled, InputError, ModelError, StandpointError, printable
from service.inputs import parse_article
from service.pipeline import Outcome, Pipeline, build_pipeline
from service.resources import seeds_dir
from service.schemas import Article, Briefing, Result, SourceArticle
from service.settings import Settings, add_pipeline_arguments, get_settings, settings_from_args

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_UI_DIR = Path(str(swagger_ui_path))  # Swagger UI's files, shipped by swagger-ui-bundle-v2
SEEDS_DIR = seeds_dir()
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# Every response: no MIME sniffing, no framing, and scripts and styles only from this server's
# own files (the page and /docs have nothing inline; Swagger UI's icons are data: images).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    b"content-security-policy": CSP.encode(),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}


# Errors that only exist at the HTTP edge ----------------------------------------------------
class UnauthorizedError(StandpointError):
    status_code = 401


class BodyTooLargeError(StandpointError):
    status_code = 413


class QueueFullError(StandpointError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReadyError(ModelError):
    """The pipeline (and its model) is still loading, failed to load, or is shutting down."""


class OverCapacityError(StandpointError):
    """One request holds more work than the server can do within the deadline."""

    status_code = 503


class DeadlineError(StandpointError):
    status_code = 504


class ClientGoneError(StandpointError):
    """The client disconnected while waiting; nobody reads the response."""

    status_code = 499


# API types ----------------------------------------------------------------------------------
class SummarizeRequest(Article):
    """One article: exactly one of ``text`` or ``html``, an optional ``id`` and ``options``."""


class SummarizeResponse(Result):
    """The summary, demands and positions; ``text[start:end] == quote`` for every item."""


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Each article is checked on its own (service.inputs.parse_article, in the route), so a
    # bad one gets its own error row instead of failing the request.
    articles: list[SkipValidation[SummarizeRequest]] = Field(
        min_length=1, description="Articles, answered in order (at most max_batch_articles)."
    )


class ErrorBody(BaseModel):
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class BatchOk(BaseModel):
    ok: Literal[True] = True
    result: Result


class BatchFailed(BaseModel):
    ok: Literal[False] = False
    error: ErrorBody


class BatchResponse(BaseModel):
    results: list[BatchOk | BatchFailed]


class Seed(BaseModel):
    id: str
    text: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "The body could not be read as JSON (for instance, not UTF-8).",
        401: "Missing or wrong API key (only when one is configured).",
        413: "Request body over max_body_bytes.",
        422: "Invalid input.",
        429: "The queue is full, or the work ahead would not be done in time; see Retry-After.",
        500: "Unexpected error (logged on the server).",
        503: "The model is not loaded yet or failed, or the request is too big for the deadline.",
        504: "No result within request_timeout_s.",
    }.items()
}


# Metrics ------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics in a registry of their own (one per app, so tests can make many)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "standpoint_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "standpoint_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.queue_depth = Gauge(
            "standpoint_queue_depth", "Requests waiting for the model.", registry=r
        )
        self.running_articles = Gauge(
            "standpoint_running_articles", "Articles in the pipeline run in progress.", registry=r
        )
        self.article_seconds = Gauge(
            "standpoint_article_seconds",
            "Measured seconds per fresh article, which admission and run sizes follow.",
            registry=r,
        )
        self.refused = Counter(
            "standpoint_refused_requests",
            "Requests refused before waiting: queue_full, untimed (no cost measured yet), "
            "deadline (the work ahead would not finish in time), too_large.",
            ["reason"],
            registry=r,
        )
        self.cancelled_runs = Counter(
            "standpoint_cancelled_runs",
            "Pipeline runs stopped between steps because every client had gone.",
            registry=r,
        )
        self.batch_articles = Histogram(
            "standpoint_batch_articles",
            "Articles per pipeline run (dynamic batch size).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.articles = Counter(
            "standpoint_articles", "Articles answered, by outcome.", ["outcome"], registry=r
        )
        self.dropped = Counter(
            "standpoint_dropped_requests",
            "Requests that left before their result: client disconnected or deadline passed.",
            ["reason"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "standpoint_generated_tokens", "Tokens the model generated.", registry=r
        )
        self.prompt_tokens = Counter(
            "standpoint_prompt_tokens", "Prompt tokens the model read.", registry=r
        )
        self.cache_hits = Counter("standpoint_cache_hits", "Result cache hits.", registry=r)
        self.cache_misses = Counter("standpoint_cache_misses", "Result cache misses.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# Dynamic batching ---------------------------------------------------------------------------
ADMIT_SHARE = 0.8  # admit work estimated to finish within this share of request_timeout_s
COST_WEIGHT = 0.3  # weight of the newest run in the per-article cost (exponential average)


@dataclass(eq=False)
class _Job:
    articles: Sequence[Article]
    future: asyncio.Future[list[Outcome]]
    deadline: float  # event-loop time after which nobody waits for it

    @property
    def wanted(self) -> bool:
        return not self.future.done()


@dataclass(eq=False)
class _Run:
    """The pipeline call in progress: its jobs, and the event that stops it between steps."""

    jobs: list[_Job]
    articles: int
    started: float
    cancel: threading.Event


class Batcher:
    """A bounded queue of requests drained by one worker into ``Pipeline.run`` calls.

    Admission is by measured cost: after each run the worker updates the seconds one fresh
    (not cached) article takes (a slower run at once, faster ones gradually), and a request is
    admitted only if the work in progress, the work waiting and its own are estimated to
    finish within ``ADMIT_SHARE`` of the deadline;
    otherwise it is refused at once (429 with Retry-After; 503 if even an idle server could
    not answer it in time). Until an article has been timed, requests are taken one at a time
    (a model stage on a slow machine can take minutes per article, and nothing says so before
    the first run). A run holds no more articles than fit in that share of the deadline, and
    at most one more than the largest run that finished in it (halved after one that did not:
    a model stage's cost per article can grow with the batch, as rows wait for the longest).
    Jobs whose clients have gone (deadline or disconnect) are never started, and a run whose
    every client has gone is stopped between steps (``Pipeline.finish``'s cancel).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        pipeline: Pipeline | None,
        load: Callable[[], Pipeline],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pipeline = pipeline
        self.load_error: str | None = None
        self.cache: ResultCache | None = None
        self._load = load
        self._waiting: collections.deque[_Job] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._run: _Run | None = None
        self._cost: float | None = None  # seconds per fresh article; None until measured
        self._last_run_end = 0.0
        self._size_ok = 0  # the largest run that finished within the budget

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._tasks = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="standpoint-model")
        self.cache = ResultCache(self.settings.result_cache_path)
        if self.pipeline is None:
            self._tasks.append(asyncio.create_task(self._load_pipeline()))
        self._tasks.append(asyncio.create_task(self._work()))

    async def stop(self) -> None:
        run = self._run
        if run is not None:  # stop the worker thread at its next step; its requests answer 503
            run.cancel.set()
            for job in run.jobs:
                job.future.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft().future.cancel()  # its request answers 503
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _load_pipeline(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            self.pipeline = await loop.run_in_executor(self._executor, self._load)
        except StandpointError as exc:
            self.load_error = f"the model failed to load: {exc.message}"
            logger.error("%s", self.load_error)
            return
        except Exception:
            self.load_error = "the model failed to load; see the server log"
            logger.exception("loading the pipeline failed")
            return
        logger.info("pipeline ready in %.1f s", time.perf_counter() - started)

    @property
    def depth(self) -> int:
        return len(self._waiting)

    async def submit(self, articles: Sequence[Article], *, request: Request) -> list[Outcome]:
        """Results in order, once the worker has run them; raises if the request cannot wait."""
        if self.pipeline is None:
            raise NotReadyError(self.load_error or "the model is loading; try again shortly")
        loop = asyncio.get_running_loop()
        self._admit(len(articles), now=loop.time())
        job = _Job(
            articles=articles,
            future=loop.create_future(),
            deadline=loop.time() + self.settings.request_timeout_s,
        )
        self._waiting.append(job)
        self.metrics.queue_depth.set(len(self._waiting))
        assert self._wake is not None, "the batcher is not started (run the app's lifespan)"
        self._wake.set()
        watcher = asyncio.create_task(_disconnected(request))
        waiters: set[asyncio.Future[Any]] = {job.future, watcher}
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=self.settings.request_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            watcher.cancel()
        if job.future.cancelled():
            raise NotReadyError("the server is shutting down")
        if job.future.done():
            return job.future.result()
        self._drop(job)
        if watcher in done:
            self.metrics.dropped.labels("disconnected").inc()
            raise ClientGoneError("the client disconnected")
        self.metrics.dropped.labels("deadline").inc()
        raise DeadlineError(f"no result within {self.settings.request_timeout_s:g} s; try again")

    # Admission by measured cost -------------------------------------------------------------
    def _article_cost(self, now: float) -> float | None:
        """Seconds per fresh article: the measured average, or more if the run in progress
        has already taken longer per article."""
        if self._cost is None:
            return None
        run = self._run
        if run is None:
            return self._cost
        return max(self._cost, (now - run.started) / run.articles)

    def _run_limit(self) -> int:
        """Articles per run: one until an article has been timed; then at most one more than
        the largest run that finished within the budget (halved after a run that did not),
        at most batch_size, and no more than the measured cost fits in the budget."""
        if self._cost is None:
            return 1
        budget = self.settings.request_timeout_s * ADMIT_SHARE
        fits = int(budget / self._cost)
        return max(1, min(self.settings.batch_size, fits, self._size_ok + 1))

    def _admit(self, count: int, *, now: float) -> None:
        """Refuse now a request that could not be answered within the deadline."""
        s = self.settings
        waiting = sum(len(job.articles) for job in self._waiting if job.wanted)
        run = self._run
        too_slow = self._cost is not None and self._cost > s.request_timeout_s * ADMIT_SHARE
        if too_slow and run is None and now - self._last_run_end > s.request_timeout_s:
            self._cost = None  # not even one article fitted, a while ago: try one again
        running_for = now - run.started if run is not None else 0.0
        cost = self._article_cost(now)
        in_progress = 0.0
        if run is not None and cost is not None:
            in_progress = max(0.0, run.articles * cost - running_for)
        if len(self._waiting) >= s.queue_size:
            self._refuse(
                QueueFullError(
                    f"the queue is full ({s.queue_size} requests waiting)",
                    retry_after=max(1, math.ceil(in_progress)),
                ),
                "queue_full",
            )
        if cost is None:  # nothing timed yet: one request at a time until the first is done
            if run is not None or waiting:
                self._refuse(
                    QueueFullError(
                        "busy: no article has been timed yet, so requests are taken one at a "
                        "time until the first is done",
                        retry_after=max(1, math.ceil(running_for)),
                    ),
                    "untimed",
                )
            return
        budget = s.request_timeout_s * ADMIT_SHARE
        if count * cost > budget:
            if count == 1:
                message = (
                    f"an article takes about {cost:.0f} s here, more than the "
                    f"{s.request_timeout_s:g} s deadline allows; try again later"
                )
            else:
                message = (
                    f"{count} articles take about {count * cost:.0f} s here ({cost:.2f} s each), "
                    f"more than the {s.request_timeout_s:g} s deadline allows; "
                    "send fewer articles per request"
                )
            self._refuse(OverCapacityError(message), "too_large")
        finish = in_progress + (waiting + count) * cost
        if finish > budget:
            self._refuse(
                QueueFullError(
                    f"busy: the work ahead would take about {finish:.0f} s, past the "
                    f"{s.request_timeout_s:g} s deadline",
                    retry_after=math.ceil(finish - budget),
                ),
                "deadline",
            )

    def _refuse(self, error: StandpointError, reason: str) -> NoReturn:
        self.metrics.refused.labels(reason).inc()
        raise error

    # The worker ---------------------------------------------------------------------------
    def _drop(self, job: _Job) -> None:
        job.future.cancel()
        if job in self._waiting:
            self._waiting.remove(job)
            self.metrics.queue_depth.set(len(self._waiting))
        run = self._run
        if run is not None and not run.cancel.is_set() and not any(j.wanted for j in run.jobs):
            run.cancel.set()
            self.metrics.cancelled_runs.inc()
            logger.info("stopping a run of %d articles: every client has gone", run.articles)

    def _take(self, now: float) -> list[_Job]:
        """The oldest waiting jobs still wanted, up to the run limit in articles (always at
        least one job)."""
        limit = self._run_limit()
        jobs: list[_Job] = []
        count = 0
        while self._waiting:
            job = self._waiting[0]
            if not job.wanted or job.deadline <= now:
                self._waiting.popleft()  # its request answers (or has answered) by itself
                continue
            if jobs and count + len(job.articles) > limit:
                break
            jobs.append(self._waiting.popleft())
            count += len(job.articles)
        self.metrics.queue_depth.set(len(self._waiting))
        return jobs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while jobs := self._take(loop.time()):
                articles = [a for job in jobs for a in job.articles]
                run = self._run = _Run(jobs, len(articles), loop.time(), threading.Event())
                self.metrics.batch_articles.observe(len(articles))
                self.metrics.running_articles.set(len(articles))
                try:
                    outcomes, fresh = await loop.run_in_executor(
                        self._executor, self._run_pipeline, articles, run.cancel
                    )
                except Exception as exc:  # reaches each waiting request, answered there as a 500
                    for job in jobs:
                        if job.wanted:
                            job.future.set_exception(exc)
                    continue
                finally:
                    self._run = None
                    self.metrics.running_articles.set(0)
                self._learn(run, fresh, now=loop.time())
                at = 0
                for job in jobs:
                    part, at = outcomes[at : at + len(job.articles)], at + len(job.articles)
                    if job.wanted:
                        job.future.set_result(part)

    def _learn(self, run: _Run, fresh: int, *, now: float) -> None:
        """Update the seconds per article from a run that computed ``fresh`` articles."""
        elapsed = now - run.started
        self._last_run_end = now
        if run.cancel.is_set():  # nothing finished: the time so far is a lower bound
            bound = elapsed / run.articles
            if self._cost is not None:  # it may raise the average, never lower it
                self._cost = max(self._cost, (1 - COST_WEIGHT) * self._cost + COST_WEIGHT * bound)
            elif bound > self.settings.request_timeout_s * ADMIT_SHARE:
                self._cost = bound  # not even one article fits in the deadline
        elif fresh:
            sample = elapsed / fresh
            if self._cost is None or sample > self._cost:
                self._cost = sample  # a slower run counts at once; faster ones bring it down
            else:  # gradually
                self._cost = (1 - COST_WEIGHT) * self._cost + COST_WEIGHT * sample
        if elapsed > self.settings.request_timeout_s * ADMIT_SHARE:
            self._size_ok = max(1, min(self._size_ok, run.articles // 2))
        elif not run.cancel.is_set():
            self._size_ok = max(self._size_ok, run.articles)
        if self._cost is not None:
            self.metrics.article_seconds.set(self._cost)

    def _run_pipeline(
        self, articles: list[Article], cancel: threading.Event
    ) -> tuple[list[Outcome], int]:
        """The outcomes, and how many articles were computed (not answered from the cache)."""
        assert self.pipeline is not None and self.cache is not None
        fresh = 0

        def on_miss(result: Result) -> None:
            nonlocal fresh
            fresh += 1
            self._count_fresh(result)

        cached = CachedPipeline(
            self.pipeline,
            self.cache,
            on_hit=lambda _: self.metrics.cache_hits.inc(),
            on_miss=on_miss,
        )
        outcomes = cached.run(list(articles), cancel=cancel)
        for outcome in outcomes:
            label = "ok" if isinstance(outcome, Result) else "error"
            self.metrics.articles.labels(
                "cancelled" if isinstance(outcome, Cancelled) else label
            ).inc()
        return outcomes, fresh

    def _count_fresh(self, result: Result) -> None:
        self.metrics.cache_misses.inc()
        self.metrics.generated_tokens.inc(result.meta.generated_tokens)
        self.metrics.prompt_tokens.inc(result.meta.prompt_tokens)


def serving_threads() -> int:
    """Torch threads for the server when STANDPOINT_THREADS is unset: all cores but one. The
    HTTP side (event loop, JSON, tokenizing, the schema's logits processor) needs a core; when
    torch's threads have them all, each waits for the others at every operation. Measured on
    2 busy cores: one model-write + model-json article took 410 s with 2 threads, 56 s with 1."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# The edge: body limit, HEAD, security headers, request metrics, last-resort 500 ---------------
def _error_json(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "message": printable(message)}},
        status_code=status,
        headers=headers,
    )


class EdgeMiddleware:
    """Outermost layer: refuses bodies over the limit, answers HEAD as GET without the body,
    adds the security headers, counts requests, and turns crashes into 500s."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False
        method = scope["method"]
        if method == "HEAD":  # every GET route answers HEAD too (the routes declare only GET)
            scope["method"] = "GET"

        async def send_counted(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif message["type"] == "http.response.body" and method == "HEAD":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            replay = await self._read_body(scope, receive)
            if replay is None:
                error = _error_json(413, f"the request body is over {self.max_body_bytes} bytes")
                await error(scope, receive, send_counted)
            else:
                await self.app(scope, replay, send_counted)
        except Exception:
            logger.exception("unhandled error in %s %s", method, scope["path"])
            if not response_started:
                crash = _error_json(500, "internal server error; it has been logged")
                await crash(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> Receive | None:
        """A receive that replays the whole body, or None if the body is over the limit."""
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                break
        pending = collections.deque(messages)

        async def replay() -> Message:
            return pending.popleft() if pending else await receive()

        return replay


# Dependencies -------------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="Only when STANDPOINT_API_KEY is set.")


def check_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    key = request.app.state.settings.api_key
    if key is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, key.get_secret_value().encode()):
        raise UnauthorizedError("missing or wrong API key; send Authorization: Bearer <key>")


def check_metrics_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    if request.app.state.settings.metrics_require_key:
        check_api_key(request, credentials)


def get_batcher(request: Request) -> Batcher:
    batcher: Batcher = request.app.state.batcher
    return batcher


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


BatcherDep = Annotated[Batcher, Depends(get_batcher)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


# Routes -------------------------------------------------------------------------------------
def read_seeds(folder: Path = SEEDS_DIR) -> list[Seed]:
    return [
        Seed(id=p.stem, text=p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.txt"))
    ]


def _checked(item: Any) -> Article | InputError:
    """One article of a batch request, checked on its own: a bad one is its own error row."""
    try:
        return parse_article(item)
    except InputError as exc:
        return exc


def _outcome(outcome: Outcome) -> BatchOk | BatchFailed:
    if isinstance(outcome, StandpointError):
        return BatchFailed(error=ErrorBody(status=outcome.status_code, message=outcome.message))
    return BatchOk(result=outcome)


def _api_router(seeds: list[Seed]) -> APIRouter:
    examples: dict[str, Any] = {
        seed.id: {"summary": f"seed article {seed.id}", "value": {"id": seed.id, "text": seed.text}}
        for seed in seeds
    }
    examples["html"] = {
        "summary": "HTML input, two-sentence summary, no extraction",
        "value": {
            "html": "<article><h1>Talks resume</h1><p>The union demanded a 5% raise from the "
            "city before the strike ends. The mayor said she opposes any raise this year.</p>"
            "</article>",
            "options": {"summary_sentences": 2, "extraction": False},
        },
    }
    batch_examples = {
        "seeds": {
            "summary": "all seed articles",
            "value": {"articles": [{"id": s.id, "text": s.text} for s in seeds]},
        }
    }
    router = APIRouter(dependencies=[Depends(check_api_key)], responses=ERROR_RESPONSES)

    @router.post("/v1/summaries", response_model=SummarizeResponse, tags=["summaries"])
    async def summarize(
        article: Annotated[SummarizeRequest, Body(openapi_examples=examples)],
        request: Request,
        batcher: BatcherDep,
    ) -> Result:
        """Summarize one article and extract its demands and positions, with quotes."""
        (outcome,) = await batcher.submit([article], request=request)
        if isinstance(outcome, StandpointError):
            raise outcome
        return outcome

    @router.post("/v1/summaries/batch", tags=["summaries"])
    async def summarize_batch(
        body: Annotated[BatchRequest, Body(openapi_examples=batch_examples)],
        request: Request,
        batcher: BatcherDep,
        settings: SettingsDep,
    ) -> BatchResponse:
        """Many articles in one request; each answered in order with a result or an error."""
        if len(body.articles) > settings.max_batch_articles:
            raise InputError(
                f"{len(body.articles)} articles; the limit is {settings.max_batch_articles} "
                "(STANDPOINT_MAX_BATCH_ARTICLES)"
            )
        checked = [_checked(item) for item in body.articles]
        valid = [a for a in checked if isinstance(a, Article)]
        answers = iter(await batcher.submit(valid, request=request) if valid else [])
        return BatchResponse(
            results=[_outcome(a if isinstance(a, InputError) else next(answers)) for a in checked]
        )

    @router.get("/v1/seeds", tags=["seeds"])
    async def list_seeds() -> list[Seed]:
        """The seed articles standpoint was built from, for trying it out."""
        return seeds

    return router


def _metrics_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(check_metrics_key)], responses=ERROR_RESPONSES)

    @router.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (needs the API key unless STANDPOINT_METRICS_REQUIRE_KEY=false)."""
        request.app.state.metrics.queue_depth.set(request.app.state.batcher.depth)
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def _open_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz", responses={503: ERROR_RESPONSES[503]})
    async def readyz(batcher: BatcherDep) -> dict[str, str]:
        """The pipeline (and its model) is loaded and requests will be answered."""
        if batcher.pipeline is None:
            raise NotReadyError(batcher.load_error or "the model is loading")
        return {"status": "ready", "model": batcher.pipeline.model_id}

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @router.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        """Swagger UI, from the package's own copy (it works offline)."""
        return FileResponse(STATIC_DIR / "docs.html")

    return router


# Briefings: several reports of one event (service.briefing) -------------------------------
class BriefingRequest(BaseModel):
    """2-20 reports of one event, each an article with an optional ``outlet`` and ``title``."""

    model_config = ConfigDict(extra="forbid")

    articles: list[SourceArticle] = Field(
        min_length=MIN_ARTICLES,
        max_length=MAX_ARTICLES,
        description="The reports (at most max_batch_articles too); each is summarized and "
        "extracted like /v1/summaries, then their items are merged.",
    )


class BriefingResponse(Briefing):
    """Merged items with every source's quote (``text[start:end] == quote`` in that article's
    ``text``), what differs across articles, a combined summary, and the articles that failed."""


def _briefing_router(seeds: list[Seed]) -> APIRouter:
    examples: dict[str, Any] = {
        "seeds": {
            "summary": "the two seed reports of one press conference",
            "value": {"articles": [{"id": s.id, "text": s.text} for s in seeds]},
        }
    }
    router = APIRouter(dependencies=[Depends(check_api_key)], responses=ERROR_RESPONSES)

    @router.post("/v1/briefings", response_model=BriefingResponse, tags=["briefings"])
    async def create_briefing(
        body: Annotated[BriefingRequest, Body(openapi_examples=examples)],
        request: Request,
        batcher: BatcherDep,
        settings: SettingsDep,
    ) -> Briefing:
        """Brief several reports of one event: who demanded what, with which conditions, and
        which articles carried it. Articles that fail are listed in ``failed``; the rest are
        still briefed."""
        if len(body.articles) > settings.max_batch_articles:
            raise InputError(
                f"{len(body.articles)} articles; the limit is {settings.max_batch_articles} "
                "(STANDPOINT_MAX_BATCH_ARTICLES)"
            )
        sources, failed = source_articles(body.articles)
        outcomes = await batcher.submit(sources, request=request)
        briefing = await asyncio.to_thread(briefing_from, sources, outcomes)
        briefing.failed = failed + briefing.failed
        return briefing

    return router


# Error handlers -----------------------------------------------------------------------------
async def _standpoint_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StandpointError)
    headers = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status_code >= 500 and not isinstance(exc, NotReadyError):  # readiness probes poll
        logger.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return _error_json(exc.status_code, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if hint := _content_type_hint(request):  # the body was never read as JSON
        return _error_json(422, hint)
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return _error_json(422, "; ".join(problems) or "invalid request")


def _content_type_hint(request: Request) -> str | None:
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    content_type = request.headers.get("content-type")
    media = (content_type or "").split(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind == "application" and (subtype == "json" or subtype.endswith("+json")):
        return None
    got = f"Content-Type: {content_type}" if content_type else "no Content-Type"
    return (
        f"the body must be JSON sent with Content-Type: application/json (this request has {got})"
    )


# Why FastAPI could not read a JSON body (its 400 says only "There was an error parsing the body").
BODY_ERRORS: dict[type[Exception], str] = {
    RecursionError: "the JSON body is nested too deeply to read",
    UnicodeDecodeError: "the JSON body is not UTF-8",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = str(exc.detail)
    if exc.status_code == 400 and isinstance(exc.__cause__, tuple(BODY_ERRORS)):
        message = next(m for t, m in BODY_ERRORS.items() if isinstance(exc.__cause__, t))
    return _error_json(exc.status_code, message, dict(exc.headers or {}))


# The app ------------------------------------------------------------------------------------
def create_app(
    settings: Settings | None = None,
    pipeline: Pipeline | None = None,
    *,
    load_model: bool = False,
) -> FastAPI:
    """The app. Without a ``pipeline`` one is built (and its model loaded) after start-up."""
    settings = settings or get_settings()
    metrics = Metrics()
    model_settings = settings
    if settings.threads is None:
        model_settings = settings.model_copy(update={"threads": serving_threads()})
    batcher = Batcher(
        settings=settings,
        metrics=metrics,
        pipeline=pipeline,
        load=lambda: build_pipeline(model_settings, load_model=load_model),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="standpoint",
        version="0.1.0",
        summary="Faithful news summaries, demands and positions with verbatim quotes.",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's copy of Swagger UI, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.include_router(_api_router(read_seeds()))
    app.include_router(_metrics_router())
    app.include_router(_briefing_router(read_seeds()))
    app.include_router(_open_router())
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(StandpointError, _standpoint_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


# CLI plug: standpoint serve -----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_from_args(args, "host", "port")
    if settings.host not in LOOPBACK and settings.api_key is None:
        logger.warning(
            "listening on %s without STANDPOINT_API_KEY: anyone can call it", settings.host
        )
    app = create_app(settings, load_model=args.load_model)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0
