"""Results cached in SQLite (WAL), keyed by what determines them; shared by API and batch.

``CachedPipeline`` wraps a pipeline: it prepares the articles (the key needs the cleaned
text), answers those seen before from the cache, runs the rest, and stores their results.
Callers observe it through hooks (``on_hit``, ``on_miss``, ``on_fresh``) for their metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.errors import StandpointError
from service.schemas import Options, Result
from service.stages import Work

if TYPE_CHECKING:
    from service.pipeline import Outcome, Pipeline
    from service.schemas import Article
    from service.settings import Settings

logger = logging.getLogger(__name__)


def cache_key(
    *, text: str, model_id: str, prompts: dict[str, str], settings_key: str, options: Options
) -> str:
    """Hash of the cleaned text, model id, prompt versions, pipeline settings and options."""
    payload = json.dumps(
        {
            "text": text,
            "model": model_id,
            "prompts": prompts,
            "settings": settings_key,
            "options": options.model_dump(),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()  # never raises


class ResultCache:
    """A key -> Result table. Safe to share between threads and between processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS results "
                    "(key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL NOT NULL)"
                )
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StandpointError(
                f"{path}: cannot open the result cache ({reason}); set STANDPOINT_CACHE_PATH "
                "to a writable file, or run without the cache"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get(self, key: str) -> Result | None:
        row = self._connect().execute("SELECT result FROM results WHERE key = ?", (key,)).fetchone()
        return Result.model_validate_json(row[0]) if row else None

    def put(self, key: str, result: Result) -> None:
        self._connect().execute(
            "INSERT OR REPLACE INTO results (key, result, created) VALUES (?, ?, ?)",
            (key, result.model_dump_json(), time.time()),
        )

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM results").fetchone()[0])


def _ignore(result: Result) -> None:
    return None


@dataclass
class CachedPipeline:
    """A pipeline answered from a cache where it can; ``run`` is the pipeline's ``run``.

    ``CachedPipeline.open(settings)`` is how every door (summarize, batch and its workers, brief,
    the API's batcher, Ray) gets one; without a cache (``cached=False``) every article is
    computed and ``on_miss`` sees each result.
    """

    pipeline: Pipeline
    cache: ResultCache | None
    on_hit: Callable[[Result], None] = field(default=_ignore)
    on_miss: Callable[[Result], None] = field(default=_ignore)  # called with the fresh result

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        load_model: bool = False,
        cache_path: Path | None = None,
        cached: bool = True,
        on_hit: Callable[[Result], None] = _ignore,
        on_miss: Callable[[Result], None] = _ignore,
    ) -> CachedPipeline:
        """The pipeline ``settings`` describe (built unless ``pipeline`` is given), paired with
        the result cache at ``cache_path`` (default: ``settings.result_cache_path``)."""
        if pipeline is None:
            from service.pipeline import build_pipeline

            pipeline = build_pipeline(settings, load_model=load_model)
        cache = ResultCache(cache_path or settings.result_cache_path) if cached else None
        return cls(pipeline, cache, on_hit=on_hit, on_miss=on_miss)

    @property
    def settings(self) -> Settings:
        return self.pipeline.settings

    @property
    def model_id(self) -> str:
        return self.pipeline.model_id

    def key(self, work: Work) -> str:
        p = self.pipeline
        return cache_key(
            text=work.text,
            model_id=p.result_model,
            prompts={k: prompt.ref for k, prompt in p.prompts.items()},
            settings_key=p.settings_key,
            options=work.article.options,
        )

    def run(
        self, inputs: list[Article | dict[str, Any]], *, cancel: threading.Event | None = None
    ) -> list[Outcome]:
        prepared = self.pipeline.prepare(inputs)
        answers: dict[int, Outcome] = {}
        keys: dict[int, str] = {}
        for i, work in enumerate(prepared):
            if isinstance(work, Work) and self.cache is not None:
                keys[i] = self.key(work)
                hit = self._get(keys[i])
                if hit is not None:
                    answer = hit.model_copy(update={"id": work.article.id})
                    answers[i] = answer
                    self.on_hit(answer)
        todo = [i for i in range(len(prepared)) if i not in answers]
        fresh = self.pipeline.finish([prepared[i] for i in todo], cancel=cancel)
        for i, outcome in zip(todo, fresh, strict=True):
            answers[i] = outcome
            if isinstance(outcome, Result):
                if i in keys:
                    self._put(keys[i], outcome)
                self.on_miss(outcome)
        return [answers[i] for i in range(len(prepared))]

    # A cache that cannot be read or written costs the cache, never an article's result.
    def _get(self, key: str) -> Result | None:
        assert self.cache is not None
        try:
            return self.cache.get(key)
        except Exception:
            logger.exception("reading the result cache failed; computing the result")
            return None

    def _put(self, key: str, result: Result) -> None:
        assert self.cache is not None
        try:
            self.cache.put(key, result)
        except Exception:
            logger.exception("writing the result cache failed; the result is not cached")
