"""Do the metrics agree with people? Kendall tau of each metric against human judgments.

- SummEval (27 CNN/DM articles x 16 systems = 432 summaries, mean of 3 expert scores for
  coherence, consistency, fluency, relevance): ROUGE and semantic similarity against the
  outlet's reference summary; faithfulness metrics (and ROUGE, as a naive baseline)
  against the article.
- QAGS-CNN (72 summaries with a crowd factual-consistency score): the faithfulness
  metrics, and ROUGE against the article as a naive baseline.

The data are read from ``../shared/eval-data`` beside the checkout (never copied into it).

    python -m eval.validity [--data DIR] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scipy.stats import kendalltau

from eval import metrics
from service.inputs import read_jsonl

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "eval-data"

SUMMEVAL_DIMENSIONS = ("coherence", "consistency", "fluency", "relevance")
QAGS_DIMENSION = "factual_consistency"

Scorer = Callable[[str, str], float]

# Metric name -> (function, what it compares the summary with).
SUMMEVAL_METRICS: dict[str, tuple[Scorer, str]] = {
    "rouge1": (metrics.rouge1, "reference"),
    "rouge2": (metrics.rouge2, "reference"),
    "rougeLsum": (metrics.rouge_lsum, "reference"),
    "semantic_similarity": (metrics.semantic_similarity, "reference"),
    "faithfulness_terms": (metrics.faithfulness_terms, "article"),
    "faithfulness_embedding": (metrics.faithfulness_embedding, "article"),
    "faithfulness_embedding_min": (
        lambda s, a: metrics.faithfulness_embedding(s, a, reduce="min"),
        "article",
    ),
    "rouge1_vs_article": (metrics.rouge1, "article"),
    "rouge2_vs_article": (metrics.rouge2, "article"),
}
QAGS_METRICS = {name: spec for name, spec in SUMMEVAL_METRICS.items() if spec[1] == "article"}


def detokenize(text: str) -> str:
    """Undo PTB-style tokenization: ``sterling 's`` -> ``sterling's``, ``$ 2.6`` -> ``$2.6``."""
    text = text.replace("``", '"').replace("''", '"').replace("`", "'")
    text = re.sub(r" (n't|'(?:s|re|ve|ll|d|m)\b)", r"\1", text)
    text = re.sub(r"(\w) - (?=\w)", r"\1-", text)
    text = re.sub(r"(\d), (?=\d{3}\b)", r"\1,", text)
    text = re.sub(r" ([.,!?;:%)\]])", r"\1", text)
    text = re.sub(r"([$£€(\[]) ", r"\1", text)
    return " ".join(text.split())


def truecase(text: str, article: str) -> str:
    """Give lower-cased words the casing they most often have in the article, and
    capitalise each sentence's first letter, so that name checks see names."""
    forms: dict[str, Counter[str]] = {}
    for word in re.findall(r"\w+", article):
        forms.setdefault(word.lower(), Counter())[word] += 1

    def recase(match: re.Match[str]) -> str:
        word = match.group()
        if word != word.lower() or word not in forms:
            return word
        return forms[word].most_common(1)[0][0]

    text = re.sub(r"\w+", recase, text)
    return re.sub(r"(^|[.!?][\"')]* )(\w)", lambda m: m.group(1) + m.group(2).upper(), text)


def normalize_summary(text: str, article: str) -> str:
    return truecase(detokenize(text), article)


def _tau(name: str, human: str, dataset: str, scores: list[float], judged: list[float]) -> dict:
    tau, p = kendalltau(scores, judged)
    return {
        "dataset": dataset,
        "metric": name,
        "human": human,
        "tau": float(tau),
        "p": float(p),
        "n": len(scores),
    }


def _warm_embeddings(pairs: list[tuple[str, str, str]]) -> None:
    """Encode every sentence and text the embedding metrics will need, in large batches."""
    texts: list[str] = []
    for summary, reference, article in pairs:
        texts += [summary, reference, *metrics.summary_sentences(summary)]
        texts += metrics.article_sentences(article)
    metrics.embed(texts)


