"""Briefings: several reports of one event merged into who demanded what, and who reported it.

Every article goes through the same pipeline (and result cache) as ``summarize``; its demands
and positions become the items of the briefing. Items from different articles merge when
the same actor says the same thing:

- **actors** are resolved across articles: surnames and spelling variants of one person
  ("Zelensky", "Zelenskyy", "Volodymyr Zelenskiy"), titles through each article's own
  introductions ("the Russian president"), and capitals or institutions that stand for a
  country or body ("Moscow", "the Kremlin" for Russia; "Kyiv"; "Brussels", "the bloc"). A
  country is compatible with a person the articles introduce as speaking for it ("Russian
  President Vladimir Putin", "Kremlin spokesperson Dmitry Peskov"), so "Moscow's demands"
  can merge with Putin's;
- **sameness** of what they say is ``EMBEDDING_WEIGHT`` x the cosine of the claims'
  all-MiniLM-L6-v2 embeddings plus the rest x their content-word overlap (Dice); items merge
  by average linkage while the similarity stays at or above ``MERGE_THRESHOLD``. Both numbers
  were chosen on the hand-written references in eval/data/briefings.jsonl by ``eval.briefing``
  (leave-one-event-out; see eval/README.md), not guessed.

What differs is flagged per item: carried by only some articles (``missing_from``,
``single_source``), opposed stances across articles (``conflict``), and condition wording
(``conditions_differ``; each source keeps its own). The combined summary picks 3-6 sentences
from all articles by maximal marginal relevance, each with its article and offsets.

    standpoint brief seeds/000_*.txt seeds/002_*.txt [-o briefing.json] [--json]
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from service.article import split_sentences
from service.errors import StandpointError, first_error
from service.extraction import ActorIndex, index_actors
from service.guard import find_instructions
from service.lexicon import (
    AFFILIATIONS,
    GROUPS,
    INSTITUTION_WORDS,
    PERSON_TITLE_WORDS,
    STOPWORDS,
)
from service.schemas import (
    Article,
    BriefedArticle,
    Briefing,
    BriefingItem,
    BriefingMeta,
    BriefingSource,
    Demand,
    Evidence,
    FailedArticle,
    Position,
    Result,
    SourceArticle,
    SummarySentence,
)

logger = logging.getLogger(__name__)

# Chosen by `python -m eval.briefing` on the five events of eval/data/briefings.jsonl: the best
# pooled pair F1 smoothed over neighbouring thresholds (precision 1.000, recall 0.500 there;
# leave-one-event-out precision 0.909, recall 0.385). See eval/README.md.
MERGE_THRESHOLD = 0.375
EMBEDDING_WEIGHT = 0.25
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
MIN_ARTICLES, MAX_ARTICLES = 2, 20
SUMMARY_MIN, SUMMARY_MAX = 3, 6
MMR_LAMBDA = 0.5
SUMMARY_CANDIDATES = 30  # first body sentences of each article considered (leads carry news)
NEAR_DUPLICATE = 0.8  # cosine above which a further summary sentence would repeat one

_GROUP_OF = {alias: group for group, aliases in GROUPS.items() for alias in aliases}


class Runner(Protocol):
    """A ``Pipeline`` or a ``CachedPipeline``: results in input order, errors in place."""

    def run(self, inputs: list[Article | dict[str, Any]]) -> list[Any]: ...


# Actors ------------------------------------------------------------------------------------------
def plain_name(text: str) -> str:
    """Lower case, ASCII letters, straight apostrophes: for comparing names (unlike
    ``grounding.fold``, which keeps case and length for locating quotes)."""
    text = unicodedata.normalize("NFKD", text.replace("’", "'"))
    return "".join(c for c in text if not unicodedata.combining(c)).lower().strip()


def _surname_key(name: str) -> str:
    words = re.findall(r"[a-z][a-z'-]*", plain_name(name))
    return re.sub(r"'s$", "", words[-1]) if words else ""


def same_surname(a: str, b: str) -> bool:
    """Equal, or spelling variants of one transliterated name (Zelensky / Zelenskyy / -iy)."""
    return a == b or (min(len(a), len(b)) >= 6 and a[:6] == b[:6] and abs(len(a) - len(b)) <= 2)


@dataclass(frozen=True)
class Actor:
    """A resolved actor: a ``person`` (full name), a ``group`` (country or body), or a
    ``name`` nothing else matched (compared as written)."""

    kind: str
    name: str
    groups: frozenset[str] = frozenset()  # the groups a person speaks for

    def compatible(self, other: Actor) -> bool:
        if (self.kind, self.name) == (other.kind, other.name):
            return True
        pairs = ((self, other), (other, self))
        return any(
            a.kind == "group" and b.kind == "person" and a.name in b.groups for a, b in pairs
        )


@dataclass
class _Person:
    name: str
    groups: set[str] = field(default_factory=set)


class ActorResolver:
    """Actors of several articles resolved to one another, from the articles' own text."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.indexes: list[ActorIndex] = [index_actors(t) for t in texts]
        self.people: dict[str, _Person] = {}
        for text, index in zip(texts, self.indexes, strict=True):
            for full in index.full_names.values():
                name = person_name(full)
                if name is None or len(name.split()) < 2:
                    continue
                person = self._person(name, create=True)
                assert person is not None
                person.groups |= _affiliations(text, name)

    def _person(self, name: str, *, create: bool = False) -> _Person | None:
        key = _surname_key(name)
        if not key:
            return None
        for known, person in self.people.items():
            if same_surname(key, known) and _first_names_agree(person.name, name):
                return person
        if not create:
            return None
        self.people[key] = _Person(name=name)
        return self.people[key]

    def resolve(self, name: str, article: int) -> Actor:
        """The actor an item's actor string names, in the article it comes from."""
        plain = re.sub(r"^(?:the|a|an)\s+", "", plain_name(re.sub(r"[’']s$", "", name.strip())))
        if plain in _GROUP_OF:
            return Actor("group", _GROUP_OF[plain])
        last = plain.split()[-1] if plain.split() else ""
        core = person_name(name)
        if last in _GROUP_OF and core is None:  # "Security Service of Ukraine"
            return Actor("group", _GROUP_OF[last])
        words = plain.split()
        if words and all(w in PERSON_TITLE_WORDS or _affiliation_of(w) for w in words):
            described = self._described(name, article)
            if described is not None:
                name = described
            core = person_name(name)
        person = self._person(core) if core else None
        if person is not None:
            return Actor("person", person.name, frozenset(person.groups))
        if core and len(core.split()) >= 2:
            return Actor("person", core)
        return Actor("name", plain)

    def _described(self, description: str, article: int) -> str | None:
        """The person a description such as "the Russian president" refers to: introduced
        with that title in this article, else in another one."""
        order = [article, *(i for i in range(len(self.indexes)) if i != article)]
        for i in order:
            words = [w.lower().strip(".,’'") for w in description.split()]
            found = self.indexes[i].by_description([w for w in words if w not in {"the", "a"}])
            if found:
                return found
        return None


