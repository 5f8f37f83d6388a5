"""The hand annotations: every quote is in its article, hashes match, labels are valid."""

from __future__ import annotations

import json
from collections import Counter

from eval.annotations import (
    ANNOTATION_DIR,
    DEFAULT_DATA_DIR,
    FOLDS_PATH,
    check,
    check_row,
    fold_of,
    load_annotations,
)


def test_every_annotation_row_holds_against_its_article_text() -> None:
    rows = load_annotations()
    report = check(rows, DEFAULT_DATA_DIR)
    assert report.problems == []
    assert report.rows == len(rows) >= 800
    assert report.items["demands"] + report.items["positions"] >= 10_000
    assert report.verbatim_share >= 0.9  # amendment 24: fields are spans of the article
    assert {p.stem for p in ANNOTATION_DIR.glob("*.jsonl")} == {
        "news_pool",
        "news_pool2",
        "summeval_dev",
        "realsumm_dev",
    }


def test_no_article_is_annotated_twice_and_folds_are_fixed_by_id() -> None:
    rows = load_annotations()
    ids = Counter(str(r["id"]) for r in rows)
    assert max(ids.values()) == 1
    folds = json.loads(FOLDS_PATH.read_text())
    assert folds == {article_id: fold_of(article_id) for article_id in ids}
    assert set(folds.values()) == {0, 1, 2, 3, 4}


def test_the_checker_catches_broken_rows() -> None:
    text = "The union demanded a raise. The mayor said no."
    row = {
        "id": "x",
        "dataset": "made_up",
        "domain": "labor/strike",
        "text_sha256": "0" * 64,
        "summary": "A union wants a raise.",
        "demands": [
            {
                "actor": "the union",
                "actor_aliases": [],
                "demand": "a raise",
                "target": "the council",
                "conditions": None,
                "quote": "The union demanded a big raise.",
            }
        ],
        "positions": [
            {
                "actor": "the mayor",
                "actor_aliases": [],
                "issue": "the raise",
                "stance": "against",
                "quote": "The mayor said no.",
            }
        ],
    }
    problems = "\n".join(check_row(row, text))
    assert "text_sha256 does not match" in problems
    assert "quote not found" in problems
    assert "target 'the council' is not a span" in problems
    assert "stance 'against'" in problems


def test_fields_count_as_spans_up_to_case_and_typography_only() -> None:
    from eval.annotations import CheckReport, count_spans, is_span

    text = "The union demanded that the company “raise pay” by 5% before Friday."
    assert is_span('raise pay" by 5%', text)
    assert is_span("The Company", text)
    assert not is_span("a pay rise of 5%", text)  # a paraphrase is not a span
    row = {
        "demands": [
            {"demand": "raise pay", "target": "the company", "conditions": None},
            {"demand": "more money", "target": None, "conditions": "before friday"},
        ],
        "positions": [{"issue": "the company raise"}],
    }
    report = CheckReport()
    count_spans(row, text, report)
    assert report.fields == {"demand": 2, "target": 1, "conditions": 1, "issue": 1}
    assert report.verbatim == {"demand": 1, "target": 1, "conditions": 1, "issue": 0}
    assert report.verbatim_share == 3 / 5
