"""Briefings: actors resolved across articles, merging, what differs, the combined summary,
failed articles, the command, and the briefing references and merge scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval import briefing as brief_eval
from service import brief
from service.briefing import ActorResolver, cluster, person_name, source_articles
from service.cli import main
from service.cli import render_briefing as render
from service.pipeline import Pipeline
from service.schemas import Briefing
from service.settings import Settings
from tests.conftest import ROOT, SEEDS

# Three outlets on one demand, each naming the speaker differently: by title ("the Russian
# president", introduced earlier in the article), by surname, and by his capital.
INTRODUCED = (
    "Russian President Vladimir Putin spoke to reporters in Bishkek on Thursday. "
    "The Russian president demanded that Ukrainian troops withdraw from the occupied territory "
    "before any ceasefire can be signed. "
    "Ukrainian President Volodymyr Zelenskyy said Kyiv would never give up its land."
)
SURNAME = (
    "Putin insisted that Ukrainian troops must withdraw from the occupied territory before a "
    "ceasefire is signed. Zelensky said Ukraine will never give up its land to Russia."
)
CAPITAL = (
    "Moscow demands that Ukrainian troops withdraw from the occupied territory until a "
    "ceasefire, officials said. The talks resume next week."
)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline(settings=Settings(cache_dir=tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def aliases(pipeline: Pipeline) -> Briefing:
    return brief(
        [
            {"id": "titles", "text": INTRODUCED, "outlet": "Outlet A"},
            {"id": "surnames", "text": SURNAME},
            {"id": "capital", "text": CAPITAL, "title": "Moscow restates terms"},
        ],
        pipeline=pipeline,
    )


def assert_grounded(briefing: Briefing) -> None:
    texts = {a.id: a.text for a in briefing.articles}
    for item in briefing.items:
        for source in item.sources:
            assert texts[source.article][source.start : source.end] == source.quote
            for more in source.also:
                assert texts[source.article][more.start : more.end] == more.quote
    for sentence in briefing.summary:
        assert texts[sentence.article][sentence.start : sentence.end] == sentence.quote


# Actors ------------------------------------------------------------------------------------------
def test_actors_resolve_across_articles_by_title_surname_spelling_and_capital() -> None:
    resolver = ActorResolver([INTRODUCED, SURNAME, CAPITAL])
    putin = resolver.resolve("Vladimir Putin", 0)
    assert (putin.kind, putin.name) == ("person", "Vladimir Putin")
    assert putin.groups == {"Russia"}  # introduced as "Russian President Vladimir Putin"
    assert resolver.resolve("Putin", 1) == putin
    assert resolver.resolve("the Russian president", 2) == putin  # introduced in article 0
    zelensky = resolver.resolve("Zelensky", 1)
    assert zelensky == resolver.resolve("Volodymyr Zelenskyy", 0)
    assert zelensky == resolver.resolve("Zelenskiy", 2)
    moscow = resolver.resolve("Moscow", 2)
    assert (moscow.kind, moscow.name) == ("group", "Russia")
    assert resolver.resolve("the Kremlin", 0) == moscow
    assert moscow.compatible(putin) and putin.compatible(moscow)
    assert not moscow.compatible(zelensky) and not putin.compatible(zelensky)
    assert resolver.resolve("Kyiv", 0).compatible(zelensky)


def test_institutions_and_places_are_not_people() -> None:
    assert person_name("Treasury Secretary Scott Bessent") == "Scott Bessent"
    assert person_name("Lord Frost") == "Frost"
    assert person_name("Ukrainian President Volodymyr Zelenskyy") == "Volodymyr Zelenskyy"
    for name in ("Security Service of Ukraine", "United States", "Commercial Services"):
        assert person_name(name) is None
    resolver = ActorResolver(["The Security Service of Ukraine said it caught a spy."])
    assert resolver.resolve("Security Service of Ukraine", 0).name == "Ukraine"


# Merging -----------------------------------------------------------------------------------------
def test_one_demand_merges_across_title_surname_and_capital(aliases: Briefing) -> None:
    assert_grounded(aliases)
    withdrawal = [i for i in aliases.items if "withdraw" in i.claim]
    assert len(withdrawal) == 1
    item = withdrawal[0]
    assert item.actor == "Vladimir Putin" and item.kind == "demand"
    assert item.carried_by == ["titles", "surnames", "capital"]
    assert [s.actor for s in item.sources] == ["Vladimir Putin", "Putin", "Moscow"]
    assert item.sources[0].outlet == "Outlet A"
    assert item.sources[2].title == "Moscow restates terms"
    assert not item.single_source and not item.missing_from
    # each outlet's own condition wording, side by side (the rules read a bare "before" as
    # time, not as a condition, so the second outlet states none)
    assert item.conditions_differ
    assert [s.conditions for s in item.sources] == [
        "before any ceasefire can be signed",
        None,
        "until a ceasefire",
    ]


def test_items_carried_by_some_outlets_are_flagged(aliases: Briefing) -> None:
    (land,) = [i for i in aliases.items if "land" in i.claim]
    assert land.actor == "Volodymyr Zelenskyy"
    assert land.carried_by == ["titles", "surnames"] and land.missing_from == ["capital"]
    assert not land.single_source
    assert aliases.items[0].carried_by == ["titles", "surnames", "capital"]  # widest first


def test_same_words_from_different_actors_stay_apart(pipeline: Pipeline) -> None:
    briefing = brief(
        [
            {"id": "a", "text": "US envoy Steve Witkoff said meaningful progress had been made."},
            {"id": "b", "text": "Karoline Leavitt said meaningful progress had been made."},
        ],
        pipeline=pipeline,
    )
    assert len(briefing.items) == 2
    assert all(i.single_source for i in briefing.items)
    assert {i.carried_by[0] for i in briefing.items} == {"a", "b"}


def test_different_stances_of_one_actor_are_a_conflict(pipeline: Pipeline) -> None:
    briefing = brief(
        [
            {"id": "for", "text": "Mayor Jane Smith said that she supports the new budget plan."},
            {
                "id": "against",
                "text": "Mayor Jane Smith said that she opposes the new budget plan.",
            },
        ],
        pipeline=pipeline,
    )
    (item,) = briefing.items
    assert item.actor == "Jane Smith" and item.conflict
    assert {s.article: s.stance for s in item.sources} == {"for": "support", "against": "oppose"}
    assert "CONFLICT: support in for, oppose in against" in render(briefing)


def test_agreeing_stances_are_no_conflict(aliases: Briefing) -> None:
    assert not any(i.conflict for i in aliases.items)


def test_clusters_never_join_incompatible_actors() -> None:
    similarity = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, 0.9], [0.9, 0.9, 1.0]])
    allowed = np.ones((3, 3), dtype=bool)
    allowed[0, 2] = allowed[2, 0] = False  # 0~1 and 1~2 may merge, 0~2 may not
    assert cluster(similarity, allowed, 0.5) == [[0, 1], [2]]
    assert cluster(similarity, np.ones((3, 3), dtype=bool), 0.95) == [[0], [1], [2]]


# Failures ----------------------------------------------------------------------------------------
def test_a_failed_article_is_listed_and_the_rest_still_brief(pipeline: Pipeline) -> None:
    briefing = brief(
        [
            {"id": "titles", "text": INTRODUCED},
            {"id": "empty", "text": "   "},
            {"id": "both", "text": "x", "html": "<p>x</p>"},
            {"id": "surnames", "text": SURNAME},
        ],
        pipeline=pipeline,
    )
    assert [a.id for a in briefing.articles] == ["titles", "surnames"]
    failed = {f.id: (f.status, f.message) for f in briefing.failed}
    assert failed["empty"] == (422, "the article has no text")
    assert failed["both"][0] == 422 and "exactly one of 'text' or 'html'" in failed["both"][1]
    assert any(i.carried_by == ["titles", "surnames"] for i in briefing.items)
    assert_grounded(briefing)


def test_ids_are_made_unique(pipeline: Pipeline) -> None:
    briefing = brief(
        [{"text": SURNAME}, {"id": "x", "text": CAPITAL}, {"id": "x", "text": "  "}],
        pipeline=pipeline,
    )
    ids = [a.id for a in briefing.articles] + [f.id for f in briefing.failed]
    assert len(set(ids)) == 3 and ids[:2] == ["article-1", "x"]


def test_a_renamed_id_is_one_no_article_of_the_request_uses() -> None:
    """``d, d, d-2``: the second ``d`` must not take the client's own ``d-2`` (which then came
    back as ``d-2-3``); an article without an id must not take a client's ``article-1``."""
    rows = [
        {"id": "d", "text": SURNAME},
        {"id": "d", "text": CAPITAL},
        {"id": "d-2", "text": CAPITAL},
    ]
    sources, failed = source_articles(rows)
    ids = [s.id for s in sources]
    assert failed == [] and len(set(ids)) == 3
    assert ids[0] == "d" and ids[2] == "d-2" and ids[1] not in {"d", "d-2"}
    sources, _ = source_articles([{"text": SURNAME}, {"id": "article-1", "text": CAPITAL}])
    assert sources[1].id == "article-1" and sources[0].id != "article-1"


