"""Merge scoring for briefings: are items merged when they should be, and kept apart otherwise?

    python -m eval.briefing [--references eval/data/briefings.jsonl] [--data-dir DIR] [--out DIR]
    standpoint eval --briefings [FILE] ...      (the same numbers, in the eval report)

A reference line (eval/data/briefings.jsonl) is one event reported by several articles: the
articles (``id``, ``source``: ``seeds`` or the name of a JSONL file in the data dir, and
``outlet``), and the items: ``actor``, ``kind``, a short ``claim`` and, per source, the
verbatim ``quote`` with ``start``/``end`` in the article's cleaned text. Quotes of one item from
different articles should merge; an item with one article is single-source.

Each article goes through the default pipeline; each extracted item is matched to the
reference items whose quotes it overlaps (half of the shorter span); items matching none are
left out. Over every pair of matched items: a pair is *gold* when they share a reference item,
*predicted* when the briefing merged them. Precision = correct merged pairs / merged pairs;
recall = correct merged pairs / gold pairs, summed over events (micro).

The similarity weight and threshold are chosen on these references: for each (weight,
threshold) on a grid, pairs are counted per event; the choice is the best pooled F1 (ties:
the middle of the tied thresholds). Leave-one-event-out says how well that choice carries to
an unseen event: each event is scored with the parameters chosen on the other events.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.metrics import prf
from service import briefing as brief_module
from service.briefing import Actor, ActorResolver, Node, cluster, collect_items, similarities
from service.errors import InputError
from service.inputs import read_jsonl
from service.resources import seeds_dir
from service.schemas import Position, Result

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCES = REPO_ROOT / "eval" / "data" / "briefings.jsonl"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "eval-data"
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
THRESHOLDS = tuple(round(0.2 + 0.025 * i, 3) for i in range(29))  # 0.2 .. 0.9

Counts = tuple[int, int, int]  # true positive, false positive, false negative pairs


@dataclass
class Event:
    """One reference event with its articles' pipeline results and matched items."""

    name: str
    reference: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    refs: list[set[str]] = field(default_factory=list)  # reference items each node matches
    cosine: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    dice: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    allowed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))


# Loading ----------------------------------------------------------------------------------------
def read_references(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path))


def article_texts(
    reference: dict[str, Any], *, data_dir: Path, seeds: Path
) -> list[dict[str, Any]]:
    """The event's articles as ``{id, text}``, from seeds/ or ``data_dir/<source>.jsonl``."""
    articles = []
    for entry in reference["articles"]:
        if entry["source"] == "seeds":
            text = (seeds / f"{entry['id']}.txt").read_text(encoding="utf-8")
        else:
            path = data_dir / f"{entry['source']}.jsonl"
            if not path.is_file():
                raise InputError(f"{path}: not found (give --data-dir)")
            rows = read_jsonl(path)
            text = next((r["text"] for r in rows if r.get("id") == entry["id"]), "")
            if not text:
                raise InputError(f"{entry['id']}: not in {path}")
        articles.append({"id": entry["id"], "text": text})
    return articles


def load_events(references: Path, *, data_dir: Path, seeds: Path | None = None) -> list[Event]:
    """Every event, its articles run through the default pipeline, items matched and their
    similarities computed once."""
    from service.pipeline import build_pipeline
    from service.settings import Settings

    pipeline = build_pipeline(Settings())
    events = []
    for reference in read_references(references):
        articles = article_texts(reference, data_dir=data_dir, seeds=seeds or seeds_dir())
        outcomes = pipeline.run(list(articles))
        results = [o for o in outcomes if isinstance(o, Result)]
        if len(results) != len(articles):
            raise InputError(f"{reference['event']}: an article failed in the pipeline")
        check_offsets(reference, results)
        event = Event(reference["event"], reference, results=results)
        event.nodes = collect_items(results)
        event.refs = match(event.nodes, reference, results)
        prepare(event)
        events.append(event)
    return events


def check_offsets(reference: dict[str, Any], results: Sequence[Result]) -> None:
    """Each source quote at its offsets in the cleaned text; where cleaning has changed since
    the reference was written, the offsets are moved to where the quote now stands."""
    from service.grounding import locate_quote

    texts = {r.id: r.text for r in results}
    for item in reference["items"]:
        for s in item["sources"]:
            text = texts[s["article"]]
            if text[s["start"] : s["end"]] == s["quote"]:
                continue
            span = locate_quote(s["quote"], text)
            if span is not None and text[span[0] : span[1]] == s["quote"]:
                s["start"], s["end"] = span
            else:
                raise InputError(
                    f"{reference['event']}/{item['id']}: quote not at {s['start']}:{s['end']} "
                    f"of {s['article']}'s cleaned text"
                )


