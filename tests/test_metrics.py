"""Metrics against hand-computed expectations."""

from __future__ import annotations

import math
from typing import Any

import pytest

from eval.metrics import (
    METRICS,
    actor_exact,
    actor_matches,
    extraction_scores,
    faithfulness_embedding,
    faithfulness_terms,
    field_counts,
    field_rates,
    match_items,
    mean_ci,
    quote_validity,
    result_extraction_scores,
    rouge1,
    rouge2,
    rouge_lsum,
    semantic_similarity,
    sum_extraction_scores,
    sum_field_counts,
    summary_sentence_count,
)
from eval.validity import detokenize, truecase

TEXT = (
    "Vladimir Putin demanded that Ukraine withdraw from Donetsk. "
    "Zelensky rejected any withdrawal. "
    "Putin also said sanctions must be lifted before talks."
)


def item(actor: str, content: str, quote: str, *, kind: str = "demand", **extra: Any) -> dict:
    start = TEXT.index(quote)
    return {
        "actor": actor,
        kind: content,
        "quote": quote,
        "start": start,
        "end": start + len(quote),
        **extra,
    }


def reference(
    actor: str,
    content: str,
    quote: str,
    aliases: list[str] | None = None,
    *,
    kind: str = "demand",
    **extra: Any,
) -> dict:
    assert quote in TEXT
    return {"actor": actor, "actor_aliases": aliases or [], kind: content, "quote": quote, **extra}


REF_WITHDRAW = reference(
    "Vladimir Putin",
    "Ukraine withdraw from Donetsk",
    "Vladimir Putin demanded that Ukraine withdraw from Donetsk.",
)
REF_SANCTIONS = reference(
    "Vladimir Putin", "sanctions must be lifted", "sanctions must be lifted before talks"
)


def test_registry_names_direction_and_kind() -> None:
    assert {
        "rouge1",
        "rouge2",
        "rougeLsum",
        "semantic_similarity",
        "faithfulness_terms",
        "faithfulness_embedding",
        "quote_validity",
        "summary_sentence_count",
    } <= set(METRICS)
    assert METRICS["rouge1"].higher_is_better
    assert METRICS["rouge1"].kind == "summary"
    assert METRICS["faithfulness_terms"].kind == "faithfulness"
    assert METRICS["quote_validity"].function is quote_validity


def test_rouge_on_a_tiny_pair() -> None:
    prediction, ref = "the cat sat on the mat", "the cat lay on the mat"
    # unigrams: the x2, cat, on, mat shared = 5 of 6 on each side
    assert rouge1(prediction, ref) == pytest.approx(5 / 6)
    # bigrams: "the cat", "on the", "the mat" shared = 3 of 5 on each side
    assert rouge2(prediction, ref) == pytest.approx(3 / 5)
    # stemming on: "cats" ~ "cat"
    assert rouge1("cats", "cat") == pytest.approx(1.0)


def test_rouge_lsum_scores_sentence_by_sentence() -> None:
    # LCS hits: "the cat sat" (3) + "it was" (2) = 5 of 6 tokens on each side
    assert rouge_lsum("The cat sat. It was happy.", "The cat sat. It was sad.") == pytest.approx(
        5 / 6
    )
    assert summary_sentence_count("The cat sat. It was happy.") == 2


def test_faithfulness_terms_flags_invented_name_and_number() -> None:
    article = "Talks in Geneva ended on Tuesday. Putin said 3 rounds were held."
    supported = "Putin said talks ended in Geneva."
    invented = "Zelensky attended 5 rounds."
    assert faithfulness_terms(supported, article) == 1.0
    assert faithfulness_terms(invented, article) == 0.0
    assert faithfulness_terms(f"{supported} {invented}", article) == pytest.approx(0.5)


def test_embedding_metrics_with_the_bundled_model() -> None:
    article = "Talks in Geneva ended on Tuesday. The weather in Paris was sunny."
    assert semantic_similarity("Talks ended.", "Talks ended.") == pytest.approx(1.0, abs=1e-5)
    copied = faithfulness_embedding("Talks in Geneva ended on Tuesday.", article)
    unrelated = faithfulness_embedding("The striker scored twice in the derby.", article)
    assert copied == pytest.approx(1.0, abs=1e-5)
    assert unrelated < 0.5 < copied
    mixed = "Talks in Geneva ended on Tuesday. The striker scored twice in the derby."
    assert faithfulness_embedding(mixed, article, reduce="min") == pytest.approx(
        unrelated, abs=1e-4
    )


