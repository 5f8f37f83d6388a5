"""``standpoint train``: the learned stages' heads, trained from hand annotations.

    standpoint train [--annotations all] [--data-dir ../shared/eval-data] [--out FILE]

1. Every annotated article is cleaned exactly as the pipeline cleans it and split into
   sentences; a sentence is labelled demand / position (with stance) when an annotated quote
   covers it, and its actor candidates are labelled by the annotated actor and aliases.
   Summary salience is labelled by oracle sentences (greedy ROUGE against the reference
   summary: the annotation's, and the outlet's highlights for CNN/DailyMail articles, including
   those only used for summaries).
2. The model reads each article once; sentence features for several layers and two poolings
   are cached on disk by text hash, so reruns skip the model.
3. Layer and pooling are chosen by cross-validation, then every head is cross-validated end to
   end beside the rules, lead-3 and centrality (``eval/crossval.py``).
4. The heads are trained on all articles, with thresholds from the out-of-fold predictions,
   and written as one artifact with the report in its metadata.

Training is an offline build step like the eval: it lives here, and the service only reads
the artifact (``service/heads.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from eval.annotations import (
    DEFAULT_DATA_DIR,
    annotation_files,
    fold_of,
    load_annotations,
    load_texts,
    text_sha256,
)
from service.article import Sentence
from service.errors import InputError, StandpointError
from service.extraction import index_actors
from service.heads import DEFAULT_HEADS, STANCES, Heads, Logistic
from service.learned import actor_candidates, candidate_features, sentence_matrix, speakers
from service.settings import Settings

logger = logging.getLogger(__name__)

LAYERS = (9, 12, 15)
POOLINGS = ("mean", "last")
SEED = 0
SUMMARY_ONLY = ("qags_cnn_dev",)  # CNN/DM articles with highlights but no item annotations
ORACLE_SENTENCES = 3


@dataclass
class Example:
    """One article, cleaned as the pipeline cleans it, with its labels."""

    id: str
    dataset: str
    domain: str
    fold: int
    text: str
    sentences: list[Sentence]
    reference: dict[str, Any] | None  # the annotation row (None: summary-only article)
    summary: str  # reference summary for salience (annotation summary or highlights)
    demand: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    position: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    stance: list[str | None] = field(default_factory=list)
    actors: list[list[list[str]]] = field(default_factory=list)  # per sentence: name lists
    oracle: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


# ---------------------------------------------------------------------------------------------
# Data


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    return inter > 0 and inter >= 0.5 * min(a[1] - a[0], b[1] - b[0])


def load_examples(names: str, data_dir: Path, settings: Settings) -> list[Example]:
    """Annotated articles of the named annotation sets (``all``: every one), plus the
    summary-only CNN/DailyMail articles found in ``data_dir``."""
    rows = load_annotations(None if names == "all" else names.split(","))
    if not rows:
        raise InputError("no annotation rows found in eval/data/annotations/")
    texts: dict[str, dict[str, dict[str, Any]]] = {}
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any], str]] = []
    for row in rows:
        dataset = str(row["dataset"])
        texts.setdefault(dataset, load_texts(dataset, data_dir))
        source = texts[dataset][str(row["id"])]
        if text_sha256(str(source["text"])) != row["text_sha256"]:
            raise InputError(f"{dataset}/{row['id']}: the article text changed since annotation")
        pairs.append((row, source, dataset))
    annotated = {str(r["id"]) for r in rows}
    for dataset in SUMMARY_ONLY:
        if (data_dir / f"{dataset}.jsonl").is_file():
            for article_id, source in load_texts(dataset, data_dir).items():
                if article_id not in annotated and source.get("reference_summary"):
                    pairs.append((None, source, dataset))
    return make_examples(pairs, settings)


def make_examples(
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any], str]], settings: Settings
) -> list[Example]:
    """Examples from (annotation row or None, source row with ``id``/``text``, dataset)."""
    from service.grounding import locate_quote
    from service.pipeline import Pipeline

    prepare = Pipeline(
        settings=settings.model_copy(update={"summarizer": "lead", "extractor": "rules"})
    )
    examples = []
    for row, source, dataset in pairs:
        highlight = source.get("reference_summary")
        example = _example(prepare, row, source, dataset, highlight, fold_of(str(source["id"])))
        if example is not None:
            examples.append(example)
    for e in examples:
        n = len(e.sentences)
        e.demand, e.position = np.zeros(n, bool), np.zeros(n, bool)
        e.stance, e.actors = [None] * n, [[] for _ in range(n)]
        if e.reference is not None:
            for kind in ("demands", "positions"):
                for item in e.reference[kind]:
                    span = locate_quote(item["quote"], e.text)
                    if span is None:
                        continue
                    for j, s in enumerate(e.sentences):
                        if _overlaps(span, (s.start, s.end)):
                            (e.demand if kind == "demands" else e.position)[j] = True
                            e.actors[j].append([item["actor"], *item["actor_aliases"]])
                            if kind == "positions" and e.stance[j] is None:
                                e.stance[j] = item["stance"]
        e.oracle = oracle_labels(e.sentences, e.summary)
    return examples


def _example(
    prepare: Any,
    row: dict[str, Any] | None,
    source: dict[str, Any],
    dataset: str,
    highlight: str | None,
    fold: int,
) -> Example | None:
    """The article as the pipeline sees it; None (logged) when the pipeline refuses it."""
    (work,) = prepare.prepare([{"id": str(source["id"]), "text": source["text"]}])
    if isinstance(work, StandpointError):
        logger.warning("%s/%s left out: %s", dataset, source["id"], work.message)
        return None
    cnn = row is None or row.get("domain") == "cnn-dm"
    summary = (highlight if cnn and highlight else None) or (row or {}).get("summary") or ""
    return Example(
        id=str(source["id"]),
        dataset=dataset,
        domain=str((row or {}).get("domain") or "cnn-dm"),
        fold=fold,
        text=work.text,
        sentences=work.sentences,
        reference=row,
        summary=summary,
    )


def oracle_labels(sentences: list[Sentence], summary: str) -> np.ndarray:
    """Greedy oracle: body sentences that most raise ROUGE-1 + ROUGE-2 F1 (Porter-stemmed
    tokens, as the eval scores) against the summary, up to ``ORACLE_SENTENCES``."""
    from rouge_score import tokenizers

    from eval.metrics import prf

    labels = np.zeros(len(sentences), bool)
    if not summary.strip():
        return labels
    tokenize = tokenizers.DefaultTokenizer(use_stemmer=True).tokenize
    reference = tokenize(summary)
    ref_grams = [Counter(reference), Counter(pairwise(reference))]
    body = [j for j, s in enumerate(sentences) if not s.is_heading and len(s.text.split()) >= 5]
    tokens = {j: tokenize(sentences[j].text) for j in body}

    def score(chosen: list[int]) -> float:
        words = [w for j in sorted(chosen) for w in tokens[j]]
        total = 0.0
        for n, ref in ((1, ref_grams[0]), (2, ref_grams[1])):
            grams = Counter(words) if n == 1 else Counter(pairwise(words))
            overlap = sum((grams & ref).values())
            if overlap:
                fp, fn = sum(grams.values()) - overlap, sum(ref.values()) - overlap
                total += prf(overlap, fp, fn)["f1"]
        return total

    chosen: list[int] = []
    best = 0.0
    while len(chosen) < ORACLE_SENTENCES:
        scored = [(score([*chosen, j]), -j) for j in body if j not in chosen]
        if not scored:
            break
        value, negative = max(scored)
        if value <= best:
            break
        best, chosen = value, [*chosen, -negative]
    labels[chosen] = True
    return labels


# ---------------------------------------------------------------------------------------------
# Features


def dtype_name(local: Any) -> str:
    """The local model's dtype as the settings spell it (``float32``, ``bfloat16``)."""
    return str(local.model.dtype).removeprefix("torch.")


