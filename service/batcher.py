"""The dynamic batcher behind the HTTP API: one model, many clients.

Each request waits in a bounded queue; a single worker takes up to ``batch_size`` waiting
articles at once and answers them with one ``CachedPipeline.run`` call, in one thread (the model
and the cache's SQLite connection live there). The queue admits only what the measured cost per
token says can be answered within the deadline: otherwise 429 with Retry-After at once (503
for one request too big for the deadline), rather than a 504 after waiting. A client that hangs
up (or reaches its deadline) before its turn is dropped from the queue without its work being
run, and a run whose every client has gone stops at its next step.

Owns: ``Batcher`` (queue, admission, worker), the Prometheus ``Metrics`` it and the edge count
into. The model's threads leave one core to the HTTP side (``service.machine``, for every door).
Imports the pipeline, the result cache, the token estimate of ``service.article``, schemas and
errors; nothing of FastAPI but the request it watches for a hang-up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request

from service.article import estimate_tokens
from service.cache import CachedPipeline, ResultCache
from service.errors import (
    Cancelled,
    ClientGoneError,
    DeadlineError,
    NotReadyError,
    OverCapacityError,
    QueueFullError,
    StandpointError,
)
from service.pipeline import Outcome, Pipeline
from service.schemas import Article, Result
from service.settings import Settings

logger = logging.getLogger(__name__)


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
        self.token_seconds = Gauge(
            "standpoint_token_seconds",
            "Measured seconds per token of a fresh article (the median of the last runs), "
            "which admission and run sizes follow.",
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
# Every article's fixed work (parsing, language, a model stage's prompt and its reply), counted
# as this many tokens on top of its own: a short article is never estimated at nothing.
BASE_TOKENS = 256
RECENT_RUNS = 15  # the runs whose seconds per token admission takes the median of


def article_tokens(article: Article, *, limit: int) -> int:
    """What an article counts for, before it is cleaned: its tokens (``estimate_tokens`` of its
    text, or of an HTML page's text between tags, which cleaning only shortens), at most
    ``limit`` (an article over it is refused after cleaning, at little cost), plus the fixed
    ``BASE_TOKENS``."""
    if article.html is not None:
        pieces = article.html.split("<")
        text = " ".join([pieces[0], *(piece.partition(">")[2] for piece in pieces[1:])])
    else:
        text = article.text or ""
    return min(limit, estimate_tokens(text)) + BASE_TOKENS


@dataclass(eq=False)
class _Job:
    articles: Sequence[Article]
    tokens: list[int]  # each article's, as admission counted them (``article_tokens``)
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
    tokens: int  # as admission counted them
    started: float
    cancel: threading.Event


class Batcher:
    """A bounded queue of requests drained by one worker into ``Pipeline.run`` calls.

    Admission is by measured cost per token. Each request's cost is estimated from its own
    size (``article_tokens``: its articles' tokens plus a fixed share each) times the seconds
    per token of fresh (not cached) articles, the median of the last ``RECENT_RUNS`` runs: one
    pathological article, a huge one, or a run on a busy moment moves the median by at most
    one place, and once it is done, the admission of a small request does not depend on it.
    A request is admitted only if the work in progress, the work waiting and its own are
    estimated to finish within ``ADMIT_SHARE`` of the deadline; otherwise it is refused at once
    (429 with Retry-After; 503 if even an idle server could not answer it in time). Until an
    article has been timed, requests are taken one at a time (a model stage on a slow machine
    can take minutes per article, and nothing says so before the first run). A run holds no
    more tokens than fit in that share of the deadline, and at most one more article than the
    largest run that finished in it (halved after one that did not: a model stage's cost per
    article can grow with the batch, as rows wait for the longest). Jobs whose clients have
    gone (deadline or disconnect) are never started, and a run whose every client has gone is
    stopped between steps (``Pipeline.finish``'s cancel).
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
        # seconds per token of the last runs (lower bounds from runs that were stopped)
        self._rates: collections.deque[float] = collections.deque(maxlen=RECENT_RUNS)
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
        limit = self.settings.max_article_tokens
        if sum(len(a.text or a.html or "") for a in articles) > 200_000:  # not on the event loop
            tokens = await asyncio.to_thread(
                lambda: [article_tokens(a, limit=limit) for a in articles]
            )
        else:
            tokens = [article_tokens(a, limit=limit) for a in articles]
        self._admit(tokens, now=loop.time())
        job = _Job(
            articles=articles,
            tokens=tokens,
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
    @property
    def _rate(self) -> float | None:
        """Seconds per token: the median of the last runs, None until one has been timed."""
        return statistics.median(self._rates) if self._rates else None

    def _token_seconds(self, now: float) -> float | None:
        """Seconds per token: the measured median, or more if the run in progress has already
        taken longer per token (a run nobody waits for any more is stopping at its next step:
        its time says nothing about what the next article costs)."""
        rate = self._rate
        if rate is None:
            return None
        run = self._run
        if run is None or run.cancel.is_set():
            return rate
        return max(rate, (now - run.started) / run.tokens)

    def _run_limit(self) -> int:
        """Articles per run: one until an article has been timed; then at most one more than
        the largest run that finished within the budget (halved after a run that did not),
        at most batch_size (``_take`` also keeps a run's tokens within the budget)."""
        if self._rate is None:
            return 1
        return max(1, min(self.settings.batch_size, self._size_ok + 1))

    def _admit(self, tokens: list[int], *, now: float) -> None:
        """Refuse now a request (of articles counting ``tokens``) that could not be answered
        within the deadline."""
        s = self.settings
        budget = s.request_timeout_s * ADMIT_SHARE
        waiting = sum(sum(job.tokens) for job in self._waiting if job.wanted)
        run = self._run
        rate = self._rate
        quiet = run is None and now - self._last_run_end > s.request_timeout_s
        if rate is not None and quiet and min(tokens) * rate > budget:
            self._rates.clear()  # not even one such article fitted, a while ago: try one again
        running_for = now - run.started if run is not None else 0.0
        rate = self._token_seconds(now)
        in_progress = 0.0
        if run is not None and rate is not None:
            in_progress = max(0.0, run.tokens * rate - running_for)
        if len(self._waiting) >= s.queue_size:
            ahead = in_progress + waiting * rate if rate is not None else running_for
            self._refuse(
                QueueFullError(
                    f"the queue is full ({s.queue_size} requests waiting, about {ahead:.0f} s "
                    "of work)",
                    retry_after=max(1, math.ceil(ahead)),  # when the work queued now is done
                ),
                "queue_full",
            )
        if rate is None:  # nothing timed yet: one request at a time until the first is done
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
        own = sum(tokens) * rate
        if own > budget:
            count = len(tokens)
            if count == 1:
                message = (
                    f"an article of about {tokens[0] - BASE_TOKENS} tokens takes about "
                    f"{own:.0f} s here ({rate * 1000:.2f} s per 1,000 tokens), more than the "
                    f"{s.request_timeout_s:g} s deadline allows; send a shorter article"
                )
            else:
                message = (
                    f"{count} articles take about {own:.0f} s here "
                    f"({rate * 1000:.2f} s per 1,000 tokens), more than the "
                    f"{s.request_timeout_s:g} s deadline allows; send fewer articles per request"
                )
            self._refuse(OverCapacityError(message), "too_large")
        finish = in_progress + (waiting + sum(tokens)) * rate
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
        """The oldest waiting jobs still wanted, up to the run limit in articles and the
        tokens that fit in the budget at the measured rate (always at least one job)."""
        limit = self._run_limit()
        rate = self._rate
        budget = self.settings.request_timeout_s * ADMIT_SHARE
        jobs: list[_Job] = []
        count = tokens = 0
        while self._waiting:
            job = self._waiting[0]
            if not job.wanted or job.deadline <= now:
                self._waiting.popleft()  # its request answers (or has answered) by itself
                continue
            more = sum(job.tokens)
            too_long = rate is not None and (tokens + more) * rate > budget
            if jobs and (count + len(job.articles) > limit or too_long):
                break
            jobs.append(self._waiting.popleft())
            count += len(job.articles)
            tokens += more
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
                tokens = sum(sum(job.tokens) for job in jobs)
                run = self._run = _Run(jobs, len(articles), tokens, loop.time(), threading.Event())
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
        """Add the seconds per token of a run whose fresh (computed, not cached) articles
        counted ``fresh`` tokens (``BASE_TOKENS`` each included)."""
        elapsed = now - run.started
        self._last_run_end = now
        budget = self.settings.request_timeout_s * ADMIT_SHARE
        rate = self._rate
        if run.cancel.is_set():  # nothing finished: the time so far is a lower bound
            bound = elapsed / run.tokens
            if (rate is not None and bound > rate) or (rate is None and elapsed > budget):
                self._rates.append(bound)  # it may raise the median, never lower it
        elif fresh:
            self._rates.append(elapsed / fresh)
        if elapsed > budget:
            self._size_ok = max(1, min(self._size_ok, run.articles // 2))
        elif not run.cancel.is_set():
            self._size_ok = max(self._size_ok, run.articles)
        if self._rates:
            self.metrics.token_seconds.set(statistics.median(self._rates))

    def _run_pipeline(
        self, articles: list[Article], cancel: threading.Event
    ) -> tuple[list[Outcome], int]:
        """The outcomes, and the tokens of the articles that were computed (not answered from
        the cache), ``BASE_TOKENS`` each included."""
        assert self.pipeline is not None and self.cache is not None
        fresh = 0

        def on_miss(result: Result) -> None:
            nonlocal fresh
            fresh += estimate_tokens(result.text) + BASE_TOKENS
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


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
