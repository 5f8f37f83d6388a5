"""``standpoint batch``: many articles into one JSONL file, resumably, and ``summarize_many``.

The output holds one line per input id: a Result, or ``{"id", "error": {"message", "kind"}}``.
Lines are appended in input order and flushed; each batch is fsync'd, so a kill loses at most
the batch in flight. A rerun skips the ids already written, retries the error rows, sets aside
lines that are not output rows, and puts the rows back in input order. Rows are read and
checked by ``service.inputs``, the same as every other door.
Nothing here imports torch: the model is loaded by ``service.model`` only when a stage needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.cache import CachedPipeline, ResultCache
from service.errors import StandpointError, printable
from service.inputs import HTML_SUFFIXES, JSONL_SUFFIXES, TEXT_SUFFIXES, Row, input_files, read_rows
from service.machine import thread_plan
from service.pipeline import Pipeline, build_pipeline
from service.schemas import Article, Result
from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class RowLines:
    """What one batch produced: output lines in input order, and counts for the summary."""

    lines: list[str] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)  # per line: a Result (not an error row)
    failed: int = 0
    cache_hits: int = 0
    generated_tokens: int = 0


# Output file --------------------------------------------------------------------------------
def check_output(output: Path, spec: str) -> None:
    """Refuses an output that is a folder, or that is (or on a rerun would be) an input."""
    if output.is_dir():
        raise StandpointError(f"{output}: is a folder; -o takes the JSONL file to write")
    inputs = input_files(spec)
    rerun_reads_it = (
        Path(spec).is_dir()
        and _same_file(output.parent, Path(spec))
        and output.suffix.lower() in TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES
    )
    if rerun_reads_it or any(_same_file(output, f) for f in inputs):
        raise StandpointError(
            f"{output}: is also an input ({spec}); write the results to another file"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def prepare_output(path: Path, *, retry_errors: bool) -> set[str]:
    """Ids already answered in ``path``; repairs what an interrupted run left.

    A trailing partial line (a kill mid-write) is truncated. A line that is not an output row
    (damaged, or written by something else) is moved to ``<path>.damaged`` so its id runs
    again. With ``retry_errors`` the error rows are removed so their ids run again. The file
    is rewritten atomically.
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
    damaged: list[bytes] = []
    errors = 0
    aside = path.with_name(path.name + ".damaged")
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        row = _output_row(line)
        if row is None:
            logger.warning("%s:%d: not an output row; moved to %s", path, number, aside)
            damaged.append(line)
            continue
        if "error" in row:
            errors += 1
            if retry_errors:
                continue
        done.add(row["id"])
        kept.append(line)
    if damaged:
        with aside.open("ab") as f:
            f.write(b"".join(damaged))
            f.flush()
            os.fsync(f.fileno())
    if errors and retry_errors:
        logger.warning("%s: retrying %d error rows from the last run", path, errors)
    if damaged or (errors and retry_errors):
        _replace(path, b"".join(kept))
    return done