def model_features(
    examples: list[Example], local: Any, cache_dir: Path, model_id: str
) -> dict[str, np.ndarray]:
    """``[layers, sentences, 2, hidden]`` per article id, from the disk cache or the model."""
    from tqdm import tqdm

    # features differ by dtype
    folder = cache_dir / "features" / model_id / dtype_name(local) / "-".join(map(str, LAYERS))
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    for e in tqdm(examples, desc="features", unit="article", file=sys.stderr):
        spans = [(s.start, s.end) for s in e.sentences]
        key = hashlib.sha256(json.dumps([e.text, spans]).encode("utf-8", "surrogatepass"))
        path = folder / f"{key.hexdigest()}.npy"
        if path.is_file():
            out[e.id] = np.load(path).astype(np.float32)
            continue
        (array,) = local.sentence_features([e.text], [spans], layers=list(LAYERS))
        stored = array.astype(np.float16)  # half the disk; and a fresh run must train on
        np.save(path, stored)  # exactly what a cached run reads, so the heads reproduce
        out[e.id] = stored.astype(np.float32)
    return out


def matrix(e: Example, features: dict[str, np.ndarray], layer: int, pooling: str) -> np.ndarray:
    hidden = features[e.id][LAYERS.index(layer), :, POOLINGS.index(pooling)]
    return sentence_matrix(hidden, e.sentences)


