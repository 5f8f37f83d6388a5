"""The dynamic batcher behind the HTTP API: one model, many clients.

Each request waits in a bounded queue; a single worker takes up to ``batch_size`` waiting
articles at once and answers them with one ``CachedPipeline.run`` call, in one thread (the model
and the cache's SQLite connection live there). The queue admits only what the measured cost per
article says can be answered within the deadline: otherwise 429 with Retry-After at once (503
for one request too big for the deadline), rather than a 504 after waiting. A client that hangs
up (or reaches its deadline) before its turn is dropped from the queue without its work being
run, and a run whose every client has gone stops at its next step.

Owns: ``Batcher`` (queue, admission, worker), the Prometheus ``Metrics`` it and the edge count
into. The model's threads leave one core to the HTTP side (``service.machine``, for every door).
Imports the pipeline, the result cache, schemas and errors; nothing of FastAPI but the request
it watches for a hang-up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request

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
        has already taken longer per article (a run nobody waits for any more is stopping at
        its next step: its time says nothing about what the next article costs)."""
        if self._cost is None:
            return None
        run = self._run
        if run is None or run.cancel.is_set():
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


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
