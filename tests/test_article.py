from __future__ import annotations

import pytest

from service.article import clean_article, split_sentences
from service.errors import InputError
from service.schemas import Article


def test_seed_page_furniture_is_removed_and_the_story_kept(seed_articles):
    text, removed = clean_article(Article(text=seed_articles[1]["text"]), max_chars=100_000)
    for junk in (
        "Open Modal",
        "Loading...",
        "Recommended Posts",
        "Copyright ©",
        "Getty Images",
        "vladimir20putin309713",
        "contributed to this report",
    ):
        assert junk not in text
    assert len(removed) == 7
    assert text.startswith("Russia ready to ‘fight to the last Ukrainian,’")
    assert "we will achieve that by armed force,” Putin said." in text


def test_clean_seed_is_left_as_it_is(seed_articles):
    raw = seed_articles[0]["text"]
    text, removed = clean_article(Article(text=raw), max_chars=100_000)
    assert removed == []
    assert text == raw.strip()


def test_junk_glued_to_a_sentence_is_cut_off_without_losing_the_sentence():
    raw = "“It’s not about us,” Putin said.Open Modal\nLoading...\nTalks go on."
    text, removed = clean_article(Article(text=raw), max_chars=100_000)
    assert removed == ["Open Modal", "Loading..."]
    assert text == "“It’s not about us,” Putin said.\n\nTalks go on."


def test_html_goes_through_trafilatura():
    body = "".join(
        f"<p>Paragraph {i}: The minister said the talks in Geneva would resume next week.</p>"
        for i in range(6)
    )
    html = (
        "<html><head><title>T</title></head><body><nav>Home | World | Sport</nav>"
        f"<article><h1>Talks resume</h1>{body}</article>"
        "<footer>Copyright 2025</footer></body></html>"
    )
    text, _ = clean_article(Article(html=html), max_chars=100_000)
    assert "Paragraph 5: The minister said" in text
    assert "Home | World" not in text


@pytest.mark.parametrize(
    ("article", "message"),
    [
        (Article(text=""), "no text"),
        (Article(text="   \n\n  "), "no text"),
        (Article(text="abc\x00def"), "binary"),
        (Article(text="".join(chr(i % 31 + 1) for i in range(500))), "binary"),
        (Article(text="word " * 100), "limit is 200"),
        (Article(html="<html><body></body></html>"), "no article text"),
    ],
)
def test_unusable_input_is_refused_with_a_reason(article, message):
    with pytest.raises(InputError, match=message):
        clean_article(article, max_chars=200)


def test_article_needs_exactly_one_body():
    with pytest.raises(ValueError, match="exactly one"):
        Article(text="a", html="<p>a</p>")


def test_sentences_keep_multi_sentence_quotes_together_and_offsets_match():
    text = (
        "“No draft has been agreed. Only a list of issues,” Putin said. The U.S. envoy left.\n"
        "He said: “We are ready.” Talks end on Feb. 10 in Geneva."
    )
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "“No draft has been agreed. Only a list of issues,” Putin said.",
        "The U.S. envoy left.",
        "He said: “We are ready.”",
        "Talks end on Feb. 10 in Geneva.",
    ]
    for s in sentences:
        assert text[s.start : s.end] == s.text
    assert [s.paragraph for s in sentences] == [0, 0, 1, 1]


def test_headings_are_marked():
    sentences = split_sentences("No trust in Ukraine’s leadership\nPutin said it was pointless.")
    assert [s.is_heading for s in sentences] == [True, False]