# The combined summary ----------------------------------------------------------------------------
def test_combined_summary_draws_on_all_articles_without_repeating(aliases: Briefing) -> None:
    from service.embedding import embed

    summary = aliases.summary
    assert 3 <= len(summary) <= 6
    assert_grounded(aliases)
    assert len({s.article for s in summary}) >= 2
    vectors = embed([s.quote for s in summary])
    similarity = vectors @ vectors.T
    assert (similarity[~np.eye(len(summary), dtype=bool)] <= 0.8 + 1e-6).all()


# The seeds: the issue's done-when ----------------------------------------------------------------
def test_seed_briefing_lists_each_demand_once_with_both_sources(pipeline: Pipeline) -> None:
    briefing = brief(
        [{"id": p.stem, "text": p.read_text(encoding="utf-8")} for p in SEEDS], pipeline=pipeline
    )
    assert_grounded(briefing)
    seeds = [p.stem for p in SEEDS]
    withdrawal = [i for i in briefing.items if "withdraw" in i.claim and i.kind == "demand"]
    recognition = [i for i in briefing.items if "Crimea" in i.claim]
    for found in (withdrawal, recognition):
        assert len(found) == 1
        assert found[0].carried_by == seeds
    ceasefire = [
        i
        for i in briefing.items
        if any("ceasefire" in q for s in i.sources for q in [s.quote, *(e.quote for e in s.also)])
    ]
    assert ceasefire == withdrawal  # "ruled out ... ceasefire before ... withdraw" merged in
    assert any(i.single_source for i in briefing.items)


