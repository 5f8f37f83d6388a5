"""How articles come in, for every door: ``parse_article`` and the file and JSONL readers.

``standpoint summarize``, ``standpoint batch``, Ray and the pipeline itself (so the API and
``summarize_many`` too) turn what they were given into an ``Article`` through
``parse_article``: one model (``service.schemas.Article``), one behaviour. Readers never raise
for one bad file or line: that row carries its ``error`` and the others go on.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from service.errors import InputError, StandpointError, first_error, printable
from service.schemas import Article, ArticleId, FailedArticle

TEXT_SUFFIXES = {".txt", ".text", ".md"}
HTML_SUFFIXES = {".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
# A raw file or line over this many times STANDPOINT_MAX_CHARS is refused unread (HTML pages
# are much longer than their text, so the text limit itself is checked after cleaning).
RAW_LIMIT_FACTOR = 50

_ID: TypeAdapter[str] = TypeAdapter(ArticleId)


def parse_article(data: Any) -> Article:
    """``data`` (a decoded JSON object) as an Article, or an InputError saying what is wrong."""
    if isinstance(data, Article):
        return data
    if not isinstance(data, dict):
        raise InputError(f"an article must be a JSON object, not {type(data).__name__}")
    try:
        return Article.model_validate(data)
    except ValidationError as exc:
        raise InputError(first_error(exc), article_id=valid_id(data.get("id"))) from exc


def valid_id(value: Any) -> str | None:
    """``value`` as an article id (a string, or an integer made one), or None if it is none."""
    try:
        return _ID.validate_python(value)
    except ValidationError:
        return None


@dataclass
class Row:
    """One input article, or the reason it could not be read (then ``article`` is None)."""

    id: str
    where: str
    article: Article | None = None
    error: str | None = None


# Files, folders, globs --------------------------------------------------------------------
def input_files(spec: str) -> list[Path]:
    """The files a spec names: a file, a folder's readable files, or a glob's matches."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _readable(p))
        if not files:
            raise StandpointError(f"{spec}: no .txt, .html or .jsonl files in this folder")
        return files
    if path.is_file():
        return [path]
    files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not files:
        raise StandpointError(f"{spec}: no such file or folder, and no file matches it as a glob")
    return files


def read_rows(spec: str, *, max_chars: int) -> Iterator[Row]:
    """Rows from a JSONL file, a .txt/.html file, a folder of them, or a glob, in stable order.

    Raises only when the spec names no file at all; one bad file or line is an error row.
    """
    for file in input_files(spec):
        if file.suffix.lower() in JSONL_SUFFIXES:
            yield from _jsonl_file_rows(file, max_chars=max_chars)
        else:
            yield _file_row(file, max_chars=max_chars)


def read_paths(specs: Iterable[str], *, max_chars: int) -> Iterator[Row]:
    """Rows from several specs; one that names no file is an error row, not the end."""
    for spec in specs:
        try:
            files = input_files(spec)
        except StandpointError as exc:
            yield Row(id=printable(spec), where=printable(spec), error=exc.message)
            continue
        for file in files:
            if file.suffix.lower() in JSONL_SUFFIXES:
                yield from _jsonl_file_rows(file, max_chars=max_chars)
            else:
                yield _file_row(file, max_chars=max_chars)


def read_briefing_articles(
    paths: Sequence[str], *, max_chars: int
) -> tuple[list[dict[str, Any]], list[FailedArticle]]:
    """Articles for a briefing from .txt, .html and .jsonl files (JSONL rows may carry outlet
    and title); a file that cannot be read is a failure, not the end of the briefing."""
    articles: list[dict[str, Any]] = []
    failed: list[FailedArticle] = []
    for name in paths:
        try:
            if Path(name).suffix == ".jsonl":
                content = Path(name).read_text(encoding="utf-8")
                keep = ("id", "text", "html", "outlet", "title")
                articles += [
                    {k: row[k] for k in keep if row.get(k) is not None}
                    for row in jsonl_rows(name, content)
                ]
            else:
                for row in read_paths([name], max_chars=max_chars):
                    if row.article is None:
                        failed.append(
                            FailedArticle(id=Path(name).stem, status=422, message=str(row.error))
                        )
                    else:
                        articles.append(row.article.model_dump(exclude_none=True))
        except (InputError, OSError, UnicodeDecodeError) as exc:
            message = exc.message if isinstance(exc, InputError) else str(exc)
            failed.append(FailedArticle(id=Path(name).stem, status=422, message=message))
    return articles, failed