def match(
    nodes: Sequence[Node], reference: dict[str, Any], results: Sequence[Result]
) -> list[set[str]]:
    """The reference items each extracted item overlaps (at least half of the shorter span)."""
    ids = [r.id for r in results]
    found: list[set[str]] = []
    for node in nodes:
        article = ids[node.article]
        hits = set()
        for item in reference["items"]:
            for s in item["sources"]:
                if s["article"] != article:
                    continue
                overlap = min(node.item.end, s["end"]) - max(node.item.start, s["start"])
                shorter = min(node.item.end - node.item.start, s["end"] - s["start"])
                if overlap > 0 and overlap >= 0.5 * shorter:
                    hits.add(item["id"])
        found.append(hits)
    return found


def prepare(event: Event) -> None:
    """Similarities and compatibility of the matched items only (the rest are not scored)."""
    from service.briefing import compatibility

    keep = [i for i, refs in enumerate(event.refs) if refs]
    event.nodes = [event.nodes[i] for i in keep]
    event.refs = [event.refs[i] for i in keep]
    if event.nodes:
        event.cosine, event.dice = similarities(event.nodes)
        event.allowed = compatibility(event.nodes)


def oracle_event(event: Event) -> Event:
    """The same event with the reference's own items (quotes as claims, the reference's
    actors): scores the claim similarity alone, free of extraction and actor errors."""
    ids = [r.id for r in event.results]
    resolver = ActorResolver([r.text for r in event.results])
    nodes, refs = [], []
    for item in event.reference["items"]:
        for s in item["sources"]:
            a = ids.index(s["article"])
            position = Position(
                actor=item["actor"],
                issue=s["quote"],
                stance=item.get("stance") or "neutral",
                quote=s["quote"],
                start=s["start"],
                end=s["end"],
            )
            actor = resolver.resolve(item["actor"], a)
            nodes.append(Node(a, position, Actor(actor.kind, actor.name, actor.groups), s["quote"]))
            refs.append({item["id"]})
    oracle = Event(event.name + " (oracle)", event.reference, results=event.results)
    oracle.nodes, oracle.refs = nodes, refs
    prepare(oracle)
    return oracle


# Scoring ----------------------------------------------------------------------------------------
def pair_counts(event: Event, weight: float, threshold: float) -> Counts:
    if len(event.nodes) < 2:
        return 0, 0, 0
    similarity = weight * event.cosine + (1 - weight) * event.dice
    label = np.empty(len(event.nodes), dtype=int)
    for number, members in enumerate(cluster(similarity, event.allowed, threshold)):
        label[members] = number
    tp = fp = fn = 0
    for i in range(len(event.nodes)):
        for j in range(i + 1, len(event.nodes)):
            gold = bool(event.refs[i] & event.refs[j])
            merged = bool(label[i] == label[j])
            tp += gold and merged
            fp += merged and not gold
            fn += gold and not merged
    return tp, fp, fn


def scores(counts: Counts) -> dict[str, float]:
    return prf(*counts)


def add(counts: Sequence[Counts]) -> Counts:
    return (sum(c[0] for c in counts), sum(c[1] for c in counts), sum(c[2] for c in counts))


def sweep(events: Sequence[Event]) -> dict[tuple[float, float], list[Counts]]:
    """Pair counts per event for every (weight, threshold) of the grid."""
    return {(w, t): [pair_counts(e, w, t) for e in events] for w in WEIGHTS for t in THRESHOLDS}


