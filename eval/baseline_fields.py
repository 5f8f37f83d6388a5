"""The shipped learned heads against the rules on every annotated article, with the field
metrics, per domain: ``python -m eval.baseline_fields``.

Reads the training feature cache (``make train``'s, float32 features stored in half precision),
so the whole set takes minutes, not the hours the pipeline would need on 2 cores: the learned
items are ``service.learned.items_for`` with the shipped heads, then the pipeline's output
checks (``service.checks.check_items``), as the learned extractor runs them; the rules are the
rules extractor, checked the same way. The shipped heads were trained on the first 152
articles (news_pool, summeval_dev, realsumm_dev): those rows are reported apart from the
articles the heads never saw.

    python -m eval.baseline_fields [--out runs/baseline-fields.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from eval.annotations import DEFAULT_DATA_DIR
from eval.learning_curve import FIRST_SETS
from eval.metrics import (
    field_counts,
    field_rates_ci,
    paired_field_difference,
    result_extraction_scores,
    sum_extraction_scores,
)
from eval.training import Example, load_examples, matrix, model_features
from service.checks import check_items
from service.extractors import Rules
from service.heads import DEFAULT_HEADS, load_heads
from service.learned import items_for
from service.schemas import Article
from service.settings import Settings
from service.stages import StageContext, Work


def outputs(e: Example, heads: Any, features: dict[str, Any], ctx: StageContext) -> dict:
    """Each system's checked items for one article, as result dicts."""
    results = {}
    learned = Work(article=Article(id=e.id, text=e.text), text=e.text, sentences=e.sentences)
    x = matrix(e, features, heads.layer, heads.pooling)
    learned.demands, learned.positions, _ = items_for(heads, e.text, e.sentences, x, learned.actors)
    rules = Work(article=Article(id=e.id, text=e.text), text=e.text, sentences=e.sentences)
    Rules().run([rules], ctx)
    for name, work in (("learned", learned), ("rules", rules)):
        check_items(work)
        results[name] = {
            "text": e.text,
            "demands": [d.model_dump() for d in work.demands],
            "positions": [p.model_dump() for p in work.positions],
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.baseline_fields")
    parser.add_argument("--out", type=Path, default=Path("runs/baseline-fields.json"))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    from service.model import load_model

    settings = Settings(threads=1, summarizer="lead", extractor="rules")
    examples = [e for e in load_examples("all", args.data_dir, settings) if e.reference]
    heads = load_heads(DEFAULT_HEADS, model_id="SmolLM2-135M-Instruct")
    chat = load_model(settings)
    features = model_features(examples, chat.local, settings.cache_dir, heads.model_id)  # type: ignore[attr-defined]
    ctx = StageContext(settings=settings, model=None, prompts={})
    counts: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for e in examples:
        seen = "trained on (first 152)" if e.dataset in FIRST_SETS else "unseen (news_pool2)"
        for system, result in outputs(e, heads, features, ctx).items():
            scores = result_extraction_scores(result, e.reference or {})
            fields = field_counts(result, e.reference or {})
            for group in (seen, f"{seen}: {e.domain}"):
                counts[(group, system)]["items"].append(scores)
                counts[(group, system)]["fields"].append(fields)
    report: dict[str, Any] = {}
    for (group, system), parts in sorted(counts.items()):
        micro = {
            kind: sum_extraction_scores([s[kind] for s in parts["items"]])
            for kind in ("demands", "positions", "positions_strict", "items_strict")
        }
        report.setdefault(group, {})[system] = {
            "articles": len(parts["items"]),
            "items": micro,
            "fields": field_rates_ci(parts["fields"]),
        }
    for group, systems in report.items():
        a, b = counts[(group, "learned")]["fields"], counts[(group, "rules")]["fields"]
        systems["learned - rules"] = paired_field_difference(a, b)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    keys: tuple[str, ...] = (
        "what_f1",
        "target_found",
        "target_spurious",
        "conditions_found",
        "stance_accuracy",
    )
    keys += ("what_copied", "actor_exact")
    lines = [
        "| articles | system | n | items F1 (kind-strict) | P | R | " + " | ".join(keys) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(keys),
    ]
    for group, systems in report.items():
        for system in ("learned", "rules"):
            s = systems[system]
            i = s["items"]["items_strict"]
            cells = [f"{s['fields'][k]['rate']:.3f}" for k in keys]
            lines.append(
                f"| {group} | {system} | {s['articles']} | {i['f1']:.3f} | {i['precision']:.3f} "
                f"| {i['recall']:.3f} | " + " | ".join(cells) + " |"
            )
        d = systems["learned - rules"]
        cells = [
            f"{d[k]['difference']:+.3f} [{d[k]['ci_low']:+.3f}, {d[k]['ci_high']:+.3f}]"
            if d[k]["ci_low"] is not None
            else "–"
            for k in keys
        ]
        lines.append(f"| {group} | learned − rules | | | | | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
