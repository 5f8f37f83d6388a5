"""Cross-validation of the learned stages' heads (``standpoint train``, step 3).

Layer and pooling are chosen by cross-validation (article folds fixed by id hash, never a
sentence of a held-out article in training); then every head is cross-validated end to end:
items are built from held-out predictions and scored with the eval's own matching rule,
beside the rules on the same articles; summaries against lead-3 and centrality. Differences
between systems come with 95% bootstrap intervals over articles; ``render`` writes the report
as Markdown tables.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from typing import Any

import numpy as np
from tqdm import tqdm

from eval.annotations import N_FOLDS
from eval.metrics import (
    extraction_scores,
    field_counts,
    field_rates_ci,
    paired_field_difference,
    prf,
    rouge_lsum,
    sum_extraction_scores,
)
from eval.report import FIELD_COLUMNS, rate_cell
from eval.training import (
    LAYERS,
    ORACLE_SENTENCES,
    POOLINGS,
    SEED,
    Config,
    Example,
    best_threshold,
    expand_classes,
    fit,
    matrix,
    train_heads,
)
from service.article import split_sentences
from service.extraction import index_actors
from service.extractors import Rules
from service.heads import STANCES, Heads
from service.learned import items_for, salience
from service.schemas import Article
from service.settings import Settings
from service.stages import StageContext, Work, body_sentences
from service.summarizers import Centrality, Lead3

logger = logging.getLogger(__name__)

# Selection is in three steps: every layer and pooling at FIRST_C, then the other values of
# C_GRID at the winner (both by the sentence heads' cross-validated scores), then the salience
# head's own C from SALIENCE_C_GRID by its cross-validated oracle recall. (On the 152 articles,
# C=0.01 beat 0.1 and 1.0 at all 6 layer/pooling pairs, and layer 15 mean won at each C;
# C=1.0 fits were the slowest.)
FIRST_C = 0.01
C_GRID = (0.001, 0.003, 0.01, 0.03)
SALIENCE_C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03)


# ---------------------------------------------------------------------------------------------
# Selection: layer, pooling and C


def choose_config(
    examples: list[Example], features: dict[str, np.ndarray]
) -> tuple[Config, list[dict[str, Any]]]:
    """Layer, pooling and C by cross-validated sentence-level F1 (demand and position heads
    at the F1-best cut of the pooled out-of-fold scores) and stance accuracy: every layer and
    pooling at ``FIRST_C``, then the rest of ``C_GRID`` at the best of those."""
    annotated = [e for e in examples if e.reference is not None]
    table: list[dict[str, Any]] = []
    steps = len(LAYERS) * len(POOLINGS) + len(C_GRID) - 1 + len(SALIENCE_C_GRID)
    progress = tqdm(total=steps, desc="selection", unit="config", file=sys.stderr)

    def score(config: Config) -> None:
        scores = _sentence_cv(annotated, features, config)
        table.append({"layer": config.layer, "pooling": config.pooling, "c": config.c, **scores})
        logger.info("%s: %s", config, scores)
        progress.update()

    def best() -> Config:
        row = max(table, key=lambda r: r["demand_f1"] + r["position_f1"] + r["stance_accuracy"])
        return Config(int(row["layer"]), str(row["pooling"]), float(row["c"]))

    for layer in LAYERS:
        for pooling in POOLINGS:
            score(Config(layer, pooling, FIRST_C))
    first = best()
    for c in C_GRID:
        if c != FIRST_C:
            score(Config(first.layer, first.pooling, c))
    chosen = best()
    recall = {}
    for c in SALIENCE_C_GRID:
        recall[c] = _salience_cv(examples, features, chosen, c)
        table.append({"layer": chosen.layer, "pooling": chosen.pooling, "salience_c": c,
                      "salience_recall": recall[c]})  # fmt: skip
        progress.update()
    progress.close()
    chosen.salience_c = max(SALIENCE_C_GRID, key=lambda c: recall[c])
    return chosen, table


def _salience_cv(
    examples: list[Example], features: dict[str, np.ndarray], config: Config, c: float
) -> float:
    """Mean share of an article's oracle sentences among the salience head's top three
    (out of fold), over the articles that have a reference summary."""
    summary = [e for e in examples if e.summary.strip() and e.oracle.any()]
    shares = []
    for fold in range(N_FOLDS):
        train = [e for e in summary if e.fold != fold]
        x = np.concatenate([matrix(e, features, config.layer, config.pooling) for e in train])
        y = np.concatenate([e.oracle for e in train]).astype(int)
        head = fit(x, y, c=c, classes=["no", "salient"])
        for e in (e for e in summary if e.fold == fold):
            p = head.proba(matrix(e, features, config.layer, config.pooling))[:, 1]
            kept = set(body_sentences(e.sentences))
            body = [i for i, s in enumerate(e.sentences) if s in kept]
            top = sorted(body, key=lambda i: (-p[i], i))[:ORACLE_SENTENCES]
            shares.append(float(e.oracle[top].sum()) / float(e.oracle.sum()))
    return round(float(np.mean(shares)), 4)


def _sentence_cv(
    examples: list[Example], features: dict[str, np.ndarray], config: Config
) -> dict[str, float]:
    oof: dict[str, list[np.ndarray]] = defaultdict(list)
    correct = total = 0
    for fold in range(N_FOLDS):
        train = [e for e in examples if e.fold != fold]
        held = [e for e in examples if e.fold == fold]
        x = np.concatenate([matrix(e, features, config.layer, config.pooling) for e in train])
        hx = np.concatenate([matrix(e, features, config.layer, config.pooling) for e in held])
        for kind in ("demand", "position"):
            y = np.concatenate([getattr(e, kind) for e in train]).astype(int)
            head = fit(x, y, c=config.c, classes=["no", kind])
            oof[kind].append(head.proba(hx)[:, 1])
            oof[kind + "_y"].append(np.concatenate([getattr(e, kind) for e in held]))
        stance = [s for e in train for s in e.stance]
        rows = [i for i, s in enumerate(stance) if s is not None]
        labels = np.array([STANCES.index(stance[i]) for i in rows])
        head = expand_classes(fit(x[rows], labels, c=config.c, classes=list(STANCES)), labels)
        held_stance = [s for e in held for s in e.stance]
        for i, s in enumerate(held_stance):
            if s is not None:
                total += 1
                correct += int(STANCES[int(np.argmax(head.proba(hx[i : i + 1])[0]))] == s)
    out: dict[str, float] = {}
    for kind in ("demand", "position"):
        p, y = np.concatenate(oof[kind]), np.concatenate(oof[kind + "_y"])
        cut = best_threshold(p, y)
        pred = p >= cut
        tp = float((pred & y).sum())
        out[f"{kind}_f1"] = round(2 * tp / (pred.sum() + y.sum()), 4) if y.sum() else 0.0
    out["stance_accuracy"] = round(correct / total, 4) if total else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# End to end: the learned stages beside rules, lead-3 and centrality


# (group, system, kind) -> one score dict per held-out article; (group, summarizer) -> ROUGE-Lsum
Counts = dict[tuple[str, str, str], list[dict[str, float]]]
Rouge = dict[tuple[str, str], list[float]]


def cross_validate(
    examples: list[Example], features: dict[str, np.ndarray], config: Config, *, model_id: str
) -> tuple[dict[str, Any], dict[str, float]]:
    """End-to-end held-out scores of the learned stages beside rules / lead-3 / centrality,
    overall and per domain; and the final thresholds from the out-of-fold predictions."""
    counts: Counts = defaultdict(list)
    rouge: Rouge = defaultdict(list)
    settings = Settings(summarizer="lead", extractor="rules")
    ctx = StageContext(settings=settings, model=None, prompts={})
    oof_thresholds: list[dict[str, float]] = []
    for fold in tqdm(range(N_FOLDS), desc="cross-validation", unit="fold", file=sys.stderr):
        train = [e for e in examples if e.fold != fold]
        held = [e for e in examples if e.fold == fold]
        heads = train_heads(train, features, config, model_id=model_id)
        oof_thresholds.append(heads.thresholds)
        for e in held:
            x = matrix(e, features, config.layer, config.pooling)
            if e.reference is not None:
                for system, scores in _item_scores(e, e.reference, heads, x, ctx).items():
                    for group in (e.domain, "all"):
                        for kind, score in scores.items():
                            counts[(group, system, kind)].append(score)
            if e.summary.strip():
                source = "cnn-dm" if e.domain == "cnn-dm" else "news_pool"
                for name, value in _summary_scores(e, heads, x, settings).items():
                    for group in (source, "all"):
                        rouge[(group, name)].append(value)
    report = {
        "extraction": _extraction_report(counts),
        "summaries": _summary_report(rouge),
        "differences": _differences(counts, rouge),
    }
    return report, _mean_thresholds(oof_thresholds)


def _item_scores(
    e: Example, reference: dict[str, Any], heads: Heads, x: np.ndarray, ctx: StageContext
) -> dict[str, dict[str, dict[str, float]]]:
    """Per system (learned, rules): the held-out article's demand, position and stance-strict
    position scores against its annotation."""
    demands, positions, _ = items_for(heads, e.text, e.sentences, x, index_actors(e.text))
    work = Work(article=_article(e), text=e.text, sentences=e.sentences)
    Rules().run([work], ctx)
    systems = {"learned": (demands, positions), "rules": (work.demands, work.positions)}
    scores = {}
    for system, (d, p) in systems.items():
        d_items = [i.model_dump() for i in d]
        p_items = [i.model_dump() for i in p]
        scores[system] = {
            "demands": extraction_scores(d_items, reference["demands"], e.text),
            "positions": extraction_scores(p_items, reference["positions"], e.text),
            "positions_strict": extraction_scores(
                p_items, reference["positions"], e.text, require_stance=True
            ),
            "fields": field_counts(
                {"text": e.text, "demands": d_items, "positions": p_items}, reference
            ),
        }
    return scores


def _summary_scores(
    e: Example, heads: Heads, x: np.ndarray, settings: Settings
) -> dict[str, float]:
    """ROUGE-Lsum against the held-out article's reference summary of its three most salient
    body sentences (learned), of lead-3 and of centrality."""
    k = 3
    body = body_sentences(e.sentences)
    score = dict(zip(e.sentences, salience(heads, x), strict=True))
    learned = sorted(sorted(body, key=lambda s: (-score[s], s.start))[:k], key=lambda s: s.start)
    work = Work(article=_article(e), text=e.text, sentences=e.sentences)
    summaries = {"learned": " ".join(s.text for s in learned)}
    for name, stage in (("lead3", Lead3()), ("centrality", Centrality())):
        stage_ctx = StageContext(
            settings=settings.model_copy(update={"summary_sentences": k}),
            model=None,
            prompts={},
        )
        stage.run([work], stage_ctx)
        summaries[name] = work.summary
    reference = "\n".join(_lines(e.summary))
    return {name: rouge_lsum("\n".join(_lines(s)), reference) for name, s in summaries.items()}


def _extraction_report(counts: Counts) -> dict[str, Any]:
    """Per group and system: each kind micro-averaged over the articles, demands and positions
    pooled (``items_strict`` with the stance, ``items`` without), and the article count."""
    extraction: dict[str, Any] = defaultdict(dict)
    for (group, system, kind), kind_counts in counts.items():
        if kind == "fields":
            extraction[group].setdefault(system, {})[kind] = field_rates_ci(kind_counts, seed=SEED)
            continue
        extraction[group].setdefault(system, {})[kind] = sum_extraction_scores(kind_counts)
    for group, systems in extraction.items():
        for system, kinds in systems.items():
            kinds["items_strict"] = _pooled(kinds["demands"], kinds["positions_strict"])
            kinds["items"] = _pooled(kinds["demands"], kinds["positions"])
            kinds["articles"] = len(counts[(group, system, "demands")])
    return dict(extraction)


def _pooled(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """Precision, recall and F1 of two kinds' summed counts."""
    tp, fp, fn = (first[k] + second[k] for k in ("tp", "fp", "fn"))
    return prf(tp, fp, fn)


