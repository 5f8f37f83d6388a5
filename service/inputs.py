"""Reading articles from files: .txt, .html and JSONL, each decoded strictly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.errors import InputError


def jsonl_rows(name: str, content: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL text; a bad line stops with its file and line number."""
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise InputError(f"{name}:{number}: each line must be a JSON object")
        yield row


def read_inputs(paths: list[str]) -> Iterator[dict[str, Any]]:
    """Articles from .txt, .html and .jsonl paths, as dicts for ``Article``."""
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InputError(f"{name}: no such file")
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            raise InputError(f"{name}: looks like a binary file, not text or HTML")
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        if path.suffix == ".jsonl":
            for row in jsonl_rows(name, content):
                yield {k: row[k] for k in ("id", "text", "html") if k in row}
        elif path.suffix in {".html", ".htm"}:
            yield {"id": path.stem, "html": content}
        else:
            yield {"id": path.stem, "text": content}
