"""Snapshots of every registered stage's outputs, to show that a change leaves them as they were.

    python -m eval.outputs snapshot --out runs/outputs-before.jsonl [--model-dir DIR] [--limit N]
    python -m eval.outputs compare runs/outputs-before.jsonl runs/outputs-after.jsonl

A snapshot runs each summarizer (with the rules extractor) and each extractor (with the lead
summarizer) over the seeds, the 9 references' articles and the annotated articles, and writes one
line per stage and article: the result without its timings. Stages that read the model's
features (learned) run on the embedded model; the generative and scoring stages run on the model
in ``--model-dir`` (a small model folder, so a snapshot takes minutes, not hours) when given, and
are left out otherwise. ``compare`` prints every stage and article whose output differs and exits
1 when any does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from eval.annotations import DEFAULT_DATA_DIR, load_annotations
from eval.runner import DEFAULT_REFERENCES, load_articles

REPO_ROOT = Path(__file__).resolve().parents[1]
GENERATIVE = {"model-rank", "model-write", "model-score", "model-json"}


def articles(data_dir: Path, limit: int | None) -> list[dict[str, Any]]:
    """Seeds, the references' articles and the annotated articles, each once, by id."""
    chosen: dict[str, dict[str, Any]] = {}
    for path in sorted((REPO_ROOT / "seeds").glob("*.txt")):
        chosen[path.stem] = {"id": path.stem, "text": path.read_text(encoding="utf-8")}
    pairs = load_articles(
        references=DEFAULT_REFERENCES, dataset=data_dir / "negotiations.jsonl", limit=None
    )
    for article, _ in pairs:
        chosen.setdefault(str(article["id"]), dict(article))
    for row in load_annotations(["news_pool", "summeval_dev", "realsumm_dev"]):
        dataset = data_dir / f"{row['dataset']}.jsonl"
        chosen.setdefault(f"{row['dataset']}/{row['id']}", {"_file": dataset, "id": row["id"]})
    texts: dict[Path, dict[str, str]] = {}
    out = []
    for key, article in chosen.items():
        if "_file" in article:
            file = article.pop("_file")
            if file not in texts:
                rows = (json.loads(line) for line in file.open(encoding="utf-8") if line.strip())
                texts[file] = {str(r["id"]): r["text"] for r in rows}
            article["text"] = texts[file][str(article["id"])]
        out.append({"key": key, "article": {"id": article["id"], "text": article["text"]}})
    return out[:limit] if limit else out


def stage_pairs() -> list[tuple[str, str]]:
    from service.registry import registered

    pairs = [(name, "rules") for name in sorted(registered("summarizer"))]
    pairs += [("lead", name) for name in sorted(registered("extractor")) if name != "rules"]
    return [*pairs, ("learned", "learned")]  # the default: both stages read one pass


def snapshot(out: Path, *, model_dir: Path | None, data_dir: Path, limit: int | None) -> int:
    from service.pipeline import build_pipeline
    from service.settings import Settings

    chosen = articles(data_dir, limit)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for summarizer, extractor in stage_pairs():
            generative = {summarizer, extractor} & GENERATIVE
            if generative and model_dir is None:
                print(f"skipped {summarizer}+{extractor}: needs --model-dir", file=sys.stderr)
                continue
            model = str(model_dir) if generative else "embedded"
            settings = Settings(model=model, summarizer=summarizer, extractor=extractor)
            pipeline = build_pipeline(settings)
            started = time.perf_counter()
            results = pipeline.run([a["article"] for a in chosen])
            for a, result in zip(chosen, results, strict=True):
                record = {"stages": f"{summarizer}+{extractor}", "key": a["key"]}
                if isinstance(result, Exception):
                    record["error"] = f"{type(result).__name__}: {result}"
                else:
                    data = result.model_dump(mode="json")
                    data["meta"].pop("timings_ms", None)
                    record["result"] = data
                handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
            seconds = time.perf_counter() - started
            print(f"{summarizer}+{extractor}: {len(chosen)} articles in {seconds:.1f} s")
    return 0


def compare(before: Path, after: Path) -> int:
    def read(path: Path) -> dict[tuple[str, str], str]:
        rows = (json.loads(line) for line in path.open(encoding="utf-8") if line.strip())
        return {(r["stages"], r["key"]): json.dumps(r, sort_keys=True) for r in rows}

    old, new = read(before), read(after)
    differ = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    only = sorted(old.keys() ^ new.keys())
    for stages, key in differ:
        print(f"differs: {stages} {key}")
    for stages, key in only:
        print(f"in one snapshot only: {stages} {key}")
    pairs = {s for s, _ in old.keys() | new.keys()}
    print(
        f"{len(old.keys() & new.keys())} outputs compared over {len(pairs)} stage pairs: "
        f"{len(differ)} differ, {len(only)} in one snapshot only"
    )
    return 1 if differ or only else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.outputs")
    commands = parser.add_subparsers(dest="command", required=True)
    snap = commands.add_parser("snapshot")
    snap.add_argument("--out", type=Path, required=True)
    snap.add_argument("--model-dir", type=Path, help="model folder for the generative stages")
    snap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    snap.add_argument("--limit", type=int)
    cmp = commands.add_parser("compare")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "compare":
        return compare(args.before, args.after)
    return snapshot(args.out, model_dir=args.model_dir, data_dir=args.data_dir, limit=args.limit)


if __name__ == "__main__":
    sys.exit(main())