def choose(
    grid: dict[tuple[float, float], list[Counts]], events: Sequence[int]
) -> tuple[float, float]:
    """The (weight, threshold) with the best pooled F1 over the given events, smoothed over
    the neighbouring thresholds (a plateau beats a lone peak that one pair can make); among
    ties, the weight with the most tied thresholds, nearest 0.5, and the middle of its run."""
    f1 = {k: scores(add([v[i] for i in events]))["f1"] for k, v in grid.items()}
    smooth = {}
    for w, t in f1:
        at = THRESHOLDS.index(t)
        near = THRESHOLDS[max(0, at - 1) : at + 2]
        smooth[(w, t)] = sum(f1[(w, n)] for n in near) / len(near)
    best = max(smooth.values())
    tied: dict[float, list[float]] = {}
    for (w, t), value in smooth.items():
        if value >= best - 1e-9:
            tied.setdefault(w, []).append(t)
    weight = max(tied, key=lambda w: (len(tied[w]), -abs(w - 0.5)))
    thresholds = sorted(tied[weight])
    return weight, thresholds[(len(thresholds) - 1) // 2]


def evaluate(events: Sequence[Event]) -> dict[str, Any]:
    """Grid, chosen parameters, leave-one-event-out scores, and per-event detail."""
    grid = sweep(events)
    everything = list(range(len(events)))
    weight, threshold = choose(grid, everything)
    held_out: list[dict[str, Any]] = []
    held_out_counts: list[Counts] = []
    for i, event in enumerate(events):
        w, t = choose(grid, [j for j in everything if j != i])
        held_out_counts.append(pair_counts(event, w, t))
        held_out.append(
            {"event": event.name, "weight": w, "threshold": t, **scores(held_out_counts[-1])}
        )
    chosen = grid[(weight, threshold)]
    per_event = []
    for event, counts in zip(events, chosen, strict=True):
        per_event.append(
            {
                "event": event.name,
                "articles": len(event.results),
                "reference_items": len(event.reference["items"]),
                "matched_items": len(event.nodes),
                "coverage": coverage(event),
                **scores(counts),
                **flags(event, weight, threshold),
            }
        )
    oracles = [oracle_event(e) for e in events]
    oracle_counts = [pair_counts(o, weight, threshold) for o in oracles]
    return {
        "references_events": [e.name for e in events],
        "grid": {"weights": list(WEIGHTS), "thresholds": list(THRESHOLDS)},
        "chosen": {"weight": weight, "threshold": threshold, **scores(add(chosen))},
        "leave_one_event_out": {
            **scores(add(held_out_counts)),
            "per_event": held_out,
        },
        "per_event": per_event,
        "oracle_items": {
            **scores(add(oracle_counts)),
            "per_event": [
                {"event": e.name, **scores(c)} for e, c in zip(events, oracle_counts, strict=True)
            ],
        },
        "threshold_curve": [{"threshold": t, **scores(add(grid[(weight, t)]))} for t in THRESHOLDS],
        "pipeline": {
            "summarizer": events[0].results[0].meta.summarizer if events else None,
            "extractor": events[0].results[0].meta.extractor if events else None,
        },
        "shipped": {
            "weight": brief_module.EMBEDDING_WEIGHT,
            "threshold": brief_module.MERGE_THRESHOLD,
            **scores(
                add(
                    [
                        pair_counts(e, brief_module.EMBEDDING_WEIGHT, brief_module.MERGE_THRESHOLD)
                        for e in events
                    ]
                )
            ),
        },
    }


def coverage(event: Event) -> float:
    """Share of reference quotes overlapped by some extracted item."""
    quotes = [
        (s["article"], s["start"], s["end"]) for i in event.reference["items"] for s in i["sources"]
    ]
    ids = [r.id for r in event.results]
    spans = [(ids[n.article], n.item.start, n.item.end) for n in event.nodes]
    hit = sum(any(a == b and min(e, f) - max(s, t) > 0 for b, t, f in spans) for a, s, e in quotes)
    return hit / len(quotes) if quotes else 1.0


def flags(event: Event, weight: float, threshold: float) -> dict[str, Any]:
    """How many multi-source reference items came out merged across at least two of their
    articles, and how many single-source ones stayed single-source."""
    similarity = weight * event.cosine + (1 - weight) * event.dice
    clusters = cluster(similarity, event.allowed, threshold) if event.nodes else []
    articles_of = [{event.nodes[i].article for i in members} for members in clusters]
    where = {i: n for n, members in enumerate(clusters) for i in members}
    merged = single = multi_total = single_total = 0
    for item in event.reference["items"]:
        carried = {s["article"] for s in item["sources"]}
        found = [i for i, refs in enumerate(event.refs) if item["id"] in refs]
        if not found:
            continue
        if len(carried) > 1:
            multi_total += 1
            merged += any(len(articles_of[where[i]]) > 1 for i in found)
        else:
            single_total += 1
            single += all(len(articles_of[where[i]]) == 1 for i in found)
    return {
        "multi_source_merged": f"{merged}/{multi_total}",
        "single_source_kept": f"{single}/{single_total}",
    }


# Report -----------------------------------------------------------------------------------------
def render_markdown(results: dict[str, Any]) -> str:
    def pct(x: float) -> str:
        return f"{x:.3f}"

    chosen, loeo, shipped = results["chosen"], results["leave_one_event_out"], results["shipped"]
    lines = [
        "## Briefings: merging items across articles",
        "",
        f"Events: {len(results['per_event'])} ({', '.join(results['references_events'])}); "
        f"pipeline {results['pipeline']['summarizer']}+{results['pipeline']['extractor']}. "
        "Pairs of extracted items that match reference items; a pair is gold when both match "
        "one reference item.",
        "",
        "| parameters | precision | recall | F1 | tp/fp/fn |",
        "|---|---|---|---|---|",
        f"| chosen on all events: weight {chosen['weight']:g}, threshold {chosen['threshold']:g} "
        f"| {pct(chosen['precision'])} | {pct(chosen['recall'])} | {pct(chosen['f1'])} "
        f"| {chosen['tp']}/{chosen['fp']}/{chosen['fn']} |",
        f"| leave-one-event-out (each event scored with parameters chosen on the others) "
        f"| {pct(loeo['precision'])} | {pct(loeo['recall'])} | {pct(loeo['f1'])} "
        f"| {loeo['tp']}/{loeo['fp']}/{loeo['fn']} |",
        f"| shipped (service/briefing.py): weight {shipped['weight']:g}, threshold "
        f"{shipped['threshold']:g} | {pct(shipped['precision'])} | {pct(shipped['recall'])} "
        f"| {pct(shipped['f1'])} | {shipped['tp']}/{shipped['fp']}/{shipped['fn']} |",
        f"| oracle items (reference quotes and actors), chosen parameters "
        f"| {pct(results['oracle_items']['precision'])} | {pct(results['oracle_items']['recall'])} "
        f"| {pct(results['oracle_items']['f1'])} | {results['oracle_items']['tp']}/"
        f"{results['oracle_items']['fp']}/{results['oracle_items']['fn']} |",
        "",
        "| event | articles | ref items | matched items | quote coverage | P | R | F1 "
        "| multi-source merged | single-source kept | LOEO weight/threshold | LOEO F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, held in zip(results["per_event"], loeo["per_event"], strict=True):
        lines.append(
            f"| {row['event']} | {row['articles']} | {row['reference_items']} "
            f"| {row['matched_items']} | {pct(row['coverage'])} | {pct(row['precision'])} "
            f"| {pct(row['recall'])} | {pct(row['f1'])} | {row['multi_source_merged']} "
            f"| {row['single_source_kept']} | {held['weight']:g}/{held['threshold']:g} "
            f"| {pct(held['f1'])} |"
        )
    curve = results["threshold_curve"]
    lines += [
        "",
        f"Threshold curve at weight {chosen['weight']:g} (pooled over events):",
        "",
        "| threshold | " + " | ".join(f"{c['threshold']:g}" for c in curve[::2]) + " |",
        "|---|" + "---|" * len(curve[::2]),
        "| precision | " + " | ".join(pct(c["precision"]) for c in curve[::2]) + " |",
        "| recall | " + " | ".join(pct(c["recall"]) for c in curve[::2]) + " |",
        "",
    ]
    return "\n".join(lines)


def run_briefing_eval(
    references: Path = DEFAULT_REFERENCES, *, data_dir: Path = DEFAULT_DATA_DIR
) -> dict[str, Any]:
    events = load_events(references, data_dir=data_dir)
    results = evaluate(events)
    results["references"] = str(references)
    return results


def write_briefing_eval(references: Path, *, data_dir: Path, out: Path) -> dict[str, Any]:
    """Run the briefing eval and write ``out/briefings.json`` and ``out/briefings.md``."""
    results = run_briefing_eval(references, data_dir=data_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "briefings.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "briefings.md").write_text(render_markdown(results) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=Path, default=DEFAULT_REFERENCES)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, help="folder for briefings.json and briefings.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.out:
        results = write_briefing_eval(args.references, data_dir=args.data_dir, out=args.out)
    else:
        results = run_briefing_eval(args.references, data_dir=args.data_dir)
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
