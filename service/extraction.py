"""Demands and positions, found deterministically in the article's own sentences.

Every field an item carries is a span of the cleaned text: the quote is the sentence (or its
quotation), the actor a name the article uses, the demand/issue and conditions clauses of
that sentence. Nothing here is generated, so nothing here can be invented. The model-based
extractors in ``pipeline.py`` reuse these candidates and only choose among options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from service.article import REPORTING_VERBS, Sentence
from service.grounding import COMMON_CAPITALISED
from service.schemas import Demand, Position, Stance

_REPORTING = REPORTING_VERBS
DEMAND_CUES = re.compile(
    r"\b(demand(?:s|ed|ing)?|insist(?:s|ed|ing)?|call(?:s|ed|ing)? for|call(?:s|ed)? on|"
    r"urg(?:e|es|ed|ing)|must|requir(?:e|es|ed|ing)|condition(?:s)?|ultimatum|"
    r"wants?|wanted|press(?:es|ed)? for)\b",
    re.IGNORECASE,
)
OPPOSE_CUES = re.compile(
    r"\b(pointless|ruled out|rule out|rules out|reject(?:s|ed|ing)?|oppos(?:e|es|ed|ing)|"
    r"refus(?:e|es|ed|ing)|won[’']t|will not|never|illegal|unacceptable|no trust|"
    r"lacks? legitimacy|fake|denied|denies|criticiz(?:e|es|ed)|criticis(?:e|es|ed)|"
    r"accus(?:e|es|ed))\b",
    re.IGNORECASE,
)
SUPPORT_CUES = re.compile(
    r"\b(ready|willing|welcom(?:e|es|ed)|support(?:s|ed)?|back(?:s|ed)|basis|agree(?:s|d)?|"
    r"progress|positive|hopeful|optimistic|praised?|constructive|taking into account|"
    r"open to|prepared to|commit(?:s|ted)? to)\b",
    re.IGNORECASE,
)
CONDITIONAL_CUES = re.compile(
    r"\b(if|unless|only (?:if|when|after)|provided(?: that)?|as long as|on condition|until|"
    r"before any|in exchange for)\b",
    re.IGNORECASE,
)
NEUTRAL_CUES = re.compile(
    r"(neither confirm(?:s|ed)? nor den(?:y|ies|ied)|declined to comment|no comment|"
    r"would not (?:say|comment))",
    re.IGNORECASE,
)
_CONDITION_SPAN = re.compile(
    r"\b(?:only if|if|unless|provided that|as long as|until|before any|before|"
    r"in exchange for|on condition that)\b[^.;:!?,”\"]*",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"“([^”]+)”|\"([^\"]+)\"")
# Capitalised name sequences, allowing "U.S.", "Zelenskyy", "Al Jazeera", "Abu Dhabi".
_NAME = re.compile(
    r"(?:[A-Z][\w’'.-]*[\w.]|U\.S\.|U\.N\.)(?:\s+(?:of\s+|the\s+)?(?:[A-Z][\w’'.-]*[\w.]))*"
)
_TITLE_WORDS = {
    "president",
    "minister",
    "secretary",
    "spokesperson",
    "spokesman",
    "spokeswoman",
    "envoy",
    "aide",
    "chancellor",
    "prime",
    "foreign",
    "defence",
    "defense",
    "chief",
    "leader",
    "ambassador",
    "adviser",
    "advisor",
    "general",
    "head",
    "official",
    "negotiator",
    "russian",
    "ukrainian",
    "american",
    "u.s.",
    "kremlin",
    "top",
    "special",
    "deputy",
    "senior",
    "state",
    "former",
    "mr.",
    "mrs.",
    "ms.",
    "dr.",
}
# Capitalised words that never name an actor: sentence openers, days, months, demonyms.
_NOT_ACTORS = COMMON_CAPITALISED | {
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "actually",
    "maybe",
    "only",
    "comments",
    "russian",
    "ukrainian",
    "american",
    "european",
    "though",
    "although",
    "because",
    "asked",
    "reuters",
    "kremlin",
    "world",
    "air",
}
_PRONOUNS = re.compile(r"^(?:He|She|They)\b|\b(?:he|she) (?:" + _REPORTING + r")\b")


@dataclass
class Candidate:
    """A sentence that may state a demand or position, with what the rules found in it."""

    sentence: Sentence
    actor: str | None
    names: list[str]
    kind: str  # "demand", "position" or "none"
    stance: Stance


@dataclass
class ActorIndex:
    """The people and bodies an article names, with the titles it introduces them by."""

    full_names: dict[str, str] = field(default_factory=dict)  # surname -> full name
    titles: dict[str, str] = field(default_factory=dict)  # full name -> title words

    def canonical(self, name: str) -> str:
        name = re.sub(r"[’']s$", "", name.strip())
        last = name.split()[-1] if name.split() else name
        if len(name.split()) == 1 and last in self.full_names:
            return self.full_names[last]
        return name

    def by_description(self, description: str, last_speaker: str | None = None) -> str | None:
        """The person a description such as "the Russian president" refers to: the last
        speaker if it fits, else the first person introduced with that title."""
        words = [w for w in description.lower().split() if w not in {"the", "a", "an"}]
        if not words or not all(w in _TITLE_WORDS for w in words):
            return None
        fits = [p for p, title in self.titles.items() if all(w in title.split() for w in words)]
        if last_speaker in fits:
            return last_speaker
        return fits[0] if fits else None


def index_actors(text: str) -> ActorIndex:
    index = ActorIndex()
    for piece in re.split(r"(?<=[.!?”])\s+|\n", text):
        for match in _NAME.finditer(piece):
            words = [re.sub(r"[’']s$", "", w) for w in match.group().split()]
            if words and words[-1].endswith(".") and words[-1].count(".") == 1:
                words[-1] = words[-1][:-1]
            lead = []
            while words and words[0].lower().strip(".") in _TITLE_WORDS | {"u.s", "kremlin"}:
                lead.append(words.pop(0))
            if len(words) < 2 or words[0].lower() in _NOT_ACTORS:
                continue
            full = " ".join(words)
            index.full_names.setdefault(words[-1], full)
            before: list[str] = []
            for word in reversed(piece[: match.start()].split()):
                if word.lower() not in _TITLE_WORDS:
                    break
                before.insert(0, word)
            title = " ".join([*before, *lead]).lower()
            if title:
                index.titles.setdefault(full, title)
    return index


def names_in(text: str, index: ActorIndex) -> list[str]:
    found = []
    for match in _NAME.finditer(text):
        words = [w for w in match.group().split() if w.lower().strip(".") not in _TITLE_WORDS]
        while words and words[0].lower() in _NOT_ACTORS:
            words.pop(0)
        if not words:
            continue
        name = index.canonical(" ".join(words).rstrip("."))
        if name.lower() not in _NOT_ACTORS and name not in found:
            found.append(name)
    return found


def attribute(sentence: str, index: ActorIndex, last_speaker: str | None) -> str | None:
    """Who speaks in a sentence: named after a closing quote, as the subject of a reporting
    verb, by the title the article introduced them with, or the last speaker for pronouns."""
    reporting = rf"(?:{_REPORTING})"
    after_quote = re.search(
        rf"[”\"],?\s+(?:(?:{reporting})\s+)?([A-Z][^,.;”]*?)\s+(?:{reporting})\b", sentence
    )
    if after_quote:
        return _resolve(after_quote.group(1), index, last_speaker)
    said_name = re.search(
        rf"[”\"],?\s+(?:{reporting})\s+([A-Z][\w’'.-]+(?:\s+[A-Z][\w’'.-]+)*)", sentence
    )
    if said_name:
        return _resolve(said_name.group(1), index, last_speaker)
    subject = re.search(
        rf"^(?:[^“\"]*?\b)?((?:[Tt]he\s+)?[A-Z][\w’'.-]*(?:\s+[\w’'.-]+){{0,6}}?)\s+"
        rf"(?:also\s+|on \w+\s+|has\s+|had\s+|again\s+)?(?:{reporting})\b",
        sentence,
    )
    if subject:
        resolved = _resolve(subject.group(1), index, last_speaker)
        if resolved:
            return resolved
    if _PRONOUNS.search(sentence) or sentence.lstrip().startswith(("“", '"')):
        return last_speaker
    return _subject(sentence, index, last_speaker)


def _subject(sentence: str, index: ActorIndex, last_speaker: str | None) -> str | None:
    """The first name, or titled description, before the sentence's first cue verb."""
    cue = re.search(
        rf"\b(?:{_REPORTING}|wants?|refused|drove|set out|restated|underscored|accused)\b",
        sentence,
    )
    if not cue:
        return None
    head = sentence[: cue.start()]
    head = re.sub(
        r"^[A-Z]{2,}[^-–—]*?\)\s*[-–—]\s*", "", head
    )  # dateline "MOSCOW, Feb 10 (Reuters) -"
    names = names_in(head, index)
    if names:
        return names[0]
    title = re.search(
        r"(?:[Tt]he\s+)?((?:[\w.’']+\s+){0,3}(?:"
        + "|".join(sorted(w for w in _TITLE_WORDS if w.isalpha()))
        + r"))\b",
        head,
        re.IGNORECASE,
    )
    if title:
        return index.by_description(
            title.group(1).replace("’s", "").replace("'s", ""), last_speaker
        )
    return None


