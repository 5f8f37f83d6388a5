"""The eval harness end to end: tiny dataset, model-free systems plus a fake model, golden scores.

Regenerate the golden file after an intended metric change with
``UPDATE_GOLDEN=1 pytest tests/test_eval_runner.py`` and review its diff.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel

from eval.report import render_report
from eval.runner import load_articles, parse_system, run_eval
from service.cli import main
from service.errors import InputError

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_RESULTS = GOLDEN / "eval_results.json"
SYSTEMS = [
    "lead3",
    "embed-centrality",
    "pipeline:lead+rules",
    "pipeline:centrality+rules",
    "pipeline:model-write+model-json",
]
# Scores that depend on the machine, not on the metrics.
UNSTABLE = {"latency_ms"}
TOLERANCE = 0.005

PORT_JSON = {
    "demands": [
        {
            "actor": "Marta Okafor",
            "demand": "a raise of at least 9 percent",
            "target": None,
            "conditions": "before anyone returns to the cranes",
            "quote": "“We demand a raise of at least 9 percent before anyone returns to the "
            "cranes,” Okafor told reporters outside the harbour gates.",
        },
        {
            "actor": "Marta Okafor",
            "demand": "a four-day week",
            "target": None,
            "conditions": None,
            "quote": "Okafor also wants a four-day week.",
        },
    ],
    "positions": [
        {
            "actor": "Henrik Vale",
            "issue": "resuming talks on Thursday",
            "stance": "support",
            "quote": "Port director Henrik Vale said the company was ready to resume talks on "
            "Thursday.",
        }
    ],
}
# The fake model answers in call order (batch size 1): per article, the summary (model-write)
# then the JSON (model-json). The tram article's JSON is invalid twice (retry, then give up).
RESPONSES = [
    "Dockworkers at the port of Valmora rejected a new pay offer on Tuesday. "
    "The strike has left dozens of cargo ships waiting offshore. "
    "Officials in Paris said the strike would end soon.",
    json.dumps(PORT_JSON, ensure_ascii=False),
    "The city council of Brenmoor voted to approve a new tram line. "
    "Tomas Berg said his party would never accept the plan without a cost estimate.",
    '{"demands": [{"actor": "Tomas Berg"',
    '{"demands": []',
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-run")
    run_eval(
        references=GOLDEN / "references.jsonl",
        dataset=GOLDEN / "articles.jsonl",
        out=out,
        systems=SYSTEMS,
        model=FakeListChatModel(responses=RESPONSES),
        batch_size=1,
    )
    render_report(out)
    return out


def _comparable(results: dict[str, Any]) -> dict[str, Any]:
    return {
        "systems": {
            name: {
                "scores": {
                    metric: round(score["mean"], 4)
                    for metric, score in system["scores"].items()
                    if metric not in UNSTABLE
                },
                "micro": {
                    kind: {k: int(v) for k, v in counts.items() if k in ("tp", "fp", "fn")}
                    for kind, counts in system["micro"].items()
                },
                "errors": system["errors"],
            }
            for name, system in results["systems"].items()
        }
    }


def test_scores_match_golden(run_dir: Path) -> None:
    produced = _comparable(json.loads((run_dir / "results.json").read_text()))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN_RESULTS.write_text(json.dumps(produced, indent=1, ensure_ascii=False) + "\n")
    golden = json.loads(GOLDEN_RESULTS.read_text())
    assert produced.keys() == golden.keys()
    assert list(produced["systems"]) == list(golden["systems"])
    for name, expected in golden["systems"].items():
        got = produced["systems"][name]
        assert got["micro"] == expected["micro"], name
        assert got["errors"] == expected["errors"], name
        assert set(got["scores"]) == set(expected["scores"]), name
        for metric, value in expected["scores"].items():
            assert math.isclose(got["scores"][metric], value, abs_tol=TOLERANCE), (
                f"{name} {metric}: {got['scores'][metric]} != golden {value}"
            )


def test_model_diagnostics_are_scored(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    model = results["systems"]["pipeline:model-write+model-json"]
    samples = [json.loads(line) for line in (run_dir / model["samples"]).read_text().splitlines()]
    port, tram = (s["scores"] for s in samples)
    assert port["summary_sentences_removed"] == 1  # the sentence naming Paris
    assert port["items_dropped"] == 1 and port["json_valid"] == 1
    assert tram["json_valid"] == 0 and tram["json_attempts"] == 2
    assert set(model["prompts"]) == {"summarize", "extract"}
    assert all("@" in ref for ref in model["prompts"].values())


def test_run_records_provenance_and_writes_report(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("created", "git_sha", "seed", "model", "prompts", "references", "dataset"):
        assert key in results
    assert results["articles"] == ["golden-port", "golden-tram"]
    assert [len(d["sha256"]) for d in results["dataset"]] == [64]
    assert results["metrics"]["rouge1"]["higher_is_better"] is True
    assert results["metrics"]["latency_ms"]["higher_is_better"] is False
    for name, system in results["systems"].items():
        lines = (run_dir / system["samples"]).read_text().splitlines()
        assert len(lines) == 2, name
        assert system["scores"]["rouge1"]["ci_low"] is None  # n < 5: no interval
    report = (run_dir / "report.md").read_text()
    assert "| pipeline:lead+rules |" in report and "## Per article" in report
    assert (run_dir / "metrics.png").stat().st_size > 1000
    assert (run_dir / "latency.png").is_file()
    # Re-rendering reads only the run folder.
    render_report(run_dir, plots=False)


def test_cli_runs_model_free_systems(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "eval",
            "--dataset",
            str(GOLDEN / "articles.jsonl"),
            "--references",
            str(GOLDEN / "references.jsonl"),
            "--systems",
            "lead3,pipeline:lead+rules",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["systems"]) == ["lead3", "pipeline:lead+rules"]
    golden = json.loads(GOLDEN_RESULTS.read_text())["systems"]["lead3"]["scores"]
    assert math.isclose(
        results["systems"]["lead3"]["scores"]["rouge1"]["mean"], golden["rouge1"], abs_tol=TOLERANCE
    )
    assert (out / "report.md").is_file()


def test_unknown_system_and_missing_articles(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown system"):
        parse_system("pipeline:lead+magic")
    assert parse_system("pipeline:model-rank+rules").needs_model
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"id": "nowhere", "summary": "", "demands": [], "positions": []}))
    with pytest.raises(InputError, match="no reference"):
        load_articles(references=refs, dataset=GOLDEN / "articles.jsonl", seeds_dir=tmp_path)


def test_field_metrics_are_scored_per_system_and_reported(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    extracting = {n: s for n, s in results["systems"].items() if s["config"]["extractor"]}
    assert extracting
    for name, system in extracting.items():
        fields = system["fields"]
        assert set(fields) >= {"what_f1", "target_found", "what_copied", "actor_exact"}, name
        samples = [json.loads(x) for x in (run_dir / system["samples"]).read_text().splitlines()]
        counts = [s["extraction"]["fields"] for s in samples]
        assert fields["what_copied"]["rate"] == pytest.approx(
            sum(c["what_copied"] for c in counts) / sum(c["what_predicted"] for c in counts)
        )
    assert "## Fields of matched items" in (run_dir / "report.md").read_text()