def _summary_report(rouge: Rouge) -> dict[str, Any]:
    """Per group and summarizer: mean ROUGE-Lsum with its bootstrap 95% interval."""
    summaries: dict[str, Any] = defaultdict(dict)
    for (group, name), values in rouge.items():
        summaries[group][name] = {
            "rougeLsum": round(float(np.mean(values)), 4),
            "ci": _bootstrap(values),
            "n": len(values),
        }
    return dict(summaries)


def _differences(counts: Counts, rouge: Rouge) -> dict[str, Any]:
    """Per group: learned minus rules (items F1, kind-strict) and learned minus lead-3 and
    centrality (ROUGE-Lsum), on the same held-out articles."""
    differences: dict[str, Any] = defaultdict(dict)
    for group in dict.fromkeys(group for group, _, _ in counts):
        learned_rows, rules_rows = (_strict_counts(counts, group, s) for s in ("learned", "rules"))
        differences[group]["items F1 (kind-strict): learned - rules"] = _paired_difference(
            len(learned_rows),
            lambda idx, a=learned_rows, b=rules_rows: _f1_at(a, idx) - _f1_at(b, idx),
        )
        fields = paired_field_difference(
            counts[(group, "learned", "fields")], counts[(group, "rules", "fields")], seed=SEED
        )
        for name, d in fields.items():
            if d["ci_low"] is not None:
                differences[group][f"{name}: learned - rules"] = {
                    "difference": round(float(d["difference"] or 0.0), 4),
                    "ci": [round(d["ci_low"], 4), round(float(d["ci_high"] or 0.0), 4)],
                    "n": len(counts[(group, "learned", "fields")]),
                }
    for group in dict.fromkeys(group for group, _ in rouge):
        for other in ("lead3", "centrality"):
            pairs = np.array(rouge[(group, "learned")]) - np.array(rouge[(group, other)])
            differences[group][f"ROUGE-Lsum: learned - {other}"] = _paired_difference(
                len(pairs), lambda idx, pairs=pairs: float(pairs[idx].mean())
            )
    return dict(differences)


