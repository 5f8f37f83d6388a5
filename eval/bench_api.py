"""API benchmark: one seed request cold and cached, and 8 distinct articles sent one at a time
vs all at once (dynamic batching), in the same run, against a real server on loopback.

    python -m eval.bench_api [--dataset PATH] [--summarizer model-write]

The articles are the two seeds plus the first six rows of the dataset. Each phase gets its own
fresh result cache, so no phase answers from another's work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service.api import create_app
from service.inputs import read_jsonl
from service.model import load_model
from service.pipeline import build_pipeline
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _articles(dataset: Path, count: int) -> list[dict[str, str]]:
    seeds = [{"id": p.stem, "text": p.read_text()} for p in sorted((ROOT / "seeds").glob("*.txt"))]
    rows = list(read_jsonl(dataset))
    return (seeds + [{"id": r["id"], "text": r["text"]} for r in rows])[:count]


class _Server:
    """uvicorn in a thread on a free loopback port; stopped on exit."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        url = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


async def _post(client: httpx.AsyncClient, url: str, article: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    response = await client.post(url + "/v1/summaries", json=article)
    response.raise_for_status()
    body = response.json()
    return {"seconds": time.perf_counter() - started, "tokens": body["meta"]["generated_tokens"]}


async def _phase(url: str, articles: list[dict[str, str]], *, concurrent: bool) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=3600) as client:
        started = time.perf_counter()
        if concurrent:
            answers = await asyncio.gather(*(_post(client, url, a) for a in articles))
        else:
            answers = [await _post(client, url, a) for a in articles]
        wall = time.perf_counter() - started
    tokens = sum(a["tokens"] for a in answers)
    return {
        "wall_s": round(wall, 3),
        "articles_per_min": round(len(articles) / wall * 60, 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", type=Path, default=ROOT.parent / "shared/eval-data/negotiations.jsonl"
    )
    parser.add_argument("--summarizer", default="model-write")
    parser.add_argument("--extractor", default="rules")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_api.json")
    args = parser.parse_args(argv)

    articles = _articles(args.dataset, args.count)
    base = Settings(summarizer=args.summarizer, extractor=args.extractor, batch_size=args.count)
    model = load_model(base)
    pipeline = build_pipeline(base, model=model)
    report: dict[str, Any] = {
        "model": pipeline.model_id,
        "summarizer": args.summarizer,
        "extractor": args.extractor,
        "articles": len(articles),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for phase in ("latency", "one_at_a_time", "concurrent"):
            settings = base.model_copy(update={"cache_path": Path(tmp) / f"{phase}.sqlite"})
            with _Server(create_app(settings, pipeline)) as url:
                if phase == "latency":
                    cold = asyncio.run(_phase(url, articles[1:2], concurrent=False))
                    cached = asyncio.run(_phase(url, articles[1:2], concurrent=False))
                    report["seed_cold_s"], report["seed_cached_s"] = (
                        cold["wall_s"],
                        cached["wall_s"],
                    )
                else:
                    report[phase] = asyncio.run(
                        _phase(url, articles, concurrent=phase == "concurrent")
                    )
    report["throughput_ratio"] = round(
        report["concurrent"]["articles_per_min"] / report["one_at_a_time"]["articles_per_min"], 2
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