def _output_row(line: bytes) -> dict[str, Any] | None:
    """An output row (a Result or an error row, with a string id), or None if the line is not
    one."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
        return None
    if not ("error" in row or {"text", "summary", "meta"} <= row.keys()):
        return None
    return row


def _row_id(line: bytes) -> str | None:
    row = _output_row(line)
    return None if row is None else str(row["id"])


def put_in_input_order(path: Path, order: Sequence[str]) -> None:
    """Rewrites ``path`` (atomically) if this input's rows are not in input order, as after a
    resumed run filled in retried or set-aside ids. Other lines keep their places."""
    lines = path.read_bytes().splitlines(keepends=True)
    rank = {row_id: i for i, row_id in enumerate(order)}
    ranks = [rank.get(_row_id(line) or "", -1) for line in lines]
    slots = [i for i, r in enumerate(ranks) if r >= 0]
    mine = sorted(slots, key=lambda i: ranks[i])
    if mine == slots:
        return
    reordered = list(lines)
    for slot, i in zip(slots, mine, strict=True):
        reordered[slot] = lines[i]
    _replace(path, b"".join(reordered))


def _replace(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _append(out: Any, line: str) -> None:
    """One whole line in one unbuffered write (looping only if the OS writes less)."""
    data = memoryview((line + "\n").encode("utf-8", "backslashreplace"))
    while data:
        data = data[out.write(data) :]


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An output file that cannot be read or written is one readable line, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise StandpointError(f"{path}: cannot write the output ({exc.strerror or exc})") from exc


def error_line(row_id: str | None, *, message: str, kind: str) -> str:
    row = {"id": row_id, "error": {"message": message, "kind": kind}}
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


# Running ------------------------------------------------------------------------------------
def run_rows(runner: CachedPipeline, rows: Sequence[Row]) -> RowLines:
    """One pipeline call over the readable rows; output lines for all rows, in order.

    The pipeline answers each article on its own (an error in place of a failed one).
    """
    outcome = RowLines()
    articles: list[Article | dict[str, Any]] = [r.article for r in rows if r.article is not None]

    def count_hit(result: Result) -> None:
        outcome.cache_hits += 1

    def count_fresh(result: Result) -> None:
        outcome.generated_tokens += result.meta.generated_tokens

    counted = dataclasses.replace(runner, on_hit=count_hit, on_miss=count_fresh)
    answers = iter(counted.run(articles))
    for row in rows:
        if row.article is None:
            outcome.failed += 1
            outcome.ok.append(False)
            outcome.lines.append(
                error_line(row.id, message=f"{row.where}: {row.error}", kind="InputError")
            )
            continue
        result = next(answers)
        outcome.ok.append(isinstance(result, Result))
        if isinstance(result, StandpointError):
            outcome.failed += 1
            outcome.lines.append(
                error_line(row.id, message=result.message, kind=type(result).__name__)
            )
            continue
        outcome.lines.append(result.model_dump_json())
    return outcome


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
    runner: Pipeline | CachedPipeline = (
        CachedPipeline(pipeline, cache) if cache is not None else pipeline
    )
    items = list(articles)
    size = batch_size or runner.settings.batch_size
    results: list[Result | StandpointError] = []
    for i in range(0, len(items), size):
        results += runner.run(items[i : i + size])
    return results


# Worker processes (--workers > 1) -----------------------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(settings: Settings, load: bool, cache_path: Path | None) -> None:
    _exit_with_parent()
    _worker["runner"] = _open(settings, load=load, cache_path=cache_path)


def _open(settings: Settings, *, load: bool, cache_path: Path | None) -> CachedPipeline:
    return CachedPipeline.open(
        settings, load_model=load, cache_path=cache_path, cached=cache_path is not None
    )


def _exit_with_parent() -> None:
    """End this worker as soon as its parent ends, even by SIGKILL. Otherwise it would wait
    for work forever, and keep multiprocessing's resource tracker running with it."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # ready when the parent is gone
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_in_worker(rows: list[Row]) -> RowLines:
    return run_rows(_worker["runner"], rows)


def _outcomes(
    batches: Iterator[list[Row]],
    *,
    workers: int,
    settings: Settings,
    load: bool,
    cache_path: Path | None,
) -> Iterator[RowLines]:
    """Each batch's outcome, in order: in this process, or across ``workers`` processes."""
    if workers == 1:
        runner = _open(settings, load=load, cache_path=cache_path)
        for rows in batches:
            yield run_rows(runner, rows)
        return
    # each worker's share of the cores (or the user's OMP/MKL variables, which workers inherit)
    plan = thread_plan(settings.threads, processes=workers)
    settings = settings.model_copy(update={"threads": plan.threads})
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(settings, load, cache_path),
    ) as pool:
        window: list[Future[RowLines]] = []
        for rows in batches:
            window.append(pool.submit(_run_in_worker, rows))
            if len(window) > 2 * workers:
                yield window.pop(0).result()
        for future in window:
            yield future.result()


