from __future__ import annotations

from service.grounding import filter_unsupported, locate_quote, unsupported_terms, verify_offsets

ARTICLE = "Putin said “no draft”   had been agreed.\nHe met 3 envoys in Bishkek on Thursday."


def test_exact_quote_is_found_at_its_offsets():
    start, end = locate_quote("met 3 envoys", ARTICLE)
    assert ARTICLE[start:end] == "met 3 envoys"


def test_quote_with_other_quote_marks_and_spacing_maps_to_the_articles_own_characters():
    start, end = locate_quote('said "no draft" had been', ARTICLE)
    assert ARTICLE[start:end] == "said “no draft”   had been"
    assert verify_offsets(ARTICLE[start:end], start, end, ARTICLE)


def test_invented_quote_is_not_found():
    assert locate_quote("Putin said a deal was signed", ARTICLE) is None
    assert locate_quote("   ", ARTICLE) is None


def test_offsets_must_match_exactly():
    assert not verify_offsets("Putin", 1, 6, ARTICLE)
    assert not verify_offsets("Putin", 0, 500, ARTICLE)


def test_names_and_numbers_not_in_the_article_are_reported():
    assert unsupported_terms("Putin met three envoys in Bishkek.", ARTICLE) == []
    assert unsupported_terms("John Kerry met 700 envoys.", ARTICLE) == ["John", "Kerry", "700"]


def test_filter_removes_unsupported_sentences_and_says_so():
    kept, warnings = filter_unsupported(
        ["Putin met 3 envoys in Bishkek.", "Kerry criticized the plan."], ARTICLE
    )
    assert kept == ["Putin met 3 envoys in Bishkek."]
    assert len(warnings) == 1 and "Kerry" in warnings[0]


def test_summary_sentences_no_article_sentence_supports_are_removed():
    from service.grounding import SUPPORT_THRESHOLD, filter_unembedded

    article = [
        "The transport workers' union demanded a 6 percent raise from the city council.",
        "The mayor said the budget could not pay for any raise this year.",
    ]
    close = "The union demanded a 6 percent raise from the city council."
    invented = "Scientists discovered a new species of frog in the Amazon rainforest."
    kept, removed = filter_unembedded([close, invented], article)
    assert kept == [close]
    assert len(removed) == 1 and "frog" in removed[0] and f"{SUPPORT_THRESHOLD:.2f}" in removed[0]
    assert filter_unembedded([], article) == ([], [])
