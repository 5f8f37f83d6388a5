"""``standpoint batch``: many articles into one JSONL file, resumably, and ``summarize_many``.

The output holds one line per input id: a Result, or ``{"id", "error": {"message", "kind"}}``.
Lines are appended in input order and flushed; each batch is fsync'd, so a kill loses at most
the batch in flight. A rerun skips the ids already written and retries the error rows.
Nothing here imports torch: the model is loaded by ``service.model`` only when a stage needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from service.cache import CachedPipeline, ResultCache
from service.errors import StandpointError
from service.pipeline import Pipeline, build_pipeline
from service.schemas import Article, Result
from service.settings import Settings, add_pipeline_arguments, settings_from_args

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".text", ".md"}
HTML_SUFFIXES = {".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
# A raw file or line over this many times STANDPOINT_MAX_CHARS is refused unread (HTML pages
# are much longer than their text, so the text limit itself is checked after cleaning).
RAW_LIMIT_FACTOR = 50


@dataclass
class Row:
    """One input article, or the reason it could not be read (then ``article`` is None)."""

    id: str
    where: str
    article: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Outcome:
    """What one batch produced: output lines in input order, and counts for the summary."""

    lines: list[str] = field(default_factory=list)
    failed: int = 0
    cache_hits: int = 0
    generated_tokens: int = 0


# Reading ------------------------------------------------------------------------------------
def read_rows(spec: str, *, max_chars: int) -> Iterator[Row]:
    """Rows from a JSONL file, a .txt/.html file, a folder of them, or a glob, in stable order.

    Never raises for one bad file or line: that row carries an ``error`` instead.
    """
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _readable(p))
        if not files:
            raise StandpointError(f"{spec}: no .txt, .html or .jsonl files in this folder")
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise StandpointError(
                f"{spec}: no such file or folder, and no file matches it as a glob"
            )
    for file in files:
        if file.suffix.lower() in JSONL_SUFFIXES:
            yield from _jsonl_rows(file, max_chars=max_chars)
        else:
            yield _file_row(file, max_chars=max_chars)


def _readable(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES


def _file_row(path: Path, *, max_chars: int) -> Row:
    row = Row(id=path.stem, where=str(path))
    data = path.read_bytes()
    if len(data) > RAW_LIMIT_FACTOR * max_chars:
        row.error = f"the file has {len(data)} bytes; too long (STANDPOINT_MAX_CHARS={max_chars})"
    elif b"\x00" in data[:8192]:
        row.error = "looks like a binary file, not text or HTML"
    else:
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            row.error = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        else:
            key = "html" if path.suffix.lower() in HTML_SUFFIXES else "text"
            row.article = {"id": row.id, key: content}
    return row


def _jsonl_rows(path: Path, *, max_chars: int) -> Iterator[Row]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue  # blank lines are not rows
            yield _jsonl_row(raw, where=f"{path.name}:{number}", max_chars=max_chars)


def _jsonl_row(raw: bytes, *, where: str, max_chars: int) -> Row:
    row = Row(id=where, where=where)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        row.error = f"not UTF-8 ({exc.reason} at byte {exc.start})"
        with contextlib.suppress(ValueError):  # keep its id if it has one
            data = json.loads(raw.decode("utf-8", "replace"))
            if isinstance(data, dict) and _valid_id(data.get("id")):
                row.id = str(data["id"])
        return row
    except json.JSONDecodeError as exc:
        row.error = f"invalid JSON ({exc.msg} at column {exc.colno})"
        return row
    if not isinstance(data, dict):
        row.error = "each line must be a JSON object"
        return row
    given = data.get("id")
    if _valid_id(given):
        row.id = str(given)
    elif given is not None:
        row.error = f"'id' must be a non-empty string or an integer, not {given!r}"
        return row
    if len(raw) > RAW_LIMIT_FACTOR * max_chars:
        row.error = f"the line has {len(raw)} bytes; too long (STANDPOINT_MAX_CHARS={max_chars})"
        return row
    row.article = {k: data[k] for k in ("text", "html", "options") if k in data}
    row.article["id"] = row.id
    return row


def _valid_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and bool(str(value).strip())


# Output file --------------------------------------------------------------------------------
def prepare_output(path: Path, *, retry_errors: bool) -> set[str]:
    """Ids already answered in ``path``; repairs what an interrupted run left.

    A trailing partial line (a kill mid-write) is truncated. With ``retry_errors`` the error
    rows are removed (the file is rewritten atomically) so their ids run again.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        logger.warning(
            "%s: truncated a partial last line (%d bytes) left by an interrupted run",
            path,
            len(data) - keep,
        )
        with path.open("r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        data = data[:keep]
    done: set[str] = set()
    kept: list[bytes] = []
    errors = 0
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        try:
            row = json.loads(line)
            row_id = str(row["id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("%s:%d: not an output row; kept as is and ignored", path, number)
            kept.append(line)
            continue
        if "error" in row:
            errors += 1
            if retry_errors:
                continue
        done.add(row_id)
        kept.append(line)
    if errors and retry_errors:
        logger.warning("%s: retrying %d error rows from the last run", path, errors)
        _replace(path, b"".join(kept))
    return done


def _replace(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _append(out: Any, line: str) -> None:
    """One whole line in one unbuffered write (looping only if the OS writes less)."""
    data = memoryview((line + "\n").encode())
    while data:
        data = data[out.write(data) :]


def error_line(row_id: str | None, *, message: str, kind: str) -> str:
    row = {"id": row_id, "error": {"message": message, "kind": kind}}
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


# Running ------------------------------------------------------------------------------------
def run_rows(pipeline: Pipeline, rows: Sequence[Row], *, cache: ResultCache | None) -> Outcome:
    """One pipeline call over the readable rows; output lines for all rows, in order."""
    outcome = Outcome()
    articles: list[Article | dict[str, Any]] = [r.article for r in rows if r.article is not None]

    def count_hit(result: Result) -> None:
        outcome.cache_hits += 1

    def count_fresh(result: Result) -> None:
        outcome.generated_tokens += result.meta.generated_tokens

    runner: Pipeline | CachedPipeline = pipeline
    if cache is not None:
        runner = CachedPipeline(pipeline, cache, on_hit=count_hit, on_miss=count_fresh)
    try:
        results: list[Any] = runner.run(articles)
    except Exception:  # a bug in one article must not sink its batch: retry one by one
        logger.exception("a batch failed; running its articles one at a time")
        results = [_run_one(runner, a) for a in articles]
    answers = iter(results)
    for row in rows:
        if row.article is None:
            outcome.failed += 1
            outcome.lines.append(
                error_line(row.id, message=f"{row.where}: {row.error}", kind="InputError")
            )
            continue
        result = next(answers)
        if isinstance(result, BaseException):
            outcome.failed += 1
            message = getattr(result, "message", None) or f"{type(result).__name__}: {result}"
            outcome.lines.append(error_line(row.id, message=message, kind=type(result).__name__))
            continue
        if cache is None:
            count_fresh(result)
        outcome.lines.append(result.model_dump_json())
    return outcome


def _run_one(runner: Pipeline | CachedPipeline, article: Article | dict[str, Any]) -> Any:
    try:
        return runner.run([article])[0]
    except Exception as exc:
        logger.exception("article failed")
        return exc


def summarize_many(
    articles: Iterable[Article | dict[str, Any]],
    *,
    settings: Settings | None = None,
    pipeline: Pipeline | None = None,
    batch_size: int | None = None,
    cache: ResultCache | None = None,
) -> list[Result | StandpointError]:
    """Results (or the error of each failed article) in input order, ``batch_size`` per model call.

    Without ``pipeline`` one is built from ``settings`` (default: the environment), loading the
    model only if a configured stage needs it.
    """
    if pipeline is None:
        pipeline = build_pipeline(settings or Settings())
    runner: Pipeline | CachedPipeline = pipeline
    if cache is not None:
        runner = CachedPipeline(pipeline, cache)
    items = list(articles)
    size = batch_size or pipeline.settings.batch_size
    results: list[Result | StandpointError] = []
    for i in range(0, len(items), size):
        results += runner.run(items[i : i + size])
    return results


# Worker processes (--workers > 1) -----------------------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(settings: Settings, load: bool, cache_path: Path | None) -> None:
    _worker["pipeline"] = build_pipeline(settings, load_model=load)
    _worker["cache"] = ResultCache(cache_path) if cache_path else None


def _run_in_worker(rows: list[Row]) -> Outcome:
    return run_rows(_worker["pipeline"], rows, cache=_worker["cache"])


def _outcomes(
    batches: Iterator[list[Row]],
    *,
    workers: int,
    settings: Settings,
    load: bool,
    cache_path: Path | None,
) -> Iterator[Outcome]:
    """Each batch's outcome, in order: in this process, or across ``workers`` processes."""
    if workers == 1:
        pipeline = build_pipeline(settings, load_model=load)
        cache = ResultCache(cache_path) if cache_path else None
        for rows in batches:
            yield run_rows(pipeline, rows, cache=cache)
        return
    cpus = os.cpu_count() or 1
    settings = settings.model_copy(update={"threads": settings.threads or max(1, cpus // workers)})
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(settings, load, cache_path),
    ) as pool:
        window: list[Future[Outcome]] = []
        for rows in batches:
            window.append(pool.submit(_run_in_worker, rows))
            if len(window) > 2 * workers:
                yield window.pop(0).result()
        for future in window:
            yield future.result()


# CLI ----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", help="a JSONL file ({id, text|html} rows), a folder, or a quoted glob"
    )
    parser.add_argument(
        "-o", "--output", required=True, type=Path, help="the JSONL file to append to"
    )
    add_pipeline_arguments(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="articles per pipeline call and model batch (default: STANDPOINT_BATCH_SIZE, 8)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes, each with its own model and cores/N torch threads (default 1)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="result cache (default: STANDPOINT_CACHE_PATH, else <cache_dir>/results.sqlite)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument(
        "--retry-errors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on a rerun, run the ids whose last row was an error again (default: yes)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.workers < 1:
        raise StandpointError("--workers must be at least 1")
    settings = settings_from_args(args, "batch_size")
    cache_path = None if args.no_cache else (args.cache or settings.result_cache_path)
    started = time.perf_counter()

    done = prepare_output(args.output, retry_errors=args.retry_errors)
    pending: list[Row] = []
    seen: dict[str, str] = {}
    skipped = duplicates = 0
    for row in read_rows(args.input, max_chars=settings.max_chars):
        if row.id in seen:
            duplicates += 1
            logger.warning(
                "%s: duplicate id %r (first at %s); processed once", row.where, row.id, seen[row.id]
            )
            continue
        seen[row.id] = row.where
        if row.id in done:
            skipped += 1
        else:
            pending.append(row)

    size = settings.batch_size
    batches = (pending[i : i + size] for i in range(0, len(pending), size))
    finished = failed = hits = tokens = 0
    bar = tqdm(
        total=len(pending),
        unit="article",
        file=sys.stderr,
        disable=args.no_progress,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
    )
    with args.output.open("ab", buffering=0) as out, bar:
        for outcome in _outcomes(
            batches,
            workers=args.workers,
            settings=settings,
            load=args.load_model,
            cache_path=cache_path,
        ):
            for line in outcome.lines:
                _append(out, line)
            os.fsync(out.fileno())
            finished += len(outcome.lines)
            failed += outcome.failed
            hits += outcome.cache_hits
            tokens += outcome.generated_tokens
            bar.update(len(outcome.lines))
            minutes = (time.perf_counter() - started) / 60
            bar.set_postfix_str(f"{finished / minutes:.1f} articles/min", refresh=False)

    elapsed = time.perf_counter() - started
    print(
        f"standpoint batch: {finished - failed} done ({hits} from cache), {skipped} skipped "
        f"(already in output), {failed} failed, {duplicates} duplicate ids, {elapsed:.1f} s, "
        f"{tokens / elapsed:.1f} generated tokens/s -> {args.output}",
        file=sys.stderr,
    )
    return 2 if failed else 0
