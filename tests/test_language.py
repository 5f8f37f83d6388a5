"""The article's language is detected (py3langid's bundled model), recorded, and warned about."""

from __future__ import annotations

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
ENGLISH = (
    "The union demanded an eight percent raise on Monday. “We demand that the employers make "
    "an offer by Friday,” said its chair, Anna Smith, in Chicago. The employers' association "
    "rejected the demand and warned of strikes on public transport."
)


def english_only_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "English-only" in w]


@pytest.mark.parametrize(("text", "code"), [(GERMAN, "de"), (RUSSIAN, "ru"), (ENGLISH, "en")])
def test_detects_the_language(text: str, code: str) -> None:
    language, confidence = detect_language(text)
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


def test_english_articles_get_no_language_warning(seed_articles: list[dict[str, str]]) -> None:
    results = Pipeline(settings=Settings()).batch([*seed_articles, {"text": ENGLISH}])
    for result in results:
        assert result.meta.language == "en"
        assert english_only_warnings(result.warnings) == []
