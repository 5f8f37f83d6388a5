"""Hand-written annotations: loading them by dataset, checking them, and the article folds.

Annotation rows live in ``eval/data/annotations/<dataset>.jsonl`` (the fields are described in
``eval/data/GUIDELINES.md``); the article texts stay in the dataset files beside the checkout
and are matched by id and by the sha256 of the exact text annotated.

    python -m eval.annotations check [FILE ...] [--data-dir ../shared/eval-data]
    python -m eval.annotations stats
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.grounding import locate_quote
from service.inputs import read_jsonl

ANNOTATION_DIR = Path(__file__).parent / "data" / "annotations"
FOLDS_PATH = ANNOTATION_DIR / "folds.json"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval-data"
STANCES = {"support", "oppose", "conditional", "neutral"}
N_FOLDS = 5

_DEMAND_FIELDS = {"actor", "actor_aliases", "demand", "target", "conditions", "quote"}
_POSITION_FIELDS = {"actor", "actor_aliases", "issue", "stance", "quote"}
_ROW_FIELDS = {"id", "dataset", "domain", "text_sha256", "summary", "demands", "positions"}


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fold_of(article_id: str, n_folds: int = N_FOLDS) -> int:
    """The article's fold: a fixed function of its id, so a split never depends on order."""
    return int(hashlib.sha256(article_id.encode("utf-8")).hexdigest()[:8], 16) % n_folds


def annotation_files(directory: Path = ANNOTATION_DIR) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def load_annotations(
    datasets: Iterable[str] | None = None, directory: Path = ANNOTATION_DIR
) -> list[dict[str, Any]]:
    """Every annotation row, or those of the named datasets (file stems)."""
    wanted = set(datasets) if datasets is not None else None
    rows: list[dict[str, Any]] = []
    for path in annotation_files(directory):
        if wanted is None or path.stem in wanted:
            rows.extend(read_jsonl(path))
    return rows


def load_texts(dataset: str, data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, dict[str, Any]]:
    """The source rows of one dataset by id (each has at least ``text``)."""
    path = data_dir / f"{dataset}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"dataset {dataset!r} not found at {path}")
    return {str(row["id"]): row for row in read_jsonl(path)}


@dataclass
class CheckReport:
    rows: int = 0
    items: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    fields: Counter[str] = field(default_factory=Counter)  # non-empty span fields, by name
    verbatim: Counter[str] = field(default_factory=Counter)  # those found in the article

    @property
    def verbatim_share(self) -> float:
        total = sum(self.fields.values())
        return sum(self.verbatim.values()) / total if total else 1.0


SPAN_FIELDS = ("demand", "issue", "target", "conditions")


def is_span(value: str, text: str) -> bool:
    """Whether ``value`` is a span of ``text`` up to case, quote style and white space
    (guideline amendment 24: fields are the article's own words)."""
    return (
        locate_quote(value, text) is not None
        or locate_quote(value.lower(), text.lower()) is not None
    )


def count_spans(row: dict[str, Any], text: str, report: CheckReport) -> None:
    for item in [*(row.get("demands") or []), *(row.get("positions") or [])]:
        for name in SPAN_FIELDS:
            value = item.get(name) if isinstance(item, dict) else None
            if isinstance(value, str) and value.strip():
                report.fields[name] += 1
                report.verbatim[name] += is_span(value, text)