# ---------------------------------------------------------------------------------------------
# Heads


def fit(x: np.ndarray, y: np.ndarray, *, c: float, classes: list[str]) -> Logistic:
    """A logistic head (balanced classes) on standardised features."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=SEED)
    model.fit((x - mean) / scale, y)
    return Logistic(
        classes=classes,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        coef=model.coef_.astype(np.float32),
        intercept=model.intercept_.astype(np.float32),
    )


def best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The probability cut that maximises F1 on these (out-of-fold) predictions."""
    best, cut = -1.0, 0.5
    for t in np.linspace(0.05, 0.95, 37):
        pred = p >= t
        tp = float((pred & y).sum())
        f1 = 2 * tp / (pred.sum() + y.sum()) if pred.sum() + y.sum() else 0.0
        if f1 > best:
            best, cut = f1, float(t)
    return cut


@dataclass
class Config:
    layer: int
    pooling: str
    c: float
    salience_c: float | None = None  # None: c

    @property
    def salience_strength(self) -> float:
        """The C the salience head is trained with."""
        return self.c if self.salience_c is None else self.salience_c


def train_heads(
    examples: list[Example],
    features: dict[str, np.ndarray],
    config: Config,
    *,
    thresholds: dict[str, float] | None = None,
    model_id: str,
) -> Heads:
    """Every head on these articles. Without ``thresholds`` they come from an inner
    cross-validation over the same articles' folds."""
    annotated = [e for e in examples if e.reference is not None]
    x = np.concatenate([matrix(e, features, config.layer, config.pooling) for e in annotated])
    demand = np.concatenate([e.demand for e in annotated])
    position = np.concatenate([e.position for e in annotated])
    stance = [s for e in annotated for s in e.stance]
    heads: dict[str, Logistic] = {
        "demand": fit(x, demand.astype(int), c=config.c, classes=["no", "demand"]),
        "position": fit(x, position.astype(int), c=config.c, classes=["no", "position"]),
    }
    rows = [i for i, s in enumerate(stance) if s is not None]
    labels = np.array([STANCES.index(stance[i]) for i in rows])
    stance_head = fit(x[rows], labels, c=config.c, classes=list(STANCES))
    heads["stance"] = expand_classes(stance_head, labels)
    ax, ay = actor_data(annotated)
    heads["actor"] = fit(ax, ay, c=1.0, classes=["no", "actor"])
    summary = [e for e in examples if e.summary.strip()]
    sx = np.concatenate([matrix(e, features, config.layer, config.pooling) for e in summary])
    sy = np.concatenate([e.oracle for e in summary]).astype(int)
    heads["salience"] = fit(sx, sy, c=config.salience_strength, classes=["no", "salient"])
    result = Heads(
        model_id=model_id,
        layer=config.layer,
        pooling=config.pooling,
        heads=heads,
        thresholds=thresholds or {"demand": 0.5, "position": 0.5, "actor": 0.0},
    )
    if thresholds is None:
        result.thresholds = inner_thresholds(annotated, features, config, model_id=model_id)
    return result


def expand_classes(head: Logistic, labels: np.ndarray) -> Logistic:
    """A multinomial head over all four stances even if a fold lacks one (never predicted)."""
    present = sorted(set(labels.tolist()))
    if len(present) == len(STANCES):
        return head
    coef = np.zeros((len(STANCES), head.coef.shape[1]), np.float32)
    intercept = np.full(len(STANCES), -1e4, np.float32)
    if len(present) == 2:  # sklearn returns one row for two classes
        coef[present[1]], intercept[present[1]] = head.coef[0], head.intercept[0]
        intercept[present[0]] = 0.0
    else:
        for row, k in enumerate(present):
            coef[k], intercept[k] = head.coef[row], head.intercept[row]
    return Logistic(list(STANCES), head.mean, head.scale, coef, intercept)