def person_name(name: str) -> str | None:
    """The person's name in an actor string, or None if it names no person: titles and
    affiliations before it are dropped ("Treasury Secretary Scott Bessent" -> "Scott
    Bessent", "Lord Frost" -> "Frost"); institutions and places are not people ("Security
    Service of Ukraine", "Commercial Services", "United States")."""
    words = re.sub(r"[’']s\b", "", name).split()
    bare = [plain_name(w).strip(".,") for w in words]
    cut = max((i + 1 for i, w in enumerate(bare) if w in PERSON_TITLE_WORDS), default=0)
    while cut < len(words) and (bare[cut] in _GROUP_OF or _affiliation_of(bare[cut])):
        cut += 1
    words, bare = words[cut:], bare[cut:]
    if not 1 <= len(words) <= 4 or not all(w[:1].isupper() for w in words):
        return None
    if any(w in INSTITUTION_WORDS or w in _GROUP_OF or _affiliation_of(w) for w in bare):
        return None
    return " ".join(words)


def _first_names_agree(a: str, b: str) -> bool:
    first_a, first_b = plain_name(a).split()[:-1], plain_name(b).split()[:-1]
    given_a = [w for w in first_a if w not in PERSON_TITLE_WORDS]
    given_b = [w for w in first_b if w not in PERSON_TITLE_WORDS]
    return not given_a or not given_b or given_a[-1][0] == given_b[-1][0]


def _affiliation_of(word: str) -> str | None:
    for group, pattern in AFFILIATIONS.items():
        if re.fullmatch(pattern, word):
            return group
    return None


