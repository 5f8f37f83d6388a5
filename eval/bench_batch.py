"""Batch throughput vs one article per call, with the real model: ``python -m eval.bench_batch``.

Both modes run in one process with one loaded model over the same articles (the seeds plus an
eval dataset, written to a temporary JSONL and read back with the batch reader), no cache,
summarizer ``model-write`` by default. Prints articles/min, generated tokens/s and the ratio,
and writes them as JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from service.batch import summarize_many
from service.errors import StandpointError
from service.inputs import read_jsonl, read_rows
from service.pipeline import build_pipeline
from service.schemas import Article
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)


def load_articles(*, seeds: Path, dataset: Path | None) -> list[Article]:
    """Seed .txt files and the dataset's {id, text} rows, via a temporary JSONL."""
    rows = [{"id": p.stem, "text": p.read_text()} for p in sorted(seeds.glob("*.txt"))]
    if dataset is not None:
        for item in read_jsonl(dataset):
            rows.append({"id": item["id"], "text": item["text"]})
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "bench.jsonl"
        source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        read = list(read_rows(str(source), max_chars=Settings().max_chars))
    return [r.article for r in read if r.article is not None]


def measure(label: str, run: Any, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    ok = [r for r in results if not isinstance(r, StandpointError)]
    tokens = sum(r.meta.generated_tokens for r in ok)
    row = {
        "mode": label,
        "articles": count,
        "failed": count - len(ok),
        "seconds": round(elapsed, 1),
        "articles_per_min": round(count / elapsed * 60, 2),
        "generated_tokens": tokens,
        "generated_tokens_per_s": round(tokens / elapsed, 1),
    }
    print(json.dumps(row))
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=Path, default=ROOT / "seeds")
    p.add_argument(
        "--dataset", type=Path, default=ROOT.parent / "shared/eval-data/negotiations.jsonl"
    )
    p.add_argument("--summarizer", default="model-write")
    p.add_argument("--extractor", default="rules")
    p.add_argument("--batch-size", type=int, default=None, help="default: STANDPOINT_BATCH_SIZE")
    p.add_argument("--output", type=Path, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    dataset = args.dataset if args.dataset.exists() else None
    articles = load_articles(seeds=args.seeds, dataset=dataset)
    settings = Settings(summarizer=args.summarizer, extractor=args.extractor)
    if args.batch_size:
        settings = settings.model_copy(update={"batch_size": args.batch_size})
    started = time.perf_counter()
    pipeline = build_pipeline(settings, load_model=True)
    print(f"model {pipeline.model_id} loaded in {time.perf_counter() - started:.1f} s; "
          f"{len(articles)} articles, batch size {settings.batch_size}")  # fmt: skip

    pipeline.run([{"id": "warm-up", "text": "The mayor said the talks will resume on Monday."}])
    single = measure(
        "one per call", lambda: [pipeline.run([a])[0] for a in articles], len(articles)
    )
    batched = measure("batched", lambda: summarize_many(articles, pipeline=pipeline), len(articles))
    ratio = batched["articles_per_min"] / single["articles_per_min"]
    print(f"batched / one per call: {ratio:.2f}x articles/min")
    if args.output:
        report = {
            "summarizer": args.summarizer, "extractor": args.extractor,
            "batch_size": settings.batch_size, "model": pipeline.model_id,
            "threads": settings.threads, "machine": platform.machine(),
            "runs": [single, batched], "ratio": round(ratio, 2),
        }  # fmt: skip
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
