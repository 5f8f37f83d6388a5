"""The word lists: one home per word, and cues that match whole words only."""

from __future__ import annotations

import re
from itertools import combinations

import pytest

from service import lexicon

BASE_LISTS = {
    name: getattr(lexicon, name)
    for name in (
        "FUNCTION_WORDS",
        "HONORIFICS",
        "CALENDAR_WORDS",
        "DEMONYMS",
        "NEWS_AGENCIES",
        "ROLE_WORDS",
        "ROLE_QUALIFIERS",
        "REPORTING_VERBS",
        "REPORTING_PARTICIPLES",
        "STANCE_VERBS",
    )
}
CUE_LISTS = {
    name: getattr(lexicon, name)
    for name in (
        "DEMAND_PHRASES",
        "OPPOSE_PHRASES",
        "SUPPORT_PHRASES",
        "CONDITION_PHRASES",
        "NEUTRAL_PHRASES",
    )
}


@pytest.mark.parametrize("lists", [BASE_LISTS, CUE_LISTS], ids=["words", "cues"])
def test_no_word_is_in_two_lists(lists):
    for (a, words_a), (b, words_b) in combinations(lists.items(), 2):
        assert not set(words_a) & set(words_b), f"{a} and {b} share words"


def test_cue_phrases_are_listed_once():
    for name, phrases in CUE_LISTS.items():
        assert len(set(phrases)) == len(phrases), f"{name} repeats a phrase"


def test_words_are_lower_case_and_trimmed():
    for words in [*BASE_LISTS.values(), *CUE_LISTS.values()]:
        assert all(w == w.strip().lower() and w for w in words)


def test_wider_sets_are_unions_of_the_base_lists():
    assert lexicon.TITLE_WORDS == (
        lexicon.ROLE_WORDS | lexicon.ROLE_QUALIFIERS | lexicon.HONORIFICS
    )
    assert lexicon.NOT_NAMES <= lexicon.NOT_ACTORS
    assert lexicon.DEMONYMS <= lexicon.NOT_ACTORS
    assert lexicon.NEWS_AGENCIES <= lexicon.NOT_ACTORS


def test_cues_match_whole_words_in_any_case():
    assert lexicon.OPPOSE_CUES.search("Moscow Ruled Out a truce")
    assert not lexicon.OPPOSE_CUES.search("Nevertheless, talks went on")
    assert not lexicon.DEMAND_CUES.search("a mustard gas attack")
    assert lexicon.NEUTRAL_CUES.search("he would neither confirm nor deny it")


def test_alternation_prefers_the_longest_phrase():
    match = re.match(lexicon.alternation(["only", "only if"]), "only if")
    assert match and match.group() == "only if"
