"""Does more annotated data still pay, and for which head? ``python -m eval.learning_curve``.

The learned stages' heads (``eval.training.train_heads`` with fixed cuts, the shipped layer,
pooling and C) are trained on 25%, 50% and 100% of each outer fold's training articles, first
drawn from the first 152 annotated articles (news_pool, summeval_dev, realsumm_dev) and then
from every annotated article, and scored on the same held-out fold (articles split by id hash,
5 folds; the held-out articles are the same for every training size). Each head is scored by a
threshold-free measure, so no cut tuned on one size favours it:

- demand, position: average precision of the sentence scores (sentences stating an item);
- stance: accuracy on the held-out sentences of annotated positions;
- actor: share of held-out item sentences whose top-scored candidate names an annotated actor
  (among sentences where some candidate does);
- salience: share of the held-out articles' oracle sentences among the head's top three.

Subsets are nested (the 25% are inside the 50%), drawn by a hash of the article id. Features
come from ``make train``'s cache (float32, layers 9-12-15), computed once if missing.

    python -m eval.learning_curve [--out runs/learning-curve.json] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from eval.annotations import DEFAULT_DATA_DIR, N_FOLDS
from eval.training import (
    ORACLE_SENTENCES,
    Config,
    Example,
    load_examples,
    matrix,
    model_features,
    train_heads,
)
from service.extraction import index_actors
from service.heads import DEFAULT_HEADS, STANCES, Heads, load_heads
from service.learned import actor_candidates, candidate_features, speakers
from service.settings import Settings
from service.stages import body_sentences

FIRST_SETS = ("news_pool", "summeval_dev", "realsumm_dev")
SHARES = (0.25, 0.5, 1.0)


def _order(e: Example) -> str:
    return hashlib.sha256(f"curve|{e.id}".encode()).hexdigest()


def subset(pool: list[Example], share: float) -> list[Example]:
    """The first ``share`` of ``pool`` in a fixed hashed order (nested across shares)."""
    ranked = sorted(pool, key=_order)
    return ranked[: max(1, round(share * len(ranked)))]


def score_heads(heads: Heads, held: list[Example], features: dict[str, np.ndarray]) -> dict:
    """The threshold-free score of every head on the held-out articles."""
    from eval.metrics import actor_matches

    layer, pooling = heads.layer, heads.pooling
    annotated = [e for e in held if e.reference is not None]
    scores: dict[str, float] = {}
    xs = {e.id: matrix(e, features, layer, pooling) for e in held}
    for kind in ("demand", "position"):
        p = np.concatenate([heads.heads[kind].proba(xs[e.id])[:, 1] for e in annotated])
        y = np.concatenate([getattr(e, kind) for e in annotated]).astype(int)
        scores[f"{kind}_ap"] = float(average_precision_score(y, p)) if y.any() else float("nan")
    correct = total = 0
    for e in annotated:
        proba = heads.heads["stance"].proba(xs[e.id])
        for j, gold in enumerate(e.stance):
            if gold is not None:
                total += 1
                correct += STANCES[int(np.argmax(proba[j]))] == gold
    scores["stance_accuracy"] = correct / total if total else float("nan")
    right = asked = 0
    for e in annotated:
        who = speakers(e.sentences, index_actors(e.text))
        for j, names_of in enumerate(e.actors):
            if not names_of:
                continue
            names = actor_candidates(e.sentences, j, who)
            marks = [any(actor_matches(n, g) for g in names_of) for n in names]
            if not any(marks):
                continue
            rows = np.stack([candidate_features(n, e.sentences, j, who, e.text) for n in names])
            best = int(np.argmax(heads.heads["actor"].proba(rows)[:, 1]))
            asked += 1
            right += marks[best]
    scores["actor_top1"] = right / asked if asked else float("nan")
    shares = []
    for e in (e for e in held if e.summary.strip() and e.oracle.any()):
        p = heads.heads["salience"].proba(xs[e.id])[:, 1]
        kept = set(body_sentences(e.sentences))
        body = [i for i, s in enumerate(e.sentences) if s in kept]
        top = sorted(body, key=lambda i: (-p[i], i))[:ORACLE_SENTENCES]
        shares.append(float(e.oracle[top].sum()) / float(e.oracle.sum()))
    scores["salience_recall3"] = float(np.mean(shares)) if shares else float("nan")
    return scores


def curve(
    examples: list[Example], features: dict[str, np.ndarray], config: Config, model_id: str
) -> dict[str, Any]:
    """Per (training pool, share): each head's score pooled over the 5 held-out folds."""
    per_fold: dict[tuple[str, float], list[dict[str, float]]] = defaultdict(list)
    sizes: dict[tuple[str, float], list[int]] = defaultdict(list)
    for fold in range(N_FOLDS):
        held = [e for e in examples if e.fold == fold]
        train = [e for e in examples if e.fold != fold]
        pools = {
            "first 152": [e for e in train if e.dataset in FIRST_SETS or e.reference is None],
            "all": train,
        }
        for pool_name, pool in pools.items():
            for share in SHARES:
                chosen = subset(pool, share)
                heads = train_heads(
                    chosen,
                    features,
                    config,
                    thresholds={"demand": 0.5, "position": 0.5, "actor": 0.0},
                    model_id=model_id,
                )
                per_fold[(pool_name, share)].append(score_heads(heads, held, features))
                sizes[(pool_name, share)].append(sum(e.reference is not None for e in chosen))
                print(f"fold {fold} {pool_name} {share:.0%}: done", file=sys.stderr, flush=True)
    rows = []
    for (pool_name, share), folds in per_fold.items():
        row: dict[str, Any] = {
            "pool": pool_name,
            "share": share,
            "annotated_articles_per_fold": float(np.mean(sizes[(pool_name, share)])),
        }
        for key in folds[0]:
            values = np.array([f[key] for f in folds], dtype=float)
            row[key] = float(np.nanmean(values))
            row[f"{key}_sd"] = float(np.nanstd(values))
        rows.append(row)
    return {"config": config.__dict__, "folds": N_FOLDS, "rows": rows}


def render(report: dict[str, Any]) -> str:
    keys = ("demand_ap", "position_ap", "stance_accuracy", "actor_top1", "salience_recall3")
    lines = [
        "| training pool | share | annotated articles | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for r in report["rows"]:
        cells = [f"{r[k]:.3f} ±{r[k + '_sd']:.3f}" for k in keys]
        lines.append(
            f"| {r['pool']} | {r['share']:.0%} | {r['annotated_articles_per_fold']:.0f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.learning_curve")
    parser.add_argument("--out", type=Path, default=Path("runs/learning-curve.json"))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    from service.model import load_model

    settings = Settings(threads=args.threads, summarizer="lead", extractor="rules")
    shipped = load_heads(DEFAULT_HEADS, model_id="SmolLM2-135M-Instruct")
    config = Config(shipped.layer, shipped.pooling, float(shipped.metadata["config"]["c"]))
    config.salience_c = shipped.metadata["config"].get("salience_c")
    examples = load_examples("all", args.data_dir, settings)
    chat = load_model(settings)
    local = chat.local  # type: ignore[attr-defined]
    features = model_features(examples, local, settings.cache_dir, str(local.model_id))
    report = curve(examples, features, config, str(local.model_id))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
