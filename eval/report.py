"""Render an eval run folder: DIR/report.md and PNG plots from DIR/results.json and samples/.

    python -m eval.report DIR [--validity-data ../shared/eval-data]

The metric-validity table (eval.validity: Kendall tau of each metric against human scores)
is computed once when its data folder is available and cached in DIR/validity.json, so
re-rendering is fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from service.inputs import read_jsonl

logger = logging.getLogger(__name__)

SUMMARY_METRICS = (
    "rouge1",
    "rouge2",
    "rougeLsum",
    "semantic_similarity",
    "faithfulness_terms",
    "faithfulness_embedding",
    "summary_sentence_count",
)
EXTRACTION_METRICS = (
    "demands_f1",
    "positions_f1",
    "positions_strict_f1",
    "items_strict_f1",
    "items_f1",
    "quote_validity",
    "items_dropped",
    "json_valid",
)
COST_METRICS = ("latency_ms", "prompt_tokens", "generated_tokens")
PER_ARTICLE_METRICS = ("rougeLsum", "faithfulness_embedding", "demands_f1", "positions_f1")
PLOT_METRICS = (
    "rougeLsum",
    "semantic_similarity",
    "faithfulness_embedding",
    "demands_f1",
    "positions_f1",
    "quote_validity",
)
VALIDITY_FILES = ("summeval_dev.jsonl", "qags_cnn_dev.jsonl")


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    samples = {}
    for name, system in results["systems"].items():
        path = run_dir / system["samples"]
        samples[name] = list(read_jsonl(path)) if path.is_file() else []
    return results, samples


def validity_rows(run_dir: Path, data_dir: Path | None) -> list[dict[str, Any]] | None:
    """The cached validity table, else computed from ``data_dir`` and cached; None if neither."""
    cache = run_dir / "validity.json"
    if cache.is_file():
        return list(json.loads(cache.read_text(encoding="utf-8")))
    if data_dir is None or not all((data_dir / f).is_file() for f in VALIDITY_FILES):
        return None
    from eval.validity import validity_table

    logger.info("computing the metric-validity table from %s", data_dir)
    rows = validity_table(data_dir)
    cache.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return rows


# ---------------------------------------------------------------------------------------------
# Markdown


def _number(value: float | None, name: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if name.endswith("_ms") or name.endswith("tokens") or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3f}"


def _cell(score: dict[str, Any] | None, name: str) -> str:
    if not score:
        return ""
    text = _number(score["mean"], name)
    if score.get("ci_low") is not None:
        text += f" [{_number(score['ci_low'], name)}, {_number(score['ci_high'], name)}]"
    return text


def _arrow(direction: bool | None) -> str:
    return {True: " ↑", False: " ↓"}.get(direction, "")  # type: ignore[arg-type]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def metric_table(results: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """Systems x metrics, mean [95% CI]; columns no system has are left out."""
    systems = results["systems"]
    names = tuple(n for n in names if any(n in s["scores"] for s in systems.values()))
    if not names:
        return []
    directions = results.get("metrics", {})
    header = ["system"] + [n + _arrow(directions.get(n, {}).get("higher_is_better")) for n in names]
    rows = [
        [name] + [_cell(system["scores"].get(n), n) for n in names]
        for name, system in systems.items()
    ]
    return _table(header, rows)


def micro_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for name, system in results["systems"].items():
        for kind, s in system.get("micro", {}).items():
            rows.append(
                [name, kind]
                + [f"{s[k]:.3f}" for k in ("precision", "recall", "f1")]
                + [str(int(s[k])) for k in ("tp", "fp", "fn")]
            )
    if not rows:
        return []
    return _table(["system", "items", "precision", "recall", "F1", "tp", "fp", "fn"], rows)


FIELD_COLUMNS = (
    ("what_f1", "what F1 ↑"),
    ("target_found", "target found ↑"),
    ("target_spurious", "target spurious ↓"),
    ("conditions_found", "conditions found ↑"),
    ("conditions_spurious", "conditions spurious ↓"),
    ("stance_accuracy", "stance acc. ↑"),
    ("what_copied", "copies sentence ↓"),
    ("actor_exact", "actor exact ↑"),
)


def rate_cell(cell: dict[str, Any] | None) -> str:
    if not cell or cell.get("rate") is None or cell["rate"] != cell["rate"]:  # NaN: no case
        return "–"
    text = f"{cell['rate']:.3f}"
    if cell.get("ci_low") is not None:
        text += f" [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]"
    return text


def field_table(results: dict[str, Any]) -> list[str]:
    """Fields of matched items per system and domain (eval.metrics.field_rates), with
    bootstrap 95% CIs over articles."""
    rows = []
    for name, system in results["systems"].items():
        groups = [("all", system), *sorted(system.get("by_domain", {}).items())]
        for group, part in groups:
            if part.get("fields"):
                rows.append(
                    [name, group] + [rate_cell(part["fields"].get(k)) for k, _ in FIELD_COLUMNS]
                )
    if not rows:
        return []
    return _table(["system", "articles"] + [label for _, label in FIELD_COLUMNS], rows)


def domain_table(results: dict[str, Any]) -> list[str]:
    """Per domain and system: articles, summary ROUGE, micro P/R/F1 of each extraction kind."""
    systems = results["systems"]
    domains = sorted({d for s in systems.values() for d in s.get("by_domain", {})})
    if len(domains) < 2:
        return []
    kinds = sorted(
        {
            k
            for s in systems.values()
            for d in s.get("by_domain", {}).values()
            for k in d.get("micro", {})
        }
    )
    header = ["domain", "system", "n", "rouge1", "rougeLsum"]
    header += [f"{k} {part}" for k in kinds for part in ("P", "R", "F1")]
    rows = []
    for domain in domains:
        for name, system in systems.items():
            part = system.get("by_domain", {}).get(domain)
            if part is None:
                continue
            row = [domain, name, str(part["n"])]
            row += [
                _number(part["scores"].get(m, {}).get("mean"), m) for m in ("rouge1", "rougeLsum")
            ]
            for kind in kinds:
                micro = part.get("micro", {}).get(kind)
                row += [f"{micro[k]:.3f}" if micro else "–" for k in ("precision", "recall", "f1")]
            rows.append(row)
    return _table(header, rows)


def _as_list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def cost_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for name, system in results["systems"].items():
        latency = system.get("latency_ms", {})
        tokens = system["scores"].get("generated_tokens", {})
        rows.append(
            [
                name,
                _number(latency.get("p50"), "_ms"),
                _number(latency.get("p90"), "_ms"),
                _number(latency.get("max"), "_ms"),
                _number(tokens.get("mean"), "tokens"),
                f"{system['wall_s']:.1f}",
                f"{system['wall_s'] / max(1, system['n']):.2f}",
                str(system["errors"]),
            ]
        )
    header = [
        "system",
        "p50 ms",
        "p90 ms",
        "max ms",
        "generated tokens",
        "wall s",
        "s/article",
        "errors",
    ]
    return _table(header, rows)


def per_article_table(
    samples: dict[str, list[dict[str, Any]]], metric: str, ids: list[str]
) -> list[str]:
    systems = [n for n, rows in samples.items() if any(metric in r.get("scores", {}) for r in rows)]
    if not systems:
        return []
    values = {
        (n, r["id"]): r["scores"].get(metric) for n in systems for r in samples[n] if "scores" in r
    }
    rows = [[i] + [_number(values.get((n, i)), metric) for n in systems] for i in ids]
    return [f"### {metric}", "", *_table(["article", *systems], rows)]


def validity_markdown(rows: list[dict[str, Any]]) -> list[str]:
    from eval.validity import to_markdown

    return [to_markdown(rows)]


def render_markdown(
    results: dict[str, Any],
    samples: dict[str, list[dict[str, Any]]],
    validity: list[dict[str, Any]] | None,
    plots: list[str],
) -> str:
    references = ", ".join(r["path"] for r in _as_list(results["references"]))
    datasets = ", ".join(d["path"] for d in _as_list(results.get("dataset")))
    lines = [
        "# standpoint eval",
        "",
        f"- created: {results['created']}, git {results['git_sha'][:12]}, seed {results['seed']}",
        f"- model: {results['model']}; prompts: "
        + (", ".join(results["prompts"].values()) or "none"),
        f"- articles: {len(results['articles'])} from {references}"
        + (f" + {datasets}" if datasets else ""),
        "- cells: mean over articles [bootstrap 95% CI, shown when n >= 5]; ↑/↓ = better",
        "- **incomplete run**: not every chosen system has finished"
        if not results.get("complete", True)
        else "",
        "",
        "## Summaries",
        "",
        *metric_table(results, SUMMARY_METRICS),
        "## Demands and positions",
        "",
        "Macro (mean of per-article scores):",
        "",
        *metric_table(results, EXTRACTION_METRICS),
    ]
    micro = micro_table(results)
    if micro:
        lines += ["Micro (summed tp/fp/fn over articles):", "", *micro]
    fields = field_table(results)
    if fields:
        lines += [
            "## Fields of matched items",
            "",
            "What each matched item says, against the reference's fields (eval/metrics.py):",
            "",
            *fields,
        ]
    domains = domain_table(results)
    if domains:
        lines += ["## By domain", "", *domains]
    lines += ["## Cost", "", *cost_table(results), *metric_table(results, COST_METRICS)]
    lines += ["## Per article", ""]
    for metric in PER_ARTICLE_METRICS:
        lines += per_article_table(samples, metric, results["articles"])
    if validity:
        lines += [
            "## Do the metrics agree with people?",
            "",
            "Kendall tau of each metric against human judgments (eval/validity.py).",
            "",
            *validity_markdown(validity),
        ]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    errors = [(n, r) for n, rows in samples.items() for r in rows if "error" in r]
    if errors:
        lines += ["## Errors", ""] + [f"- {n} / {r['id']}: {r['error']}" for n, r in errors]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Plots


def render_plots(
    run_dir: Path, results: dict[str, Any], samples: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """metrics.png, per_article.png and latency.png; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(results["systems"])
    written = []

    names = [m for m in PLOT_METRICS if any(m in s["scores"] for s in results["systems"].values())]
    if names:
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
        for ax, metric in zip(axes.flat, names, strict=False):
            xs: list[int] = []
            means: list[float] = []
            errs: list[list[float]] = [[], []]
            for i, name in enumerate(systems):
                score = results["systems"][name]["scores"].get(metric)
                if not score:
                    continue
                xs.append(i)
                means.append(score["mean"])
                low = score["ci_low"] if score["ci_low"] is not None else score["mean"]
                high = score["ci_high"] if score["ci_high"] is not None else score["mean"]
                errs[0].append(score["mean"] - low)
                errs[1].append(high - score["mean"])
            ax.bar(xs, means, yerr=errs, capsize=3, color="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(systems)), systems, rotation=35, ha="right", fontsize=7)
            ax.set_title(metric, fontsize=9)
            ax.set_ylim(0, max(1.0, *(m + e for m, e in zip(means, errs[1], strict=True))))
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(run_dir / "metrics.png", dpi=110)
        plt.close(fig)
        written.append("metrics.png")

    names = [
        m for m in PER_ARTICLE_METRICS if any(m in s["scores"] for s in results["systems"].values())
    ]
    if names:
        ids = results["articles"]
        fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.6 * len(names)), squeeze=False)
        for ax, metric in zip(axes.flat, names, strict=True):
            for k, name in enumerate(systems):
                points = [
                    (ids.index(r["id"]), r["scores"][metric])
                    for r in samples[name]
                    if metric in r.get("scores", {})
                ]
                if points:
                    offset = (k - len(systems) / 2) * 0.06
                    ax.plot(
                        [x + offset for x, _ in points],
                        [y for _, y in points],
                        "o",
                        ms=4,
                        label=name,
                    )
            ax.set_xticks(range(len(ids)), ids, rotation=30, ha="right", fontsize=7)
            ax.set_title(metric, fontsize=9)
            ax.set_ylim(-0.05, 1.05)
        axes.flat[0].legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        fig.savefig(run_dir / "per_article.png", dpi=110)
        plt.close(fig)
        written.append("per_article.png")

    latencies = {
        name: [
            r["scores"]["latency_ms"] for r in samples[name] if "latency_ms" in r.get("scores", {})
        ]
        for name in systems
    }
    latencies = {k: v for k, v in latencies.items() if v}
    if latencies:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        ax.boxplot(list(latencies.values()), showfliers=True)
        for k, values in enumerate(latencies.values(), 1):
            ax.plot([k] * len(values), values, ".", color="tab:gray", alpha=0.6)
        ax.set_xticks(
            range(1, len(latencies) + 1), list(latencies), rotation=30, ha="right", fontsize=7
        )
        ax.set_yscale("log")
        ax.set_ylabel("latency per article (ms, log)")
        fig.tight_layout()
        fig.savefig(run_dir / "latency.png", dpi=110)
        plt.close(fig)
        written.append("latency.png")
    return written


def render_report(run_dir: Path, *, validity_data: Path | None = None, plots: bool = True) -> Path:
    """Write DIR/report.md (and the PNGs); returns the report's path."""
    results, samples = load_run(run_dir)
    datasets = _as_list(results.get("dataset"))
    if validity_data is None and datasets:
        validity_data = Path(datasets[0]["path"]).parent
    validity = validity_rows(run_dir, validity_data)
    written = render_plots(run_dir, results, samples) if plots else []
    path = run_dir / "report.md"
    text = render_markdown(results, samples, validity, written)
    briefings = run_dir / "briefings.md"  # written by `standpoint eval --briefings`
    if briefings.is_file():
        text += "\n" + briefings.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a folder written by `standpoint eval`")
    parser.add_argument(
        "--validity-data", type=Path, help="eval-data folder for the validity table"
    )
    parser.add_argument("--no-plots", action="store_true", help="only write report.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = render_report(args.run_dir, validity_data=args.validity_data, plots=not args.no_plots)
    print(path)


if __name__ == "__main__":
    main()