def summeval_rows(path: Path) -> list[dict]:
    pairs = []  # (summary, reference, article)
    judged: dict[str, list[float]] = {d: [] for d in SUMMEVAL_DIMENSIONS}
    for row in read_jsonl(path):
        article = row["text"]
        for system in row["system_summaries"]:
            pairs.append(
                (
                    normalize_summary(system["summary_tokenized"], article),
                    row["reference_summary"],
                    article,
                )
            )
            for dimension in SUMMEVAL_DIMENSIONS:
                judged[dimension].append(float(system["expert_scores_mean"][dimension]))
    _warm_embeddings(pairs)
    rows = []
    for name, (function, against) in SUMMEVAL_METRICS.items():
        started = time.perf_counter()
        scores = [function(s, r if against == "reference" else a) for s, r, a in pairs]
        logger.info("summeval %s: %.1fs", name, time.perf_counter() - started)
        rows += [_tau(name, d, "SummEval", scores, judged[d]) for d in SUMMEVAL_DIMENSIONS]
    return rows


def qags_rows(path: Path) -> list[dict]:
    data = list(read_jsonl(path))
    pairs = [(detokenize(row["system_summary"]), detokenize(row["text"])) for row in data]
    judged = [float(row[QAGS_DIMENSION]) for row in data]
    _warm_embeddings([(s, s, a) for s, a in pairs])
    rows = []
    for name, (function, _) in QAGS_METRICS.items():
        scores = [function(summary, article) for summary, article in pairs]
        rows.append(_tau(name, QAGS_DIMENSION, "QAGS-CNN", scores, judged))
    return rows


def support_threshold(path: Path) -> dict[str, Any]:
    """The cosine below which a summary sentence counts as unsupported by the article, chosen
    on QAGS-CNN: the cut whose per-summary share of supported sentences best tracks the human
    factual-consistency score (Kendall tau). The pipeline's model-write filter uses it."""
    import numpy as np

    from service.grounding import support_units

    data = list(read_jsonl(path))
    pairs = [(detokenize(row["system_summary"]), detokenize(row["text"])) for row in data]
    judged = [float(row[QAGS_DIMENSION]) for row in data]
    _warm_embeddings([(s, s, a) for s, a in pairs])
    best_cosines = []
    for summary, article in pairs:
        sentences = metrics.summary_sentences(summary)
        sources = support_units(metrics.article_sentences(article))
        cosines = (metrics.embed(sentences) @ metrics.embed(sources).T).max(axis=1)
        best_cosines.append(cosines)
    grid = []
    for cut in np.round(np.arange(0.40, 0.96, 0.025), 3):
        shares = [float((c >= cut).mean()) if len(c) else 1.0 for c in best_cosines]
        tau, p = kendalltau(shares, judged)
        grid.append({"threshold": float(cut), "tau": float(tau), "p": float(p)})
    chosen = max(grid, key=lambda r: r["tau"])
    return {"chosen": chosen, "grid": grid, "n": len(pairs)}


def validity_table(data_dir: Path | str = DEFAULT_DATA) -> list[dict]:
    """Rows of dataset, metric, human dimension, Kendall tau, p-value and n."""
    data_dir = Path(data_dir)
    return summeval_rows(data_dir / "summeval_dev.jsonl") + qags_rows(
        data_dir / "qags_cnn_dev.jsonl"
    )


def to_markdown(rows: list[dict]) -> str:
    """Metric x (dataset, human dimension) table of ``tau (p)``, with n in the header."""
    columns = list(dict.fromkeys((r["dataset"], r["human"], r["n"]) for r in rows))
    cells = {(r["metric"], r["dataset"], r["human"]): r for r in rows}
    names = list(dict.fromkeys(r["metric"] for r in rows))
    header = "| metric | " + " | ".join(f"{d} {h} (n={n})" for d, h, n in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for name in names:
        values = []
        for dataset, human, _ in columns:
            row = cells.get((name, dataset, human))
            values.append(f"{row['tau']:.3f} (p={row['p']:.2g})" if row else "")
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    lines.append("")
    lines.append(
        "Kendall tau-b (scipy.stats.kendalltau) of metric vs mean human score; p two-sided."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="eval-data directory")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument(
        "--support-threshold",
        action="store_true",
        help="choose the model-write support threshold on QAGS-CNN and print the grid",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.support_threshold:
        result = support_threshold(args.data / "qags_cnn_dev.jsonl")
        for row in result["grid"]:
            print(f"{row['threshold']:.3f}  tau {row['tau']:.3f}  p {row['p']:.1e}")
        print(f"chosen {result['chosen']['threshold']:.3f} (n={result['n']})")
        return
    started = time.perf_counter()
    table = to_markdown(validity_table(args.data))
    logger.info("validity table in %.1fs", time.perf_counter() - started)
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