def _affiliations(text: str, full_name: str) -> set[str]:
    """Groups a person is introduced as speaking for: "Russian President Vladimir Putin",
    "The Kremlin spokesperson, Dmitry Peskov", "Rustem Umerov, Ukraine's chief negotiator"."""
    found: set[str] = set()
    for match in re.finditer(re.escape(full_name), text):
        before = text[max(0, match.start() - 120) : match.start()].rstrip()
        before = before.removesuffix(",").split("\n")[-1]
        title: list[str] = []
        for word in reversed(before.split()):
            bare = plain_name(word).strip('“”"(')
            if not (word[:1].isupper() or bare in PERSON_TITLE_WORDS) or bare in {"the", "a"}:
                break
            if re.search(r"[.;:!?]$", word) and not re.fullmatch(r"(?:u\.s\.|u\.k\.)", bare):
                break
            title.append(bare.rstrip(","))
        after = re.match(r",\s+([^,.;]{3,80})", text[match.end() :])
        if after:
            words = [plain_name(w) for w in after.group(1).split()[:4]]
            if any(w in PERSON_TITLE_WORDS for w in words):
                title += words
        for word in title:
            group = _affiliation_of(word.strip('“”"(),'))
            if group:
                found.add(group)
    return found


# Items and their similarity ----------------------------------------------------------------------
@dataclass
class Node:
    """One demand or position of one article, ready to merge."""

    article: int
    item: Demand | Position
    actor: Actor
    claim: str

    @property
    def kind(self) -> str:
        return "demand" if isinstance(self.item, Demand) else "position"


def collect_items(results: Sequence[Result]) -> list[Node]:
    """Every demand and position of the articles, with actors resolved across them."""
    resolver = ActorResolver([r.text for r in results])
    nodes = []
    for a, result in enumerate(results):
        items: list[Demand | Position] = [*result.demands, *result.positions]
        for item in sorted(items, key=lambda i: (i.start, i.end)):
            claim = item.demand if isinstance(item, Demand) else item.issue
            if len(claim.split()) < 3:
                claim = item.quote
            nodes.append(Node(a, item, resolver.resolve(item.actor, a), claim))
    return nodes


def content_words(text: str) -> set[str]:
    """Lower-cased content words cut to six letters (a crude stem: withdraw/withdrawal)."""
    words = re.findall(r"[a-z0-9]+", plain_name(text).replace("'", ""))
    return {w[:6] for w in words if len(w) > 2 and w not in STOPWORDS}


def similarities(nodes: Sequence[Node]) -> tuple[np.ndarray, np.ndarray]:
    """The claims' embedding cosines and content-word Dice coefficients, pairwise."""
    from service.embedding import embed

    vectors = embed([n.claim for n in nodes], remember=False)
    cosine = np.clip(vectors @ vectors.T, -1.0, 1.0).astype(np.float64)
    words = [content_words(n.claim) for n in nodes]
    dice = np.zeros((len(nodes), len(nodes)))
    for i in range(len(nodes)):
        for j in range(i + 1, len(nodes)):
            total = len(words[i]) + len(words[j])
            dice[i, j] = dice[j, i] = 2 * len(words[i] & words[j]) / total if total else 0.0
    return cosine, dice


def compatibility(nodes: Sequence[Node]) -> np.ndarray:
    """Whether two items may merge: their actors are compatible."""
    n = len(nodes)
    allowed = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(i, n):
            allowed[i, j] = allowed[j, i] = nodes[i].actor.compatible(nodes[j].actor)
    return allowed


