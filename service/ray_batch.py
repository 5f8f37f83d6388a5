"""Batch summarizing on Ray Data: ``read_json`` -> ``map_batches(SummarizerActor)`` -> JSONL.

An optional path for a Ray cluster (``pip install -e '.[ray]'``); on one machine the
``standpoint batch`` command is the resumable, lossless one. Each actor builds its pipeline
(and loads the model) once, then runs the same ``Pipeline.run`` on every batch it is given.
Ray is imported only inside ``run_ray``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from service.batch import error_line
from service.errors import InputError, StandpointError
from service.pipeline import build_pipeline
from service.schemas import Article
from service.settings import Settings

logger = logging.getLogger(__name__)

COLUMNS = ("id", "text", "html")


class SummarizerActor:
    """Callable class for ``Dataset.map_batches``: rows in, ``{id, json, ok}`` columns out.

    ``json`` is the Result JSON, or the error row ``{"id", "error": {"message", "kind"}}``;
    ``ok`` is False for an error row.
    """

    def __init__(
        self, *, settings: Settings, load_model: bool = False, cache_path: str | None = None
    ) -> None:
        from service.cache import CachedPipeline, ResultCache

        pipeline = build_pipeline(settings, load_model=load_model)
        self.runner = (
            CachedPipeline(pipeline, ResultCache(Path(cache_path))) if cache_path else pipeline
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = _rows(batch)
        articles: list[Article | dict[str, Any]] = list(rows)
        results = self.runner.run(articles)
        out: dict[str, list[Any]] = {"id": [], "json": [], "ok": []}
        for row, result in zip(rows, results, strict=True):
            out["id"].append(row["id"])
            out["ok"].append(not isinstance(result, StandpointError))
            if isinstance(result, StandpointError):
                kind = type(result).__name__
                out["json"].append(error_line(row["id"], message=result.message, kind=kind))
            else:
                out["json"].append(result.model_dump_json())
        return out


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Article dicts from a column batch; a row without an id gets one from its content."""
    size = len(batch["id"]) if "id" in batch else len(next(iter(batch.values())))
    columns = {k: list(batch[k]) if k in batch else [None] * size for k in COLUMNS}
    rows = []
    for given, text, html in zip(columns["id"], columns["text"], columns["html"], strict=True):
        row: dict[str, Any] = {"text": text} if text is not None else {"html": html}
        if given is None or not str(given).strip():
            body = (text if text is not None else html) or ""
            given = "sha1:" + hashlib.sha1(body.encode()).hexdigest()[:16]
        row["id"] = str(given)
        rows.append(row)
    return rows


def run_ray(
    input_path: str | Path,
    output_path: str | Path,
    *,
    settings: Settings,
    num_cpus: int = 2,
    batch_size: int | None = None,
    load_model: bool = False,
    cache_path: Path | None = None,
) -> dict[str, int]:
    """Summarize a JSONL file ({id, text|html} rows) on Ray into ``output_path`` (JSONL).

    Starts a local Ray instance with ``num_cpus`` unless one is running (and stops only the
    one it started). Rows come out in input order. Returns counts: rows, done, failed.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    try:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ds = ray.data.read_json(str(input_path), lines=True)
        if "text" not in ds.columns() and "html" not in ds.columns():
            raise InputError(f"{input_path}: rows need a 'text' or 'html' field")
        ds = ds.select_columns([c for c in COLUMNS if c in ds.columns()])
        ds = ds.map_batches(
            SummarizerActor,
            concurrency=1,
            batch_size=batch_size or settings.batch_size,
            batch_format="numpy",
            fn_constructor_kwargs={
                "settings": settings,
                "load_model": load_model,
                "cache_path": str(cache_path) if cache_path else None,
            },
        )
        counts = {"rows": 0, "done": 0, "failed": 0}
        output = Path(output_path)
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as out:
            for row in ds.iter_rows():
                out.write(row["json"] + "\n")
                counts["rows"] += 1
                counts["done" if row["ok"] else "failed"] += 1
            out.flush()
            os.fsync(out.fileno())
        return counts
    finally:
        if started_here:
            ray.shutdown()