def _resolve(phrase: str, index: ActorIndex, last_speaker: str | None) -> str | None:
    phrase = phrase.strip()
    if phrase in {"He", "She", "he", "she"}:
        return last_speaker
    names = names_in(phrase, index)
    if names:
        return names[-1]
    described = index.by_description(phrase, last_speaker)
    if described:
        return described
    return None


def classify(text: str) -> tuple[str, Stance]:
    """Rule-based type and stance of a candidate sentence."""
    if NEUTRAL_CUES.search(text):
        return "position", "neutral"
    demand = DEMAND_CUES.search(text)
    oppose = OPPOSE_CUES.search(text)
    support = SUPPORT_CUES.search(text)
    conditional = CONDITIONAL_CUES.search(text)
    if demand:
        return "demand", "conditional" if conditional else "support"
    if conditional:
        return "position", "conditional"
    if oppose:
        return "position", "oppose"
    if support:
        return "position", "support"
    return "none", "neutral"


def is_candidate(sentence: Sentence) -> bool:
    if sentence.is_heading or len(sentence.text.split()) < 5:
        return False
    text = sentence.text
    return bool(
        _QUOTED.search(text)
        or re.search(rf"\b(?:{_REPORTING})\b", text)
        or DEMAND_CUES.search(text)
        or OPPOSE_CUES.search(text)
        or NEUTRAL_CUES.search(text)
    )