def _mean_thresholds(folds: list[dict[str, float]]) -> dict[str, float]:
    """The demand and position cuts: the mean of the folds' own (inner) cuts."""
    thresholds = {k: float(np.mean([t[k] for t in folds])) for k in ("demand", "position")}
    thresholds["actor"] = 0.0
    return thresholds


def _strict_counts(
    counts: dict[tuple[str, str, str], list[dict[str, float]]], group: str, system: str
) -> np.ndarray:
    """Per article ``[tp, fp, fn]`` of demands plus stance-strict positions."""
    demands, positions = (
        counts[(group, system, "demands")],
        counts[(group, system, "positions_strict")],
    )
    return np.array(
        [[d[k] + p[k] for k in ("tp", "fp", "fn")] for d, p in zip(demands, positions, strict=True)]
    )


def _f1_at(rows: np.ndarray, idx: np.ndarray) -> float:
    tp, fp, fn = rows[idx].sum(axis=0)
    return prf(float(tp), float(fp), float(fn))["f1"]


def _paired_difference(n: int, statistic: Any) -> dict[str, Any]:
    """A statistic of the same articles under two systems, with a 95% bootstrap CI that
    resamples articles (both systems get the same resample)."""
    rng = np.random.default_rng(SEED)
    every = np.arange(n)
    samples = [statistic(rng.choice(every, n)) for _ in range(1000)]
    return {
        "difference": round(float(statistic(every)), 4),
        "ci": [round(float(np.percentile(samples, q)), 4) for q in (2.5, 97.5)],
        "n": n,
    }