def actor_data(examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
    from eval.metrics import actor_matches

    rows, labels = [], []
    for e in examples:
        who = speakers(e.sentences, index_actors(e.text))
        for j in range(len(e.sentences)):
            if not e.actors[j]:
                continue
            names = actor_candidates(e.sentences, j, who)
            marks = [any(actor_matches(n, gold) for gold in e.actors[j]) for n in names]
            if not any(marks):
                continue
            for name, mark in zip(names, marks, strict=True):
                rows.append(candidate_features(name, e.sentences, j, who, e.text))
                labels.append(int(mark))
    return np.stack(rows), np.array(labels)


def inner_thresholds(
    examples: list[Example], features: dict[str, np.ndarray], config: Config, *, model_id: str
) -> dict[str, float]:
    """Demand and position cuts from out-of-fold predictions over ``examples``' folds."""
    p_demand, p_position, y_demand, y_position = [], [], [], []
    for fold in sorted({e.fold for e in examples}):
        train = [e for e in examples if e.fold != fold]
        held = [e for e in examples if e.fold == fold]
        if not train or not held:
            continue
        heads = train_heads(
            train,
            features,
            config,
            thresholds={"demand": 0.5, "position": 0.5},
            model_id=model_id,
        )
        for e in held:
            x = matrix(e, features, config.layer, config.pooling)
            p_demand.append(heads.heads["demand"].proba(x)[:, 1])
            p_position.append(heads.heads["position"].proba(x)[:, 1])
            y_demand.append(e.demand)
            y_position.append(e.position)
    return {
        "demand": best_threshold(np.concatenate(p_demand), np.concatenate(y_demand)),
        "position": best_threshold(np.concatenate(p_position), np.concatenate(y_position)),
        "actor": 0.0,
    }


# ---------------------------------------------------------------------------------------------
# The command


def train(
    *,
    annotations: str,
    data_dir: Path,
    out: Path,
    settings: Settings,
    choose: bool = True,
    config: Config | None = None,
) -> dict[str, Any]:
    """Train, cross-validate and write the artifact; returns the report."""
    from eval.crossval import choose_config, cross_validate  # it imports this module
    from service.model import load_model

    started = time.perf_counter()
    examples = load_examples(annotations, data_dir, settings)
    chat = load_model(settings)
    local = getattr(chat, "local", None)
    if local is None:
        raise StandpointError(
            "training reads a local model's features; STANDPOINT_MODEL is a server"
        )
    model_id = str(local.model_id)
    features = model_features(examples, local, settings.cache_dir, model_id)
    selection: list[dict[str, Any]] = []
    if config is None:
        if choose:
            config, selection = choose_config(examples, features)
        else:
            config = Config(15, "mean", 0.1)
    cv, thresholds = cross_validate(examples, features, config, model_id=model_id)
    heads = train_heads(examples, features, config, thresholds=thresholds, model_id=model_id)
    annotated = [e for e in examples if e.reference is not None]
    heads.metadata = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": _git_sha(),
        "data": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in annotation_files()},
        "articles": len(annotated),
        "summary_articles": sum(1 for e in examples if e.summary.strip()),
        "sentences": int(sum(len(e.sentences) for e in annotated)),
        "labels": {
            "demand": int(sum(e.demand.sum() for e in annotated)),
            "position": int(sum(e.position.sum() for e in annotated)),
            "stance": dict(Counter(s for e in annotated for s in e.stance if s)),
        },
        "config": {
            "layer": config.layer,
            "pooling": config.pooling,
            "c": config.c,
            "salience_c": config.salience_strength,
        },
        "dtype": dtype_name(local),
        "selection": selection,
        "cv": cv,
        "seconds": round(time.perf_counter() - started, 1),
    }
    sha = heads.save(out)
    return {**heads.metadata, "sha256": sha, "thresholds": heads.thresholds, "path": str(out)}


def _git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--annotations", default="all", help="annotation datasets by name, or 'all' (default)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder of the article files (default: ../shared/eval-data)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_HEADS, help="artifact to write")
    parser.add_argument("--report", type=Path, help="also write the report (Markdown) here")
    parser.add_argument(
        "--config",
        help="LAYER,POOLING,C[,SALIENCE_C] to skip the selection (e.g. 15,mean,0.003,0.001)",
    )
    parser.add_argument("--model", help="embedded, a model folder, or a .gguf file")


def run(args: argparse.Namespace) -> int:
    from eval.crossval import render
    from service.cli import settings_from_args

    settings = settings_from_args(args)
    config = None
    if args.config:
        parts = args.config.split(",")
        if len(parts) not in (3, 4) or int(parts[0]) not in LAYERS or parts[1] not in POOLINGS:
            raise InputError(
                f"--config: LAYER,POOLING,C[,SALIENCE_C] with a layer in {LAYERS} and a pooling "
                f"in {POOLINGS}"
            )
        salience = float(parts[3]) if len(parts) == 4 else None
        config = Config(int(parts[0]), parts[1], float(parts[2]), salience)
    report = train(
        annotations=args.annotations,
        data_dir=args.data_dir,
        out=args.out,
        settings=settings,
        config=config,
    )
    text = render(report)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")
    return 0
