"""POST /v1/briefings: the same limits and error rules as /v1/summaries/batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.pipeline import Pipeline
from tests.conftest import SEEDS
from tests.test_api import article, error_of, make_settings

SEED_ARTICLES = [{"id": p.stem, "text": p.read_text(encoding="utf-8")} for p in SEEDS]


def story(i: int) -> dict[str, str]:
    """One outlet's report of a dispute with named actors (so that items are extracted)."""
    return {
        "id": f"s{i}",
        "text": f"Report {i}. Union leader Dave Prentis demanded a raise of five percent from the "
        "city council. Mayor Jane Smith said she opposes any raise this year because the budget "
        "is tight.",
    }


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        yield c


def test_briefing_of_the_seeds_merges_with_grounded_sources(client: TestClient) -> None:
    articles = [{**SEED_ARTICLES[0], "outlet": "Outlet A"}, SEED_ARTICLES[1]]
    response = client.post("/v1/briefings", json={"articles": articles})
    assert response.status_code == 200, response.text
    body = response.json()
    texts = {a["id"]: a["text"] for a in body["articles"]}
    assert list(texts) == [p.stem for p in SEEDS] and body["failed"] == []
    assert body["articles"][0]["outlet"] == "Outlet A"
    crimea = [i for i in body["items"] if "Crimea" in i["claim"]]
    assert len(crimea) == 1 and crimea[0]["carried_by"] == list(texts)
    for item in body["items"]:
        for s in item["sources"]:
            assert texts[s["article"]][s["start"] : s["end"]] == s["quote"]
    assert 3 <= len(body["summary"]) <= 6
    assert body["meta"]["embedding_model"] == "all-MiniLM-L6-v2"


def test_a_failed_article_is_listed_and_the_rest_brief(client: TestClient) -> None:
    articles = [story(1), {"id": "empty", "text": "   "}, story(2)]
    response = client.post("/v1/briefings", json={"articles": articles})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [a["id"] for a in body["articles"]] == ["s1", "s2"]
    assert body["failed"] == [{"id": "empty", "status": 422, "message": "the article has no text"}]
    assert {i["actor"] for i in body["items"]} == {"Dave Prentis", "Jane Smith"}
    assert all(item["carried_by"] == ["s1", "s2"] for item in body["items"])


def test_renamed_ids_are_ones_no_article_of_the_request_uses(client: TestClient) -> None:
    text = SEEDS[0].read_text(encoding="utf-8")
    articles = [{"id": "d", "text": text}, {"id": "d", "text": text + " More."}]
    articles.append({"id": "d-2", "text": text + " Other."})
    response = client.post("/v1/briefings", json={"articles": articles})
    assert response.status_code == 200, response.text
    ids = [a["id"] for a in response.json()["articles"]]
    assert len(set(ids)) == 3 and ids[0] == "d" and ids[2] == "d-2", ids


def test_every_article_failing_is_still_an_answer(client: TestClient) -> None:
    response = client.post("/v1/briefings", json={"articles": [{"text": " "}, {"text": " "}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["items"] == [] and body["summary"] == [] and body["articles"] == []
    assert [f["id"] for f in body["failed"]] == ["article-1", "article-2"]


def test_limits_two_to_twenty_articles_and_max_batch_articles(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_batch_articles=3)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        assert "at least 2" in error_of(
            c.post("/v1/briefings", json={"articles": [article(1)]}), 422
        )
        error_of(c.post("/v1/briefings", json={"articles": []}), 422)
        four = {"articles": [article(i) for i in range(4)]}
        assert "limit is 3" in error_of(c.post("/v1/briefings", json=four), 422)
    settings = make_settings(tmp_path, max_batch_articles=100)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        many = {"articles": [article(i) for i in range(21)]}
        assert "at most 20" in error_of(c.post("/v1/briefings", json=many), 422)
        twenty = {"articles": [article(i) for i in range(20)]}
        assert c.post("/v1/briefings", json=twenty).status_code == 200


def test_invalid_articles_and_bodies_are_refused_like_batch(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=4096)
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        both = {"articles": [article(1), {"text": "x", "html": "<p>x</p>"}]}
        assert "exactly one" in error_of(c.post("/v1/briefings", json=both), 422)
        extra = {"articles": [article(1), {**article(2), "colour": "red"}]}
        error_of(c.post("/v1/briefings", json=extra), 422)
        long = {"articles": [article(1), {"text": "word " * 2000}]}
        error_of(c.post("/v1/briefings", json=long), 413)


def test_api_key_applies_to_briefings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key="correct-horse-battery")
    with TestClient(create_app(settings, Pipeline(settings=settings))) as c:
        body = {"articles": [article(1), article(2)]}
        error_of(c.post("/v1/briefings", json=body), 401)
        headers = {"Authorization": "Bearer correct-horse-battery"}
        assert c.post("/v1/briefings", json=body, headers=headers).status_code == 200


def test_briefings_are_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/briefings"]["post"]
    assert {"422", "413", "429", "503"} <= set(operation["responses"])
    assert "seeds" in operation["requestBody"]["content"]["application/json"]["examples"]
