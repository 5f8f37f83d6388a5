"""What the learned stages read and how they turn head scores into items and summaries.

Features: one forward pass of the local model per article, each sentence's token states at the
heads' layer pooled into one vector (``LocalModel.sentence_features``), plus ``cue_features``;
kept on the article's ``Work`` so the learned summarizer and extractor of one call share one
pass. Actors: every name or group the article uses in or just before an item
sentence is a candidate (``actor_candidates``); the actor head scores each one from
``candidate_features``. Every output field is an article sentence, a name the article uses, or
a clause of the sentence: nothing is generated.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.article import Sentence
from service.extraction import ActorIndex, attribute, demand_fields, names_in
from service.extraction import _body as sentence_body
from service.grounding import fold
from service.heads import STANCES, Heads, cue_features
from service.schemas import Demand, Position, Stance
from service.stages import LocalReader, Work

GROUP_NOUNS = re.compile(
    r"\b(?:the\s+)?(?:[A-Z][\w.&'-]*\s+){0,3}"
    r"(?:unions?|protesters|demonstrators|campaigners|activists|government|administration|"
    r"company|board|court|judge|ministry|commission|council|police|opposition|party|workers|"
    r"employees|strikers|residents|critics|officials|regulators?|prosecutors|lawyers|"
    r"shareholders|investors|lawmakers|senators|ministers|leaders|members|rebels|militants|"
    r"group|coalition|alliance|federation|association|committee|authorities|spokesman|"
    r"spokeswoman|spokesperson)\b",
)
_REPORTING_AFTER = re.compile(
    r"^\W{0,3}(?:\w+\W+){0,2}?(?:said|says|told|added|warned|urged|insisted|demanded|argued|"
    r"claimed|called|asked|announced|rejected|accused|stressed|wrote|noted|vowed|threatened)\b",
    re.IGNORECASE,
)
_SAID_BEFORE = re.compile(r"[”\"],?\s+(?:said|says|added|told|wrote)\s+$", re.IGNORECASE)
CANDIDATE_FEATURES = 12


def article_features(local: LocalReader, works: list[Work], heads: Heads) -> list[np.ndarray]:
    """Pooled model features ``[n_sentences, hidden]`` per article: read by one pass of the
    model per article that does not carry them yet, and kept on its ``Work`` (so the learned
    summarizer and extractor of one call share the pass)."""
    key = (heads.model_id, heads.layer, heads.pooling)
    todo = [w for w in works if key not in w.features]
    if todo:
        pooled = local.sentence_features(
            [w.news_text for w in todo],
            [[(s.start, s.end) for s in w.sentences] for w in todo],
            layers=[heads.layer],
        )
        which = 0 if heads.pooling == "mean" else 1
        for w, array in zip(todo, pooled, strict=True):
            w.features[key] = array[0, :, which]
    return [w.features[key] for w in works]


def sentence_matrix(hidden: np.ndarray, sentences: list[Sentence]) -> np.ndarray:
    """The heads' input rows for one article: model features followed by cue features."""
    if not sentences:
        return np.zeros((0, hidden.shape[1] + 14), dtype=np.float32)
    cues = np.stack([cue_features(s, i, len(sentences)) for i, s in enumerate(sentences)])
    return np.concatenate([hidden, cues], axis=1).astype(np.float32)


@dataclass
class Speakers:
    """Who the rules attribute each sentence to, and the last speaker before it."""

    index: ActorIndex
    attributed: list[str | None]
    last: list[str | None]
    _folded: str | None = field(default=None, repr=False)
    _mentions: dict[str, int] = field(default_factory=dict, repr=False)

    def mentions(self, needle: str, text: str) -> int:
        """How often ``text`` (the article these speakers are of) holds ``needle``, folded
        and lower case: the article read once, each name counted once (per candidate, it
        was quadratic in an article of many item sentences)."""
        if self._folded is None:
            self._folded = fold(text).lower()
        if needle not in self._mentions:
            self._mentions[needle] = self._folded.count(needle)
        return self._mentions[needle]


def speakers(sentences: list[Sentence], index: ActorIndex) -> Speakers:
    attributed: list[str | None] = []
    last: list[str | None] = []
    previous: str | None = None
    for s in sentences:
        last.append(previous)
        actor = None if s.is_heading else attribute(s.text, index, previous)
        attributed.append(actor)
        if actor:
            previous = actor
    return Speakers(index=index, attributed=attributed, last=last)