def find_candidates(text: str, sentences: list[Sentence]) -> list[Candidate]:
    index = index_actors(text)
    candidates = []
    last_speaker: str | None = None
    for sentence in sentences:
        if sentence.is_heading:
            continue
        actor = attribute(sentence.text, index, last_speaker)
        if actor:
            last_speaker = actor
        if not is_candidate(sentence):
            continue
        kind, stance = classify(sentence.text)
        names = names_in(sentence.text, index)
        candidates.append(Candidate(sentence, actor, names, kind, stance))
    return candidates


def _body(sentence: str) -> str:
    """The sentence without its attribution ("..., Putin said.")."""
    quoted = [a or b for a, b in _QUOTED.findall(sentence)]
    if quoted and sum(len(q) for q in quoted) > 0.5 * len(sentence):
        return " ".join(q.strip(" ,") for q in quoted)
    cue = re.search(rf"\b(?:{_REPORTING}|repeated|insisted)\b(?:\s+(?:that|for|on))?\s+", sentence)
    if cue and cue.end() < len(sentence) - 10:
        return sentence[cue.end() :].rstrip(" .")
    return sentence.rstrip(" .")


def demand_fields(candidate: Candidate) -> dict[str, str | None]:
    text = candidate.sentence.text
    body = _body(text)
    condition = _CONDITION_SPAN.search(text)
    others = [
        n for n in candidate.names if n != candidate.actor and n not in (candidate.actor or "")
    ]
    return {
        "demand": body,
        "target": others[0] if others else None,
        "conditions": condition.group().strip() if condition else None,
    }


def to_items(candidates: list[Candidate], text: str) -> tuple[list[Demand], list[Position], int]:
    """Items from classified candidates; those with no actor are dropped and counted."""
    demands, positions, unattributed = [], [], 0
    for c in candidates:
        if c.kind == "none":
            continue
        if not c.actor:
            unattributed += 1
            continue
        s = c.sentence
        evidence: dict[str, Any] = {"quote": text[s.start : s.end], "start": s.start, "end": s.end}
        if c.kind == "demand":
            fields = demand_fields(c)
            demands.append(
                Demand(
                    actor=c.actor,
                    demand=fields["demand"] or s.text,
                    target=fields["target"],
                    conditions=fields["conditions"],
                    **evidence,
                )
            )
        else:
            positions.append(
                Position(
                    actor=c.actor,
                    issue=_body(s.text),
                    stance=c.stance,
                    **evidence,
                )
            )
    return demands, positions, unattributed
