"""Results cached in SQLite (WAL), keyed by what determines them; shared by API and batch."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from service.schemas import Options, Result


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
    return hashlib.sha256(payload.encode()).hexdigest()


class ResultCache:
    """A key -> Result table. Safe to share between threads and between processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS results "
                "(key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
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