def test_quote_validity_counts_broken_offsets() -> None:
    text = "Ukraine demands a ceasefire. Russia refuses."
    result = {
        "text": text,
        "demands": [{"quote": "Ukraine demands a ceasefire", "start": 0, "end": 27}],
        "positions": [{"quote": "Russia refuses", "start": 28, "end": 42}],  # really 29..43
    }
    assert text[0:27] == "Ukraine demands a ceasefire"
    assert quote_validity(result) == pytest.approx(0.5)
    assert quote_validity({"text": text, "demands": [], "positions": []}) == 1.0


def test_actor_alias_rule() -> None:
    assert actor_matches("Putin", ["Vladimir Putin"])
    assert actor_matches("Russian President Vladimir Putin", ["Putin"])
    assert actor_matches("putin\u2019s", ["Vladimir Putin"])
    assert not actor_matches("Moscow", ["Vladimir Putin"])
    assert actor_matches("Moscow", ["Vladimir Putin", "Moscow"])
    assert not actor_matches("Zelensky", ["Vladimir Putin"])
    assert not actor_matches("President Zelensky", ["President Putin"])


def test_alias_match_on_overlapping_quote() -> None:
    predicted = [item("Putin", "withdrawal of troops", "Ukraine withdraw from Donetsk")]
    assert match_items(predicted, [REF_WITHDRAW], TEXT) == [(0, 0)]


def test_wrong_actor_does_not_match_even_with_the_same_quote() -> None:
    predicted = [
        item(
            "Zelensky",
            "Ukraine withdraw from Donetsk",
            "Vladimir Putin demanded that Ukraine withdraw from Donetsk.",
        )
    ]
    scores = extraction_scores(predicted, [REF_WITHDRAW], TEXT)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (0, 1, 1)
    assert scores["f1"] == 0.0


def test_overlap_rule() -> None:
    # Overlaps the reference sentence only on "Donetsk." (8 of 42 chars): below half.
    straddling = item("Putin", "territory", "Donetsk. Zelensky rejected any withdrawal.")
    assert match_items([straddling], [REF_WITHDRAW], TEXT) == []
    # No overlap at all, but the demand text is the reference's: content rule matches.
    by_content = item("Putin", "Ukraine withdraw from Donetsk", "Putin also said sanctions")
    assert match_items([by_content], [REF_WITHDRAW], TEXT) == [(0, 0)]
    # Each prediction goes to the reference it overlaps.
    predicted = [
        item("Putin", "lift sanctions", "Putin also said sanctions must be lifted before talks."),
        item("Putin", "territory", "Putin demanded that Ukraine withdraw"),
    ]
    assert match_items(predicted, [REF_WITHDRAW, REF_SANCTIONS], TEXT) == [(0, 1), (1, 0)]


def test_matching_is_one_to_one_and_prefers_the_higher_score() -> None:
    weaker = item(
        "Putin", "territory", "Vladimir Putin demanded that Ukraine withdraw from Donetsk."
    )
    stronger = item("Putin", "Ukraine withdraw from Donetsk", "Ukraine withdraw from Donetsk")
    assert match_items([weaker, stronger], [REF_WITHDRAW], TEXT) == [(1, 0)]
    scores = extraction_scores([weaker, stronger], [REF_WITHDRAW], TEXT)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 0)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(1.0)
    assert scores["f1"] == pytest.approx(2 / 3)


# Its quote is the whole text, so it contains both reference quotes (overlap 1.0), and its
# demand is REF_WITHDRAW's (ROUGE-1 1.0): 2.0 with REF_WITHDRAW, 1.0 with REF_SANCTIONS.
BROAD = item("Putin", "Ukraine withdraw from Donetsk", TEXT)


def test_optimal_matching_recovers_the_match_greedy_would_leave_out() -> None:
    # NARROW's quote lies inside REF_WITHDRAW's (overlap 1.0), content ROUGE-1 2/3: 1.67.
    # It cannot match REF_SANCTIONS (no overlap, no shared content).
    narrow = item("Putin", "Ukraine withdraw", "Putin demanded that Ukraine withdraw")
    # A greedy pass takes the best pair, BROAD-WITHDRAW (2.0), and leaves NARROW and
    # REF_SANCTIONS unmatched; BROAD-SANCTIONS + NARROW-WITHDRAW totals 2.67.
    assert match_items([BROAD, narrow], [REF_WITHDRAW, REF_SANCTIONS], TEXT) == [(0, 1), (1, 0)]
    scores = extraction_scores([BROAD, narrow], [REF_WITHDRAW, REF_SANCTIONS], TEXT)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 0, 0)
    # The same with the roles of the two sides swapped.
    assert match_items([REF_WITHDRAW, REF_SANCTIONS], [BROAD, narrow], TEXT) == [(0, 1), (1, 0)]