# standpoint batch ----------------------------------------------------------------------------
def run_batch(
    *,
    spec: str,
    output: Path,
    settings: Settings,
    workers: int = 1,
    cache_path: Path | None,
    retry_errors: bool = True,
    progress: bool = True,
    load_model: bool = False,
) -> int:
    """Summarize the rows ``spec`` names (a JSONL file, a folder or a glob) into ``output``,
    resumably; the exit code: 2 if any article failed, else 0."""
    from tqdm import tqdm

    if workers < 1:
        raise StandpointError("--workers must be at least 1")
    started = time.perf_counter()

    check_output(output, spec)
    if cache_path is not None:
        ResultCache(cache_path)  # one readable line now if it cannot be opened, not in a worker
    with _writing(output):
        done = prepare_output(output, retry_errors=retry_errors)
    pending, order, counts = _plan(read_rows(spec, max_chars=settings.max_chars), done)

    size = settings.batch_size
    batches = (pending[i : i + size] for i in range(0, len(pending), size))
    finished = failed = hits = tokens = 0
    bar = tqdm(
        total=len(pending),
        unit="article",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
    )
    with _writing(output):
        out = output.open("ab", buffering=0)
    with out, bar:
        for outcome in _outcomes(
            batches,
            workers=workers,
            settings=settings,
            load=load_model,
            cache_path=cache_path,
        ):
            with _writing(output):
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
    if finished:  # only rows appended now can be out of input order
        with _writing(output):
            put_in_input_order(output, order)

    elapsed = time.perf_counter() - started
    print(
        f"standpoint batch: {finished - failed} done ({hits} from cache), {counts['skipped']} "
        f"skipped (already in output), {failed} failed, {counts['duplicates']} duplicate ids "
        f"({counts['renamed']} renamed), {elapsed:.1f} s, "
        f"{tokens / elapsed:.1f} generated tokens/s -> {printable(str(output))}",
        file=sys.stderr,
    )
    return 2 if failed else 0


def _plan(rows: Iterable[Row], done: set[str]) -> tuple[list[Row], list[str], dict[str, int]]:
    """The rows to run, every id in input order, and counts (skipped, duplicates, renamed).

    A repeated id with the same article is run once. A repeated id with another article is
    never dropped: it runs under the derived id ``ID@FILE:LINE`` (``#N`` added if another row
    of the input has that id) and a warning says so.
    """
    rows = list(rows)
    taken = {row.id for row in rows}  # a derived id must be one no row of the input uses
    pending: list[Row] = []
    order: list[str] = []
    seen: dict[str, tuple[str, str]] = {}  # id -> (where, fingerprint of the article)
    counts = {"skipped": 0, "duplicates": 0, "renamed": 0}
    for row in rows:
        mark = _fingerprint(row)
        if row.id in seen:
            first, first_mark = seen[row.id]
            counts["duplicates"] += 1
            if mark == first_mark:
                logger.warning(
                    "%s: duplicate id %r (first at %s), the same article; processed once",
                    row.where,
                    row.id,
                    first,
                )
                continue
            given, row = row.id, _renamed(row, taken)
            taken.add(row.id)
            counts["renamed"] += 1
            logger.warning(
                "%s: id %r is already used by %s for another article; written as %r",
                row.where,
                given,
                first,
                row.id,
            )
        seen[row.id] = (row.where, mark)
        order.append(row.id)
        if row.id in done:
            counts["skipped"] += 1
        else:
            pending.append(row)
    return pending, order, counts


def _fingerprint(row: Row) -> str:
    if row.article is None:
        return f"error:{row.error}"
    body = row.article.model_dump_json(exclude={"id"})
    return hashlib.sha256(body.encode()).hexdigest()


def _renamed(row: Row, taken: set[str]) -> Row:
    new_id = f"{row.id}@{row.where}"
    n = 1
    while new_id in taken:
        n += 1
        new_id = f"{row.id}@{row.where}#{n}"
    article = row.article.model_copy(update={"id": new_id}) if row.article else None
    return Row(id=new_id, where=row.where, article=article, error=row.error)
