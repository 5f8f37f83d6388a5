"""Inter-annotator agreement: item-level F1 between two annotations of the same articles.

    python -m eval.agreement FIRST.jsonl SECOND.jsonl [--data-dir ../shared/eval-data]

Items are matched with the eval's own rule (``eval.metrics.match_items``), once with each
annotation as the reference (the rule reads the reference's aliases), and the two F1s are
averaged. Kinds: ``demands``, ``positions``, ``positions_strict`` (same stance required) and
``items`` (demands and positions pooled, kind ignored); ``fields`` gives the eval's field
metrics between the two (``what`` token F1, target and conditions found or spurious, stance
accuracy, copied fields, exact actors), also averaged over both directions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eval.annotations import DEFAULT_DATA_DIR, load_texts
from eval.metrics import field_counts, field_rates, match_items, sum_field_counts
from service.inputs import read_jsonl

KINDS = ("demands", "positions", "positions_strict", "items")


def _items(row: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    if kind == "items":
        return [*row.get("demands", []), *row.get("positions", [])]
    return list(row.get("positions" if kind == "positions_strict" else kind, []))


def _f1(tp: int, predicted: int, reference: int) -> float:
    return 2 * tp / (predicted + reference) if predicted + reference else 1.0


def agreement(
    first: list[dict[str, Any]], second: list[dict[str, Any]], texts: dict[str, str]
) -> dict[str, dict[str, float]]:
    """Per kind: micro F1 over the articles both annotated (direction-averaged), and counts."""
    by_id = {str(r["id"]): r for r in second}
    shared = [r for r in first if str(r["id"]) in by_id]
    report: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        tp_ab = tp_ba = n_a = n_b = 0
        for a in shared:
            b = by_id[str(a["id"])]
            text = texts[str(a["id"])]
            items_a, items_b = _items(a, kind), _items(b, kind)
            strict = kind == "positions_strict"
            tp_ab += len(match_items(items_a, items_b, text, require_stance=strict))
            tp_ba += len(match_items(items_b, items_a, text, require_stance=strict))
            n_a += len(items_a)
            n_b += len(items_b)
        report[kind] = {
            "f1": (_f1(tp_ab, n_a, n_b) + _f1(tp_ba, n_b, n_a)) / 2,
            "first": n_a,
            "second": n_b,
            "matched": (tp_ab + tp_ba) / 2,
        }
    report["fields"] = field_agreement(shared, by_id, texts)
    report["articles"] = {"n": len(shared)}
    return report


def field_agreement(
    shared: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], texts: dict[str, str]
) -> dict[str, float]:
    """The eval's field metrics (``eval.metrics.field_rates``) with one annotator's items as
    the prediction and the other's as the reference, averaged over the two directions."""
    directions = []
    for flip in (False, True):
        counts = []
        for a in shared:
            b = by_id[str(a["id"])]
            predicted, reference = (b, a) if flip else (a, b)
            result = {"text": texts[str(a["id"])], **predicted}
            counts.append(field_counts(result, reference))
        directions.append(field_rates(sum_field_counts(counts)))
    return {k: (directions[0][k] + directions[1][k]) / 2 for k in directions[0]}


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.agreement")
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    first, second = list(read_jsonl(args.first)), list(read_jsonl(args.second))
    texts: dict[str, str] = {}
    for dataset in {str(r["dataset"]) for r in first}:
        texts.update({k: str(v["text"]) for k, v in load_texts(dataset, args.data_dir).items()})
    print(json.dumps(agreement(first, second, texts), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