def test_brief_command_writes_json_and_marks_single_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STANDPOINT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "briefing.json"
    assert main(["brief", *map(str, SEEDS), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    briefing = Briefing.model_validate_json(out.read_text(encoding="utf-8"))
    assert_grounded(briefing)
    assert "SINGLE SOURCE: only in" in printed
    assert printed.count("recognition of Russia’s occupation of Crimea") == 3  # claim + 2 quotes


def test_brief_command_lists_an_unreadable_file_and_needs_two_articles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STANDPOINT_CACHE_DIR", str(tmp_path / "cache"))
    missing = str(tmp_path / "missing.txt")
    assert main(["brief", *map(str, SEEDS), missing, "--json"]) == 2
    captured = capsys.readouterr()
    assert "missing: " in captured.err and "no such file" in captured.err
    assert len(json.loads(captured.out)["articles"]) == 2
    assert main(["brief", str(SEEDS[0])]) == 2
    assert "at least 2 articles" in capsys.readouterr().err


# The references and the merge scoring -------------------------------------------------------------
REFERENCES = ROOT / "eval" / "data" / "briefings.jsonl"
DATA_DIR = ROOT.parent / "shared" / "eval-data"


def test_briefing_references_quote_their_articles_verbatim(pipeline: Pipeline) -> None:
    """Every reference quote is verbatim in the cleaned text, at its offsets or, where cleaning
    has changed, found again (the shared articles are checked when ../shared/eval-data is
    there; the seed event always)."""
    events = brief_eval.read_references(REFERENCES)
    assert len(events) >= 4
    checked = 0
    for event in events:
        sources = {a["source"] for a in event["articles"]}
        if sources != {"seeds"} and not DATA_DIR.is_dir():
            continue
        articles = brief_eval.article_texts(event, data_dir=DATA_DIR, seeds=ROOT / "seeds")
        results = pipeline.run(list(articles))
        brief_eval.check_offsets(event, results)  # raises on a quote not in the text
        texts = {r.id: r.text for r in results}
        for item in event["items"]:
            for s in item["sources"]:
                assert texts[s["article"]][s["start"] : s["end"]] == s["quote"]
        assert any(len({s["article"] for s in i["sources"]}) > 1 for i in event["items"])
        checked += 1
    assert checked >= 1


def _event(refs: list[set[str]], articles: list[int], similarity: np.ndarray) -> brief_eval.Event:
    from service.briefing import Actor, Node
    from service.schemas import Position

    item = Position(actor="A", issue="x", stance="support", quote="q", start=0, end=1)
    event = brief_eval.Event("toy", {"items": []})
    event.nodes = [Node(a, item, Actor("person", "A"), "x") for a in articles]
    event.refs = refs
    event.cosine = event.dice = similarity
    event.allowed = np.ones(similarity.shape, dtype=bool)
    return event


def test_pair_counts_precision_and_recall() -> None:
    # gold: {0, 1, 2} say one thing, 3 another; the merge finds {0, 1} and {2, 3}
    similarity = np.eye(4)
    similarity[0, 1] = similarity[1, 0] = similarity[2, 3] = similarity[3, 2] = 0.9
    event = _event([{"a"}, {"a"}, {"a"}, {"b"}], [0, 1, 1, 0], similarity)
    tp, fp, fn = brief_eval.pair_counts(event, weight=1.0, threshold=0.5)
    assert (tp, fp, fn) == (1, 1, 2)  # gold pairs 01 02 12; merged 01 23
    assert brief_eval.scores((tp, fp, fn))["precision"] == 0.5


def test_choice_prefers_a_plateau_to_a_lone_peak() -> None:
    grid: dict[tuple[float, float], list[brief_eval.Counts]] = {
        (w, t): [(0, 0, 10)] for w in brief_eval.WEIGHTS for t in brief_eval.THRESHOLDS
    }
    peak = brief_eval.THRESHOLDS[3]
    grid[(1.0, peak)] = [(10, 1, 0)]  # F1 0.95 at one threshold only
    plateau = brief_eval.THRESHOLDS[10:15]
    for t in plateau:
        grid[(0.5, t)] = [(8, 0, 2)]  # F1 0.89 over five thresholds
    assert brief_eval.choose(grid, [0]) == (0.5, plateau[2])


def test_eval_briefings_writes_scores_and_the_threshold_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds_only = tmp_path / "briefings.jsonl"
    seeds_only.write_text(REFERENCES.read_text(encoding="utf-8").splitlines()[0] + "\n")
    out = tmp_path / "run"
    assert main(["eval", "--briefings", str(seeds_only), "--out", str(out)]) == 0
    results = json.loads((out / "briefings.json").read_text(encoding="utf-8"))
    assert {"chosen", "leave_one_event_out", "shipped", "oracle_items"} <= set(results)
    assert results["chosen"]["threshold"] in brief_eval.THRESHOLDS
    assert 0.0 <= results["chosen"]["precision"] <= 1.0
    assert results["chosen"]["tp"] > 0
    assert "| leave-one-event-out" in (out / "briefings.md").read_text(encoding="utf-8")


def test_a_briefing_keeps_no_embeddings_in_memory(pipeline: Pipeline) -> None:
    """A server briefs endless new texts; the process-wide embedding memo must not grow."""
    from service import embedding

    before = len(embedding._EMBEDDINGS)
    brief([{"text": INTRODUCED + " Fresh words."}, {"text": CAPITAL + " More."}], pipeline=pipeline)
    assert len(embedding._EMBEDDINGS) == before


def test_brief_command_reads_outlets_and_titles_from_jsonl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STANDPOINT_CACHE_DIR", str(tmp_path / "cache"))
    rows = tmp_path / "event.jsonl"
    rows.write_text(
        json.dumps({"id": "a", "text": INTRODUCED, "outlet": "Outlet A", "title": "T"})
        + "\n"
        + json.dumps({"id": "b", "text": SURNAME, "url": "ignored"})
        + "\n",
        encoding="utf-8",
    )
    assert main(["brief", str(rows), "--json"]) == 0
    briefing = Briefing.model_validate_json(capsys.readouterr().out)
    assert [(a.id, a.outlet, a.title) for a in briefing.articles] == [
        ("a", "Outlet A", "T"),
        ("b", None, None),
    ]