def actor_candidates(sentences: list[Sentence], j: int, who: Speakers) -> list[str]:
    """Names and groups the article uses in sentence ``j`` or the two before it, plus the
    speaker the rules attribute it to: the actor head chooses among these."""
    found: list[str] = []
    for k in (j, j - 1, j - 2):
        if k < 0:
            continue
        found += names_in(sentences[k].text, who.index)
        found += [m.group().strip() for m in GROUP_NOUNS.finditer(sentences[k].text)]
    for extra in (who.attributed[j], who.last[j]):
        if extra:
            found.append(extra)
    seen: dict[str, str] = {}
    for name in found:
        key = " ".join(fold(name).lower().split())
        if key and key not in seen:
            seen[key] = name
    return list(seen.values())


def candidate_features(
    name: str, sentences: list[Sentence], j: int, who: Speakers, text: str
) -> np.ndarray:
    sentence = sentences[j].text
    lowered = fold(sentence).lower()
    needle = fold(name).lower()

    def mentioned(k: int) -> float:
        return 1.0 if k >= 0 and needle in fold(sentences[k].text).lower() else 0.0

    at = lowered.find(needle)
    after = sentence[at + len(name) :] if at >= 0 else ""
    before = sentence[:at] if at >= 0 else ""
    first_names = names_in(sentence, who.index)
    return np.array(
        [
            mentioned(j),
            mentioned(j - 1),
            mentioned(j - 2),
            1.0 if who.attributed[j] == name else 0.0,
            1.0 if who.last[j] == name else 0.0,
            at / max(1, len(sentence)) if at >= 0 else 1.0,
            1.0 if at >= 0 and _REPORTING_AFTER.search(after) else 0.0,
            1.0 if at >= 0 and _SAID_BEFORE.search(before) else 0.0,
            1.0 if len(name.split()) > 1 and name[:1].isupper() else 0.0,
            math.log1p(who.mentions(needle, text)),
            1.0 if GROUP_NOUNS.fullmatch(name) else 0.0,
            1.0 if first_names and first_names[0] == name else 0.0,
        ],
        dtype=np.float32,
    )


def choose_actor(
    heads: Heads, sentences: list[Sentence], j: int, who: Speakers, text: str
) -> str | None:
    names = actor_candidates(sentences, j, who)
    if not names:
        return None
    rows = np.stack([candidate_features(n, sentences, j, who, text) for n in names])
    scores = heads.heads["actor"].proba(rows)[:, 1]
    best = int(np.argmax(scores))
    return names[best] if scores[best] >= heads.thresholds.get("actor", 0.0) else None


def items_for(
    heads: Heads, text: str, sentences: list[Sentence], x: np.ndarray, index: ActorIndex
) -> tuple[list[Demand], list[Position], int]:
    """Demands and positions of one article from its sentence rows; the count of item
    sentences dropped because no actor could be chosen."""
    demands: list[Demand] = []
    positions: list[Position] = []
    if len(sentences) == 0:
        return demands, positions, 0
    p_demand = heads.heads["demand"].proba(x)[:, 1]
    p_position = heads.heads["position"].proba(x)[:, 1]
    stance = heads.heads["stance"].proba(x)
    who = speakers(sentences, index)
    unattributed = 0
    for j, s in enumerate(sentences):
        is_demand = p_demand[j] >= heads.thresholds["demand"]
        is_position = p_position[j] >= heads.thresholds["position"]
        if s.is_heading or not (is_demand or is_position):
            continue
        actor = choose_actor(heads, sentences, j, who, text)
        if actor is None:
            unattributed += 1
            continue
        evidence: dict[str, Any] = {"quote": text[s.start : s.end], "start": s.start, "end": s.end}
        body = sentence_body(s.text)
        if is_demand:
            view = _RuleView(s, actor, names_in(s.text, who.index))
            fields = demand_fields(view)  # type: ignore[arg-type]
            demands.append(
                Demand(
                    actor=actor,
                    demand=body,
                    target=fields["target"],
                    conditions=fields["conditions"],
                    **evidence,
                )
            )
        if is_position:
            label: Stance = STANCES[int(np.argmax(stance[j]))]  # type: ignore[assignment]
            positions.append(Position(actor=actor, issue=body, stance=label, **evidence))
    return demands, positions, unattributed


@dataclass
class _RuleView:
    """What ``demand_fields`` reads of a rule candidate."""

    sentence: Sentence
    actor: str | None
    names: list[str]


def salience(heads: Heads, x: np.ndarray) -> np.ndarray:
    return heads.heads["salience"].proba(x)[:, 1] if len(x) else np.zeros(0)