def _readable(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES


def _file_row(path: Path, *, max_chars: int) -> Row:
    """A .txt or .html file as one article, its id the file name without the extension."""
    row = Row(id=printable(path.stem), where=printable(str(path)))
    try:
        data = path.read_bytes()
    except OSError as exc:
        row.error = f"cannot read it ({exc.strerror})"
        return row
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
            _parse_into(row, {"id": row.id, key: content})
    return row


# JSONL ------------------------------------------------------------------------------------
def jsonl_rows(name: str, content: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL text (eval data); a bad line stops with its file and line."""
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        row = _loads(line)
        if isinstance(row, _Invalid):
            raise InputError(f"{name}:{number}: {row}")
        if not isinstance(row, dict):
            raise InputError(f"{name}:{number}: each line must be a JSON object")
        yield row


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file (eval data, annotations, references); a missing file or
    a bad line stops with an InputError naming the file (and line)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    yield from jsonl_rows(str(path), path.read_text(encoding="utf-8"))


def _jsonl_file_rows(path: Path, *, max_chars: int) -> Iterator[Row]:
    try:
        f = path.open("rb")
    except OSError as exc:
        yield Row(id=printable(str(path)), where=printable(str(path)), error=exc.strerror)
        return
    with f:
        for number, raw in enumerate(f, 1):
            if raw.strip():  # blank lines are not rows
                yield jsonl_row(raw, where=f"{printable(path.name)}:{number}", max_chars=max_chars)


def jsonl_lines(data: bytes, *, name: str) -> Iterator[tuple[str, bytes]]:
    """``(FILE:LINE, line)`` for each non-blank line of a JSONL file's bytes, numbered as
    ``standpoint batch`` numbers them."""
    for number, raw in enumerate(data.split(b"\n"), 1):
        if raw.strip():
            yield f"{printable(name)}:{number}", raw


def jsonl_row(raw: bytes, *, where: str, max_chars: int) -> Row:
    """One JSONL line as a Row. Without a usable ``id`` the row's id is ``where`` (FILE:LINE)."""
    row = Row(id=where, where=where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        row.error = f"not UTF-8 ({exc.reason} at byte {exc.start})"
        data = _loads(raw.decode("utf-8", "replace"))  # to keep its id if it has one
        if isinstance(data, dict):
            row.id = valid_id(data.get("id")) or row.id
        return row
    data = _loads(text)
    if isinstance(data, _Invalid):
        row.error = data
        return row
    if not isinstance(data, dict):
        row.error = "each line must be a JSON object"
        return row
    given = data.get("id")
    if given is None:
        data = {**data, "id": where}
    else:
        row.id = valid_id(given) or row.id
    if len(raw) > RAW_LIMIT_FACTOR * max_chars:
        row.error = f"the line has {len(raw)} bytes; too long (STANDPOINT_MAX_CHARS={max_chars})"
        return row
    _parse_into(row, data)
    return row


class _Invalid(str):
    """The reason a line is not JSON (a str subclass, so no JSON value can be mistaken for it)."""


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return _Invalid(f"invalid JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        return _Invalid("invalid JSON (nested too deeply)")


def _parse_into(row: Row, data: dict[str, Any]) -> None:
    try:
        row.article = parse_article(data)
    except InputError as exc:
        row.error = exc.message
