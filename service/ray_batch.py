"""Batch summarizing on Ray Data: JSONL lines -> ``map_batches(SummarizerActor)`` -> JSONL.

An optional path for a Ray cluster (``pip install -e '.[ray]'``); on one machine the
``standpoint batch`` command is the resumable one. Lines are read as bytes and each is parsed
by ``service.inputs.jsonl_row``, the reader ``standpoint batch`` uses, so a bad line (not JSON,
not UTF-8, an unknown field, a lone surrogate) is an error row and never stops the others.
Each actor builds its pipeline (and loads the model) once, then answers every batch with
``service.batch.run_rows``. Ray is imported only inside ``run_ray``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from service.batch import run_rows
from service.inputs import jsonl_lines, jsonl_row
from service.settings import Settings

logger = logging.getLogger(__name__)


class SummarizerActor:
    """Callable class for ``Dataset.map_batches``: ``{where, raw}`` lines in (``where`` is
    FILE:LINE, ``raw`` the line's bytes), ``{id, json, ok}`` columns out.

    ``json`` is the Result JSON, or the error row ``{"id", "error": {"message", "kind"}}``;
    ``ok`` is False for an error row. A line without an id gets its FILE:LINE.
    """

    def __init__(
        self, *, settings: Settings, load_model: bool = False, cache_path: str | None = None
    ) -> None:
        from service.cache import CachedPipeline

        self.runner = CachedPipeline.open(
            settings,
            load_model=load_model,
            cache_path=Path(cache_path) if cache_path else None,
            cached=cache_path is not None,
        )
        self.max_chars = settings.max_chars

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [
            jsonl_row(bytes(raw), where=str(where), max_chars=self.max_chars)
            for where, raw in zip(batch["where"], batch["raw"], strict=True)
        ]
        outcome = run_rows(self.runner, rows)
        return {"id": [r.id for r in rows], "json": outcome.lines, "ok": outcome.ok}


def _lines(file: dict[str, Any]) -> list[dict[str, Any]]:
    """``Dataset.flat_map``: one JSONL file's row (its bytes and path) -> its lines."""
    name = Path(str(file["path"])).name
    return [{"where": w, "raw": raw} for w, raw in jsonl_lines(file["bytes"], name=name)]


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
        ds = ray.data.read_binary_files(str(input_path), include_paths=True)
        ds = ds.flat_map(_lines)
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
        with output.open("w", encoding="utf-8", errors="backslashreplace") as out:
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