def cluster(similarity: np.ndarray, allowed: np.ndarray, threshold: float) -> list[list[int]]:
    """Average-linkage clusters: merge the most similar pair of clusters while its mean
    similarity is at least ``threshold`` and every pair across them is allowed."""
    n = len(similarity)
    members = [[i] for i in range(n)]
    total = similarity.astype(np.float64).copy()
    blocked = ~allowed.copy()
    size = np.ones(n)
    active = np.ones(n, dtype=bool)
    while active.sum() > 1:
        mean = total / np.outer(size, size)
        mean[blocked | ~active[:, None] | ~active[None, :]] = -np.inf
        np.fill_diagonal(mean, -np.inf)
        a, b = np.unravel_index(int(np.argmax(mean)), mean.shape)
        if mean[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        members[a] += members[b]
        total[a, :] += total[b, :]
        total[:, a] += total[:, b]
        blocked[a, :] |= blocked[b, :]
        blocked[:, a] |= blocked[:, b]
        size[a] += size[b]
        active[b] = False
    return [sorted(members[i]) for i in range(n) if active[i]]


def merge(
    nodes: Sequence[Node], *, threshold: float = MERGE_THRESHOLD, weight: float = EMBEDDING_WEIGHT
) -> tuple[list[list[int]], np.ndarray]:
    """Clusters of node indices (items that say the same) and the similarity used."""
    if not nodes:
        return [], np.zeros((0, 0))
    cosine, dice = similarities(nodes)
    similarity = weight * cosine + (1 - weight) * dice
    return cluster(similarity, compatibility(nodes), threshold), similarity


# The briefing -----------------------------------------------------------------------------------
def brief(
    articles: Sequence[Article | dict[str, Any]],
    *,
    pipeline: Runner | None = None,
    settings: Any = None,
    threshold: float = MERGE_THRESHOLD,
) -> Briefing:
    """A briefing of several reports of one event.

    ``pipeline`` is a ``Pipeline`` or ``CachedPipeline``; without one, the pipeline the
    settings (default: the environment) describe is built and wrapped with the result cache.
    Articles that fail are listed in ``failed``; the rest are still briefed.
    """
    sources, failed = source_articles(articles)
    if pipeline is None:
        from service.cache import CachedPipeline
        from service.settings import Settings

        pipeline = CachedPipeline.open(settings or Settings())
    outcomes = pipeline.run(list(sources)) if sources else []
    briefing = briefing_from(sources, outcomes, threshold=threshold)
    briefing.failed = failed + briefing.failed
    return briefing


def source_articles(
    articles: Sequence[Article | dict[str, Any]],
) -> tuple[list[SourceArticle], list[FailedArticle]]:
    """Each input as a SourceArticle with a unique id, or, if it is not a valid article, a
    failure. An article keeps its id unless an earlier one has it; one without an id, or with
    a repeated one, gets ``article-N`` or ``ID-N`` (N its position, or the next number free):
    never an id that another article of the request uses."""
    sources: list[SourceArticle] = []
    failed: list[FailedArticle] = []
    rows = [
        raw.model_dump(exclude_unset=True) if isinstance(raw, Article) else dict(raw)
        for raw in articles
    ]
    wanted_ids = [data.get("id") if isinstance(data.get("id"), str) else None for data in rows]
    taken = {wanted for wanted in wanted_ids if wanted}
    used: set[str] = set()
    for number, (data, wanted) in enumerate(zip(rows, wanted_ids, strict=True), 1):
        article_id = wanted
        if not article_id or article_id in used:
            n = number
            article_id = f"{wanted or 'article'}-{n}"
            while article_id in used or article_id in taken:
                n += 1
                article_id = f"{wanted or 'article'}-{n}"
        used.add(article_id)
        try:
            sources.append(SourceArticle.model_validate({**data, "id": article_id}))
        except ValidationError as exc:
            failed.append(FailedArticle(id=article_id, status=422, message=first_error(exc)))
    return sources, failed


def briefing_from(
    sources: Sequence[SourceArticle],
    outcomes: Sequence[Any],
    *,
    threshold: float = MERGE_THRESHOLD,
    weight: float = EMBEDDING_WEIGHT,
) -> Briefing:
    """The briefing of articles whose pipeline outcomes (Result or error) are known."""
    ok: list[tuple[SourceArticle, Result]] = []
    failed: list[FailedArticle] = []
    for source, outcome in zip(sources, outcomes, strict=True):
        assert source.id is not None
        if isinstance(outcome, Result):
            ok.append((source, outcome.model_copy(update={"id": source.id})))
        else:
            error = outcome if isinstance(outcome, StandpointError) else None
            failed.append(
                FailedArticle(
                    id=source.id,
                    status=error.status_code if error else 500,
                    message=error.message if error else "the article could not be processed",
                )
            )
    results = [r for _, r in ok]
    nodes = collect_items(results)
    clusters, similarity = merge(nodes, threshold=threshold, weight=weight)
    items = [
        _item(nodes, members, similarity, [s for s, _ in ok]) for members in clusters if members
    ]
    items.sort(key=lambda it: (-len(it.carried_by), _first_position(it, [s for s, _ in ok])))
    for number, item in enumerate(items, 1):
        item.id = f"item-{number}"
    meta = results[0].meta if results else None
    return Briefing(
        articles=[
            BriefedArticle(
                id=str(s.id),
                outlet=s.outlet,
                title=s.title,
                text=r.text,
                items=len(r.demands) + len(r.positions),
            )
            for s, r in ok
        ],
        failed=failed,
        summary=combined_summary(results),
        items=items,
        meta=BriefingMeta(
            threshold=threshold,
            embedding_weight=weight,
            embedding_model=EMBEDDING_MODEL,
            summarizer=meta.summarizer if meta else None,
            extractor=meta.extractor if meta else None,
        ),
    )


def _first_position(item: BriefingItem, sources: Sequence[SourceArticle]) -> tuple[int, int]:
    order = {s.id: i for i, s in enumerate(sources)}
    first = item.sources[0]
    return order[first.article], first.start


def _item(
    nodes: Sequence[Node],
    members: list[int],
    similarity: np.ndarray,
    sources: Sequence[SourceArticle],
) -> BriefingItem:
    def centrality(i: int, among: list[int]) -> float:
        others = [j for j in among if j != i]
        return float(np.mean([similarity[i, j] for j in others])) if others else 0.0

    by_article: dict[int, list[int]] = {}
    for i in members:
        by_article.setdefault(nodes[i].article, []).append(i)
    per_source = []
    for article in sorted(by_article):
        mine = by_article[article]
        elsewhere = [j for j in members if nodes[j].article != article] or members
        primary = max(mine, key=lambda i: (centrality(i, elsewhere), -nodes[i].item.start))
        rest = sorted((i for i in mine if i != primary), key=lambda i: nodes[i].item.start)
        per_source.append(_source(nodes[primary], sources[article], rest=[nodes[i] for i in rest]))
    medoid = max(members, key=lambda i: (centrality(i, members), -i))
    people = [nodes[i].actor for i in members if nodes[i].actor.kind == "person"]
    actor = people[0] if people else nodes[medoid].actor
    carried = [s.article for s in per_source]
    positions = {s.article: s.stance for s in per_source if s.stance is not None}
    stances = set(positions.values())
    wordings = {plain_name(s.conditions) for s in per_source if s.conditions}
    return BriefingItem(
        id="",
        actor=actor.name if actor.kind != "name" else nodes[medoid].item.actor,
        kind="demand" if any(nodes[i].kind == "demand" for i in members) else "position",
        claim=nodes[medoid].claim,
        sources=per_source,
        carried_by=carried,
        missing_from=[str(s.id) for s in sources if s.id not in carried],
        single_source=len(carried) == 1,
        conflict=len(positions) > 1 and "oppose" in stances and bool(stances & _IN_FAVOUR),
        conditions_differ=len(per_source) > 1
        and (len(wordings) > 1 or (bool(wordings) and any(not s.conditions for s in per_source))),
    )


_IN_FAVOUR = {"support", "conditional"}


def _source(node: Node, article: SourceArticle, *, rest: list[Node]) -> BriefingSource:
    item = node.item
    demand = item if isinstance(item, Demand) else None
    return BriefingSource(
        article=str(article.id),
        outlet=article.outlet,
        title=article.title,
        kind="demand" if demand else "position",
        actor=item.actor,
        claim=node.claim,
        target=demand.target if demand else None,
        conditions=demand.conditions if demand else None,
        stance=None if demand else item.stance,  # type: ignore[union-attr]
        quote=item.quote,
        start=item.start,
        end=item.end,
        also=[Evidence(quote=n.item.quote, start=n.item.start, end=n.item.end) for n in rest],
    )


# The combined summary ---------------------------------------------------------------------------
def combined_summary(results: Sequence[Result]) -> list[SummarySentence]:
    """3-6 sentences from all articles by maximal marginal relevance: close to what the
    articles share (the mean of each article's mean embedding), far from those already chosen."""
    from service.embedding import embed

    candidates: list[tuple[int, int, int]] = []  # (article, start, end)
    for a, result in enumerate(results):
        sentences = split_sentences(result.text)
        injected = set(find_instructions(result.text, sentences))  # never news (service.checks)
        body = [s for s in sentences if not s.is_heading and s not in injected]
        for s in body[:SUMMARY_CANDIDATES]:
            if 6 <= len(s.text.split()) <= 80:
                candidates.append((a, s.start, s.end))
    if not candidates:
        return []
    texts = [results[a].text[start:end] for a, start, end in candidates]
    vectors = embed(texts, remember=False)
    owners = np.array([a for a, _, _ in candidates])
    centroids = [vectors[owners == a].mean(axis=0) for a in sorted(set(owners.tolist()))]
    centre = np.mean(centroids, axis=0)
    centre /= np.linalg.norm(centre) or 1.0
    relevance = vectors @ centre
    wanted = min(SUMMARY_MAX, max(SUMMARY_MIN, len(results) + 2), len(candidates))
    chosen: list[int] = []
    while len(chosen) < wanted:
        redundancy = (
            (vectors @ vectors[chosen].T).max(axis=1) if chosen else np.zeros(len(candidates))
        )
        score = MMR_LAMBDA * relevance - (1 - MMR_LAMBDA) * redundancy
        score[chosen] = -np.inf
        score[redundancy > NEAR_DUPLICATE] = -np.inf  # says nothing new
        best = int(np.argmax(score))
        if not np.isfinite(score[best]):
            break
        chosen.append(best)
    return [
        SummarySentence(
            article=str(results[candidates[i][0]].id),
            quote=texts[i],
            start=candidates[i][1],
            end=candidates[i][2],
        )
        for i in chosen
    ]


__all__ = ["Briefing", "brief", "briefing_from", "merge"]