def check_row(row: dict[str, Any], text: str) -> list[str]:
    """What is wrong with one annotation row against its article text (empty when nothing)."""
    where = f"{row.get('dataset')}/{row.get('id')}"
    problems = []
    missing = _ROW_FIELDS - row.keys()
    if missing:
        problems.append(f"{where}: missing fields {sorted(missing)}")
    if row.get("text_sha256") != text_sha256(text):
        problems.append(f"{where}: text_sha256 does not match the article text")
    summary = row.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problems.append(f"{where}: empty summary")
    for kind, fields in (("demands", _DEMAND_FIELDS), ("positions", _POSITION_FIELDS)):
        items = row.get(kind)
        if not isinstance(items, list):
            problems.append(f"{where}: {kind} is not a list")
            continue
        for number, item in enumerate(items):
            label = f"{where} {kind}[{number}]"
            if not isinstance(item, dict) or set(item) != fields:
                got = sorted(item) if isinstance(item, dict) else type(item).__name__
                problems.append(f"{label}: fields {got}, expected {sorted(fields)}")
                continue
            if not isinstance(item["actor"], str) or not item["actor"].strip():
                problems.append(f"{label}: empty actor")
            if not isinstance(item["actor_aliases"], list):
                problems.append(f"{label}: actor_aliases is not a list")
            if locate_quote(str(item["quote"]), text) is None:
                problems.append(f"{label}: quote not found in the article: {item['quote']!r}")
            if kind == "positions" and item["stance"] not in STANCES:
                problems.append(f"{label}: stance {item['stance']!r} not in {sorted(STANCES)}")
            for span in ("target", "conditions"):
                value = item.get(span)
                if value is not None and (
                    not isinstance(value, str) or locate_quote(value, text) is None
                ):
                    problems.append(f"{label}: {span} {value!r} is not a span of the article")
    return problems


def check(rows: list[dict[str, Any]], data_dir: Path = DEFAULT_DATA_DIR) -> CheckReport:
    report = CheckReport()
    texts: dict[str, dict[str, dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for row in rows:
        dataset, article_id = str(row.get("dataset")), str(row.get("id"))
        if (dataset, article_id) in seen:
            report.problems.append(f"{dataset}/{article_id}: annotated twice")
            continue
        seen.add((dataset, article_id))
        if dataset not in texts:
            texts[dataset] = load_texts(dataset, data_dir)
        source = texts[dataset].get(article_id)
        if source is None:
            report.problems.append(f"{dataset}/{article_id}: no such article in {dataset}")
            continue
        report.rows += 1
        report.items["demands"] += len(row.get("demands") or [])
        report.items["positions"] += len(row.get("positions") or [])
        report.problems.extend(check_row(row, str(source["text"])))
        count_spans(row, str(source["text"]), report)
    return report


def folds(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    return {str(row["id"]): fold_of(str(row["id"])) for row in rows}


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.annotations")
    parser.add_argument("command", choices=["check", "stats", "folds"])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    paths = args.files or annotation_files()
    rows = [row for path in paths for row in read_jsonl(path)]
    if args.command == "folds":
        FOLDS_PATH.write_text(json.dumps(folds(rows), indent=0, sort_keys=True) + "\n")
        print(f"wrote {FOLDS_PATH} ({len(rows)} articles)")
        return 0
    report = check(rows, args.data_dir)
    for problem in report.problems:
        print(problem)
    by_domain: Counter[str] = Counter()
    for row in rows:
        by_domain[str(row.get("domain"))] += len(row.get("demands") or []) + len(
            row.get("positions") or []
        )
    print(
        f"{report.rows} articles, {report.items['demands']} demands, "
        f"{report.items['positions']} positions, {len(report.problems)} problems; "
        f"fields verbatim {sum(report.verbatim.values())} of {sum(report.fields.values())} "
        f"({report.verbatim_share:.1%})"
    )
    if args.command == "stats":
        kinds: Counter[tuple[str, str]] = Counter()
        articles: Counter[str] = Counter()
        for row in rows:
            domain = str(row.get("domain"))
            articles[domain] += 1
            kinds[(domain, "demands")] += len(row.get("demands") or [])
            kinds[(domain, "positions")] += len(row.get("positions") or [])
        print("  domain: articles, demands, positions, items")
        for domain, count in sorted(by_domain.items()):
            print(
                f"  {domain}: {articles[domain]}, {kinds[(domain, 'demands')]}, "
                f"{kinds[(domain, 'positions')]}, {count}"
            )
        for name in SPAN_FIELDS:
            print(f"  {name}: {report.verbatim[name]} of {report.fields[name]} verbatim")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(_main())