def test_matching_maximises_total_score_not_match_count() -> None:
    # Overlaps REF_WITHDRAW on "withdraw from Donetsk." (22 of its 31 chars), no shared
    # content: 0.71. BROAD-SANCTIONS + this = 1.71 < BROAD-WITHDRAW alone = 2.0.
    weak = item("Putin", "territory", "withdraw from Donetsk. Zelensky")
    assert match_items([BROAD, weak], [REF_WITHDRAW, REF_SANCTIONS], TEXT) == [(0, 0)]


def test_equal_totals_prefer_more_matches() -> None:
    # Overlap 1.0, no shared content: 1.0. BROAD-WITHDRAW alone (2.0) and BROAD-SANCTIONS +
    # this (1.0 + 1.0) tie on score; the two-match assignment wins.
    inside = item("Putin", "territory", "Putin demanded that Ukraine withdraw")
    assert match_items([BROAD, inside], [REF_WITHDRAW, REF_SANCTIONS], TEXT) == [(0, 1), (1, 0)]


def test_ties_between_equal_items_are_settled_the_same_way_every_time() -> None:
    twin = item("Putin", "territory", "Putin demanded that Ukraine withdraw")
    for _ in range(3):
        assert match_items([twin, dict(twin)], [REF_WITHDRAW], TEXT) == [(0, 0)]
        assert match_items([twin], [REF_WITHDRAW, dict(REF_WITHDRAW)], TEXT) == [(0, 0)]
        assert match_items([twin, dict(twin)], [REF_WITHDRAW, dict(REF_WITHDRAW)], TEXT) == [
            (0, 0),
            (1, 1),
        ]


def test_ineligible_pairs_are_never_matched() -> None:
    # Same quote and demand as REF_WITHDRAW but the wrong actor. The solver pairs every
    # prediction with some reference; this pair (score 0) must not come back as a match.
    wrong_actor = item(
        "Zelensky",
        "Ukraine withdraw from Donetsk",
        "Vladimir Putin demanded that Ukraine withdraw from Donetsk.",
    )
    sanctions = item("Putin", "sanctions must be lifted", "sanctions must be lifted before talks")
    assert match_items([wrong_actor, sanctions], [REF_WITHDRAW, REF_SANCTIONS], TEXT) == [(1, 1)]
    # Right actor, but evidence agrees with neither reference.
    off_topic = item("Putin", "territory", "Zelensky rejected any withdrawal.")
    assert match_items([off_topic, BROAD], [REF_WITHDRAW, REF_SANCTIONS], TEXT) == [(1, 0)]
    # Strict positions: the wrong stance is never matched, though it would add a match.
    ref = reference(
        "Vladimir Putin", "sanctions", REF_SANCTIONS["quote"], kind="issue", stance="oppose"
    )
    neutral = item("Putin", "sanctions", REF_SANCTIONS["quote"], kind="issue", stance="neutral")
    assert match_items([neutral], [ref], TEXT) == [(0, 0)]
    assert match_items([neutral], [ref], TEXT, require_stance=True) == []


def test_strict_positions_need_the_same_stance() -> None:
    ref = reference(
        "Volodymyr Zelensky",
        "withdrawal",
        "Zelensky rejected any withdrawal.",
        ["Zelenskyy"],
        kind="issue",
        stance="oppose",
    )
    predicted = [
        item(
            "Zelensky",
            "withdrawal",
            "Zelensky rejected any withdrawal.",
            kind="issue",
            stance="neutral",
        )
    ]
    result = {"text": TEXT, "demands": [], "positions": predicted}
    scores = result_extraction_scores(result, {"demands": [], "positions": [ref]})
    assert scores["positions"]["tp"] == 1
    assert scores["positions_strict"]["tp"] == 0
    assert scores["demands"]["f1"] == 1.0  # nothing expected, nothing predicted


