"""Speed of the learned stages against the rules and model-json: ``python -m eval.bench_learned``.

All systems run in one process, one after another, on the same articles, with no result cache:

- **batch 1**: each seed article alone (one ``Pipeline.run`` call per article), seconds each;
- **batched**: ``--articles`` news_pool articles through ``summarize_many``, articles per minute;
- model-json is slow (it generates), so it gets ``--model-articles`` of the same articles.

The learned stages keep an article's features on its ``Work`` only for one pipeline call, so
every timed pass reads every article with the model. Peak RSS is read after the learned
passes, before the other systems run. Ratios are against the rules (centrality + rules)
measured in the same process. Writes the numbers as JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

from service.batch import summarize_many
from service.errors import StandpointError
from service.inputs import read_jsonl
from service.pipeline import Pipeline, build_pipeline
from service.resources import read_seeds
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval-data"
SYSTEMS = {
    "learned": ("learned", "learned"),
    "rules": ("centrality", "rules"),
    "model-json": ("centrality", "model-json"),
}


def pool_articles(path: Path, count: int) -> list[dict[str, str]]:
    rows = itertools.islice(read_jsonl(path), count)
    return [{"id": r["id"], "text": r["text"]} for r in rows]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def timed_batch1(pipeline: Pipeline, articles: list[dict[str, str]]) -> dict[str, float]:
    seconds = {}
    for article in articles:
        started = time.perf_counter()
        result = pipeline.run([article])[0]
        seconds[article["id"]] = round(time.perf_counter() - started, 3)
        if isinstance(result, StandpointError):
            raise SystemExit(f"{article['id']} failed: {result}")
    return seconds


def timed_batched(pipeline: Pipeline, articles: list[dict[str, str]]) -> dict[str, Any]:
    started = time.perf_counter()
    results = summarize_many(articles, pipeline=pipeline)
    elapsed = time.perf_counter() - started
    failed = sum(isinstance(r, StandpointError) for r in results)
    return {
        "articles": len(articles),
        "failed": failed,
        "seconds": round(elapsed, 1),
        "articles_per_min": round(len(articles) / elapsed * 60, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=Path, default=DATA / "news_pool.jsonl")
    p.add_argument("--articles", type=int, default=100)
    p.add_argument("--model-articles", type=int, default=4)
    p.add_argument("--systems", default="learned,rules,model-json")
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_learned.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.pool.exists():
        raise SystemExit(f"no such file: {args.pool} (the news_pool articles)")

    seeds = [seed.model_dump() for seed in read_seeds()]
    pool = pool_articles(args.pool, args.articles)
    load = os.getloadavg()[0]
    report: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": round(load, 2),
        "systems": {},
    }
    warm = {"id": "warm-up", "text": "The union demanded a raise. The mayor said she opposes it."}
    for name in args.systems.split(","):
        summarizer, extractor = SYSTEMS[name]
        settings = Settings(summarizer=summarizer, extractor=extractor)
        started = time.perf_counter()
        pipeline = build_pipeline(settings, load_model=name != "rules")
        loaded = round(time.perf_counter() - started, 1)
        pipeline.run([warm])
        row: dict[str, Any] = {"stages": f"{summarizer}+{extractor}", "load_seconds": loaded}
        row["batch1_seconds"] = timed_batch1(pipeline, seeds)
        count = args.model_articles if name == "model-json" else len(pool)
        row["batched"] = timed_batched(pipeline, pool[:count])
        if name == "learned":
            row["peak_rss_mb"] = round(peak_rss_mb(), 0)
        report["systems"][name] = row
        print(json.dumps({name: row}))
        del pipeline
    base = report["systems"].get("rules")
    if base:
        for row in report["systems"].values():
            row["articles_per_min_vs_rules"] = round(
                row["batched"]["articles_per_min"] / base["batched"]["articles_per_min"], 4
            )
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