def _bootstrap(values: list[float]) -> list[float]:
    rng = np.random.default_rng(SEED)
    array = np.array(values)
    means = [rng.choice(array, len(array)).mean() for _ in range(1000)]
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def _lines(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)] or [text]


def _article(e: Example) -> Article:
    return Article(id=e.id, text=e.text)


# ---------------------------------------------------------------------------------------------
# The report


def render(report: dict[str, Any]) -> str:
    """The cross-validated report as Markdown tables."""
    lines = [
        f"heads: {report['path']} (sha256 {report['sha256'][:12]}), "
        f"layer {report['config']['layer']} {report['config']['pooling']} "
        f"C={report['config']['c']} (salience C={report['config']['salience_c']}), "
        f"{report['articles']} annotated "
        f"articles, {report['summary_articles']} with summaries, {report['seconds']} s",
        "",
    ]
    if report["selection"]:
        lines += [
            "| layer | pooling | C | demand F1 | position F1 | stance acc |",
            "|---|---|---|---|---|---|",
        ]
        for r in (r for r in report["selection"] if "demand_f1" in r):
            lines.append(
                f"| {r['layer']} | {r['pooling']} | {r['c']} | {r['demand_f1']:.3f} | "
                f"{r['position_f1']:.3f} | {r['stance_accuracy']:.3f} |"
            )
        lines += [
            "",
            "| layer | pooling | salience C | oracle sentences in the top 3 |",
            "|---|---|---|---|",
        ]
        for r in (r for r in report["selection"] if "salience_recall" in r):
            lines.append(
                f"| {r['layer']} | {r['pooling']} | {r['salience_c']} | "
                f"{r['salience_recall']:.3f} |"
            )
        lines.append("")
    lines += [
        "| domain | system | articles | demands F1 | positions F1 | positions F1 (stance) | "
        "items F1 (kind-strict) | items P | items R |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group, systems in sorted(report["cv"]["extraction"].items()):
        for system, k in sorted(systems.items()):
            lines.append(
                f"| {group} | {system} | {k['articles']} | {k['demands']['f1']:.3f} | "
                f"{k['positions']['f1']:.3f} | {k['positions_strict']['f1']:.3f} | "
                f"{k['items_strict']['f1']:.3f} | {k['items_strict']['precision']:.3f} | "
                f"{k['items_strict']['recall']:.3f} |"
            )
    lines += [
        "",
        "Fields of matched items (eval.metrics.field_rates; 95% CI from resampled articles):",
        "",
        "| domain | system | " + " | ".join(label for _, label in FIELD_COLUMNS) + " |",
        "|---|---|" + "---|" * len(FIELD_COLUMNS),
    ]
    for group, systems in sorted(report["cv"]["extraction"].items()):
        for system, k in sorted(systems.items()):
            if "fields" in k:
                cells = [rate_cell(k["fields"].get(name)) for name, _ in FIELD_COLUMNS]
                lines.append(f"| {group} | {system} | " + " | ".join(cells) + " |")
    lines += ["", "| articles | summarizer | n | ROUGE-Lsum | 95% CI |", "|---|---|---|---|---|"]
    for group, systems in sorted(report["cv"]["summaries"].items()):
        for name, s in sorted(systems.items()):
            lines.append(
                f"| {group} | {name} | {s['n']} | {s['rougeLsum']:.3f} | "
                f"[{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] |"
            )
    lines += [
        "",
        "Paired differences (the same held-out articles; 95% CI from 1,000 resamples of articles):",
        "",
        "| articles | difference | value | 95% CI |",
        "|---|---|---|---|",
    ]
    for group, rows in sorted(report["cv"].get("differences", {}).items()):
        for name, d in rows.items():
            lines.append(
                f"| {group} | {name} | {d['difference']:+.3f} | "
                f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] |"
            )
    return "\n".join(lines) + "\n"