def test_sum_extraction_scores_micro_averages() -> None:
    total = sum_extraction_scores(
        [
            {"tp": 1, "fp": 1, "fn": 0},
            {"tp": 1, "fp": 0, "fn": 2},
        ]
    )
    assert total["precision"] == pytest.approx(2 / 3)
    assert total["recall"] == pytest.approx(2 / 4)
    assert total["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_mean_ci() -> None:
    assert mean_ci([2.0, 2.0, 2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert mean_ci([1.0, 2.0, 3.0]) == (2.0, None, None)
    mean, low, high = mean_ci([float(v) for v in range(1, 11)])
    assert mean == pytest.approx(5.5)
    assert low is not None and high is not None
    assert 1.0 <= low < 5.5 < high <= 10.0
    assert mean_ci([float(v) for v in range(1, 11)]) == (mean, low, high)  # fixed seed
    assert math.isnan(mean_ci([])[0])


def test_detokenize_and_truecase_summeval_text() -> None:
    tokenized = "sterling 's wife sued . she won $ 2.6 million , 41 - year - old stiviano said"
    assert detokenize(tokenized) == (
        "sterling's wife sued. she won $2.6 million, 41-year-old stiviano said"
    )
    article = "Sterling's wife sued Stiviano. She won."
    assert truecase("sterling's wife sued. she won", article) == "Sterling's wife sued. She won"


# Field metrics -------------------------------------------------------------------------------
FIELD_TEXT = (
    "The union demanded that the company raise pay by 5% before Friday. "
    "The mayor said she opposes the plan."
)
DEMAND_QUOTE = "The union demanded that the company raise pay by 5% before Friday."
REFERENCE = {
    "demands": [
        {
            "actor": "the union",
            "actor_aliases": ["union"],
            "demand": "raise pay by 5%",
            "target": "the company",
            "conditions": "before Friday",
            "quote": DEMAND_QUOTE,
        }
    ],
    "positions": [
        {
            "actor": "Mayor Ann Lee",
            "actor_aliases": ["the mayor"],
            "issue": "the plan",
            "stance": "oppose",
            "quote": "The mayor said she opposes the plan.",
        }
    ],
}


def field_result(**demand: object) -> dict:
    start = FIELD_TEXT.index(DEMAND_QUOTE)
    item = {
        "actor": "the union",
        "demand": "raise pay by 5%",
        "target": "the company",
        "conditions": "before Friday",
        "quote": DEMAND_QUOTE,
        "start": start,
        "end": start + len(DEMAND_QUOTE),
        **demand,
    }
    return {"text": FIELD_TEXT, "demands": [item], "positions": []}


def test_a_copied_sentence_scores_low_on_what_and_a_precise_phrase_high() -> None:
    precise = field_rates(field_counts(field_result(), REFERENCE))
    copied = field_rates(field_counts(field_result(demand=DEMAND_QUOTE), REFERENCE))
    assert precise["what_f1"] == 1.0 and precise["what_copied"] == 0.0
    assert copied["what_f1"] < 0.6 and copied["what_copied"] == 1.0


def test_target_and_conditions_are_found_missed_or_spurious() -> None:
    right = field_rates(field_counts(field_result(), REFERENCE))
    assert right["target_found"] == 1.0 and right["conditions_found"] == 1.0
    wrong = field_rates(field_counts(field_result(target="Friday", conditions=None), REFERENCE))
    assert wrong["target_found"] == 0.0 and wrong["conditions_found"] == 0.0
    no_target = {"demands": [dict(REFERENCE["demands"][0], target=None)], "positions": []}
    spurious = field_rates(field_counts(field_result(), no_target))
    assert spurious["target_spurious"] == 1.0 and math.isnan(spurious["target_found"])
    clean = field_rates(field_counts(field_result(target=None), no_target))
    assert clean["target_spurious"] == 0.0


def test_stance_accuracy_counts_matched_positions_only() -> None:
    quote = "The mayor said she opposes the plan."
    start = FIELD_TEXT.index(quote)
    position = {"actor": "the mayor", "issue": "the plan", "quote": quote, "start": start}
    position["end"] = start + len(quote)
    result = {"text": FIELD_TEXT, "demands": [], "positions": [dict(position, stance="oppose")]}
    assert field_rates(field_counts(result, REFERENCE))["stance_accuracy"] == 1.0
    result["positions"] = [dict(position, stance="support")]
    assert field_rates(field_counts(result, REFERENCE))["stance_accuracy"] == 0.0
    unmatched = dict(position, actor="the council", stance="support")
    result["positions"] = [unmatched]
    assert math.isnan(field_rates(field_counts(result, REFERENCE))["stance_accuracy"])


def test_an_actor_is_exact_only_as_the_reference_names_it() -> None:
    assert actor_exact("The Union", REFERENCE["demands"][0])
    assert actor_exact("the mayor", REFERENCE["positions"][0])
    assert not actor_exact("Lee", REFERENCE["positions"][0])  # related: the same surname
    quote = "The mayor said she opposes the plan."
    start = FIELD_TEXT.index(quote)
    related = {"actor": "Lee", "issue": "the plan", "stance": "oppose", "quote": quote}
    related.update(start=start, end=start + len(quote))
    counts = field_counts({"text": FIELD_TEXT, "demands": [], "positions": [related]}, REFERENCE)
    assert (counts["matched"], counts["actor_exact"], counts["actor_related"]) == (1, 0, 1)


def test_field_counts_add_up_across_articles() -> None:
    one = field_counts(field_result(), REFERENCE)
    total = sum_field_counts([one, one])
    assert total["matched"] == 2 * one["matched"]
    both = zip(field_rates(total).values(), field_rates(one).values(), strict=True)
    assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in both)
