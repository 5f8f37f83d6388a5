"""Demands and positions, found deterministically in the article's own sentences.

Every field an item carries is a span of the cleaned text: the quote is the sentence (or its
quotation), the actor a name the article uses, the demand/issue and conditions clauses of
that sentence. Nothing here is generated, so nothing here can be invented. The model-based
extractors in ``pipeline.py`` reuse these candidates and only choose among options.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from service.article import Sentence, quotations
from service.lexicon import (
    ALLEGING_VERBS,
    CALENDAR_WORDS,
    CLAIM_CARRIERS,
    CLAIM_VERBS,
    CONDITION_PHRASES,
    CONDITIONAL_CUES,
    DEMAND_CUES,
    DENIALS,
    FALSITY_ADVERBS,
    FALSITY_NOUNS,
    FALSITY_WORDS,
    HEDGES,
    HONORIFICS,
    NEGATIONS,
    NEUTRAL_CUES,
    NEWS_AGENCIES,
    NOT_ACTORS,
    NOT_NAMES,
    OPPOSE_CUES,
    PROVEN_FALSE,
    REPORTING_VERBS,
    ROLE_WORDS,
    SPEECH_VERBS,
    STANCE_VERBS,
    SUPPORT_CUES,
    TITLE_WORDS,
    alternation,
)
from service.schemas import Demand, Position, Stance

_REPORTING = alternation(REPORTING_VERBS)
_SPEECH = alternation(SPEECH_VERBS)
# A speech or stance verb: where a sentence's subject ends.
_SUBJECT_END = re.compile(rf"\b(?:{alternation(SPEECH_VERBS | STANCE_VERBS)})\b")
_CONDITION_SPAN = re.compile(
    rf"\b(?:{alternation(CONDITION_PHRASES)})\b[^.;:!?,”\"]*", re.IGNORECASE
)
# Capitalised name sequences, allowing "U.S.", "Zelenskyy", "Al Jazeera", "Abu Dhabi".
_NAME = re.compile(
    r"(?:[A-Z][\w’'.-]*[\w.]|U\.S\.|U\.N\.)(?:\s+(?:of\s+|the\s+)?(?:[A-Z][\w’'.-]*[\w.]))*"
)
_PRONOUNS = re.compile(rf"^(?:He|She|They)\b|\b(?:he|she) (?:{_REPORTING})\b")
# Words before a name that are not part of it: sentence openers, days and months, a
# verb opening a sentence ("Asked about ...").
_LEADING = NOT_NAMES | CALENDAR_WORDS | SPEECH_VERBS
# Who is named right after a quotation: "“...,” said Jane Roe, ..." (the tail after the
# verb), or "“...,” the foreign minister said" (up to six words before the verb).
_SAID_AFTER_QUOTE = re.compile(
    rf"[”\"],?\s+(?:{_REPORTING})\s+(?P<tail>(?:(?:the|a|an|one)\s|[A-Z])[^“\"]*)"
)
_SPEAKER_AFTER_QUOTE = re.compile(
    r"[”\"],?\s+(?P<phrase>(?:(?:[Tt]he|[Aa]n?|[Hh]e|[Ss]he)\b|[A-Z])[\w’'.-]*"
    rf"(?:\s+[\w’'.-]+){{0,5}}?)\s+(?:also\s+)?(?:{_REPORTING})\b"
)
# The subject of a reporting verb: up to seven words before it ("The European Commission
# on Monday said", "Washington has repeatedly demanded").
_SUBJECT_BEFORE_VERB = re.compile(
    rf"^(?:[^“\"]*?\b)?(?P<phrase>(?:[Tt]he\s+)?[A-Z][\w’'.-]*(?:\s+[\w’'.-]+){{0,6}}?)\s+"
    rf"(?:also\s+|on \w+\s+|has\s+|had\s+|again\s+)?(?:{_REPORTING})\b"
)
_ACCORDING_TO = re.compile(r"\b[Aa]ccording to\s+(?P<source>[^,;“”\"]+)")
_APPOSITIVE = re.compile(r"^,\s+(?:the|a|an)\s+(?P<title>[^,]+),")
_POSSESSIVE = re.compile(r"[’']s$")
_CLAUSE_END = re.compile(r"[^\w’'.]$")  # "Moscow," or "(Reuters)" before a title ends it
_DATELINE = re.compile(r"^[A-Z]{2,}[^-–—]*?\)\s*[-–—]\s*")  # "MOSCOW, Feb 10 (Reuters) -"

# Claims the article does not stand behind (``disputed_claims``), by where the claim is:
# after the marker ("falsely claimed that ...", "a doctored video shows ...", "police alleged
# that ..."), the subject before it ("X allegedly demanded ...", "The claim that X demanded
# ... was false"), or the clause a subject denies ("X denied demanding ...", "X never called
# for ...").
_ACTS = (
    r"(?:demand\w*|call\w*\s+for|ask\w*\s+for|urg\w*|insist\w*|request\w*|seek\w*|sought|"
    r"propos\w*|order\w*|threat\w*|making|made|say\w*|said|want\w*)"
)
_PRONOUN = r"(?:he|she|they|it|we|i)\b"
_CLAIM_FOLLOWS = re.compile(
    rf"\b(?:{alternation(FALSITY_ADVERBS)})\s+(?:\w+\s+)?(?:{alternation(CLAIM_VERBS)})\b"
    rf"(?:\s+that\b)?"
    rf"|\b(?:{alternation(FALSITY_WORDS)})\s+(?:[\w-]+\s+){{0,2}}?"
    rf"(?:{alternation(CLAIM_CARRIERS)})\b"
    rf"|\b(?:{alternation(FALSITY_NOUNS)})\s+(?=(?:that|claiming|saying|suggesting|alleging|"
    rf"purporting|showing|in which)\b)"
    rf"|\b(?:{alternation(ALLEGING_VERBS)})\s+that\b"
    rf"|(?<!\bbe )(?<!\bbeen )(?<!\bis )(?<!\bare )(?<!\bwas )(?<!\bwere )"
    rf"\b(?:{alternation(DENIALS)})\s+(?:(?:claims?|reports?|suggestions?)\s+)?that\s+"
    rf"(?!{_PRONOUN})",
    re.IGNORECASE,
)
_CLAIM_DENIED = re.compile(
    rf"\b(?:{alternation(DENIALS)})\s+(?:(?:ever|having|any|that|{_PRONOUN}|had|has)\s+)*"
    rf"{_ACTS}"
    rf"|\b(?:{alternation(NEGATIONS)})\s+(?:ever\s+|once\s+|actually\s+)?"
    r"(?:demand\w*|call\w*\s+for|ask\w*\s+for|urg\w*|insist\w*|request\w*)",
    re.IGNORECASE,
)
_CLAIM_BEFORE = re.compile(
    rf"\b(?:{alternation(HEDGES)})\b"
    r"|\b(?:was|were|is|are|has been|have been|had been|turned out to be|proved|proven|"
    r"proved to be)\s+(?:later\s+|quickly\s+|since\s+|widely\s+|entirely\s+|completely\s+)?"
    rf"(?:{alternation(PROVEN_FALSE)})\b",
    re.IGNORECASE,
)
# "... accountable for allegedly stifling voices": a hedge right after a preposition qualifies
# a gerund whose subject the clause before it does not name.
_AFTER_PREPOSITION = re.compile(
    r"\b(?:for|of|with|over|about|after|from|in|on|against|without)\s+$", re.IGNORECASE
)
# "... have been discredited by the US authorities": the agent debunks the claim.
_DEBUNKED_BY = re.compile(
    r"\b(?:discredited|debunked|denied|dismissed|rejected|refuted|disproved|disputed|"
    r"contradicted|exposed|investigated|thrown out)\s+by\b",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(
    r";|,\s+(?:but|while|whereas|although|nor)\b|\s[–—]\s|--|\s(?:even though|though)\b"
)
# Where the part of a clause that a claim is about begins: after its last "that", verb of
# saying or subordinating word ("A source said the case ... had been fabricated": the case,
# not the source; "... in Tomsk, where he was allegedly poisoned": he).
_CLAUSE_OPENER = re.compile(
    r"\b(?:that|said|says|told|reported|stated|added|wrote|announced|confirmed|argued|noted|"
    r"when|where|after|as|because|since|while|who|which|whom|whose|if|though|although|until|"
    r"before)\b",
    re.IGNORECASE,
)
_TRAILING_SOURCE = re.compile(
    rf",[”\"’']?\s+(?:[\w'’.-]+\s+){{0,6}}?(?:{_REPORTING})\b[^,;]*[.!?”\"]*$"
)


@dataclass(frozen=True)
class Claim:
    """A claim the article reports without standing behind it (false, fabricated, denied,
    alleged by others): the sentence that holds it, and the span that names whom the claim is
    about. ``denied``: the one named denies it (their own denial is a position they hold)."""

    sentence_start: int
    sentence_end: int
    start: int
    end: int
    denied: bool = False


@dataclass
class Candidate:
    """A sentence that may state a demand or position, with what the rules found in it."""

    sentence: Sentence
    actor: str | None
    names: list[str]
    kind: str  # "demand", "position" or "none"
    stance: Stance


def _bare(word: str) -> str:
    """A word as the word lists hold it: lower case, without possessive or full stop."""
    return _POSSESSIVE.sub("", word.strip(".,;:")).lower()


def _split_title(words: list[str]) -> tuple[list[str], list[str]]:
    """A capitalised sequence as (title, name): "Russian President Vladimir Putin" gives
    (["Russian", "President"], ["Vladimir", "Putin"]), "Ukraine's Zelenskyy" gives
    (["Ukraine's"], ["Zelenskyy"]). The title runs to the last title word, or owner, that
    leaves a name after it; a title holds a role word or an honorific."""
    for i in range(len(words) - 2, -1, -1):
        if _POSSESSIVE.search(words[i]):
            return words[: i + 1], words[i + 1 :]
        if _bare(words[i]) in TITLE_WORDS:
            if any(_bare(w) in ROLE_WORDS | HONORIFICS for w in words[: i + 1]):
                return words[: i + 1], words[i + 1 :]
            break
    return [], words


def _title_at_end(words: list[str]) -> list[str]:
    """The words that end ``words`` and make a title: role words, the words that qualify
    them, and the body or country they belong to ("former Russian President", "top Kremlin
    aide", "the European Union's trade chief"). Empty unless the last word is a title word
    and a role word is among them."""
    start = len(words)
    while start > 0:
        word, bare = words[start - 1], _bare(words[start - 1])
        is_title = bare in TITLE_WORDS
        is_name = word[0].isupper() and bare not in _LEADING and not is_title
        if start == len(words):
            fits = is_title
        elif any(_POSSESSIVE.search(w) for w in words[start:]):
            fits = is_name  # before an owner ("Union's"), only the rest of its name
        else:
            fits = is_title or is_name or bool(_POSSESSIVE.search(word))
        if not fits or _CLAUSE_END.search(word):
            break
        start -= 1
    title = words[start:]
    return title if any(_bare(w) in ROLE_WORDS for w in title) else []


def _title_at_start(words: list[str]) -> list[str]:
    """The description a phrase opens with, after an article: "the French leader" in "The
    French leader made ...". Empty if a name follows it ("President Donald Trump"), since
    then it is that name's title."""
    start = 1 if words and words[0].lower() in {"the", "a", "an"} else 0
    for end in range(start + 1, min(len(words), start + 5) + 1):
        if _bare(words[end - 1]) in ROLE_WORDS:
            if end < len(words) and words[end][:1].isupper():
                return []
            title = _title_at_end(words[:end])
            return title if len(title) == end - start else []
    return []


@dataclass
class ActorIndex:
    """The people and bodies an article names, with the titles it introduces them by."""

    full_names: dict[str, str] = field(default_factory=dict)  # surname -> full name
    titles: dict[str, list[str]] = field(default_factory=dict)  # full name -> title words

    def canonical(self, name: str) -> str:
        name = _POSSESSIVE.sub("", name.strip())
        last = name.split()[-1] if name.split() else name
        if len(name.split()) == 1 and last in self.full_names:
            return self.full_names[last]
        return name

    def by_description(self, words: list[str], last_speaker: str | None = None) -> str | None:
        """The person a description such as "the Russian president" refers to: one whose
        title holds all its words, at least one of them a role word; the last speaker if
        they fit, else the first person introduced with such a title."""
        if not any(w in ROLE_WORDS for w in words):
            return None
        fits = [p for p, title in self.titles.items() if set(words) <= set(title)]
        if last_speaker in fits:
            return last_speaker
        return fits[0] if fits else None


def index_actors(text: str) -> ActorIndex:
    """Full names by surname, and the title each person is introduced with: before the
    name ("Kremlin spokesman Dmitry Peskov") or in an appositive ("Jane Roe, the union's
    general secretary,")."""
    index = ActorIndex()
    for piece in re.split(r"(?<=[.!?”])\s+|\n", text):
        for match in _NAME.finditer(piece):
            lead, words = _split_title(match.group().split())
            words = [_POSSESSIVE.sub("", w) for w in words]
            if words and words[-1].endswith(".") and words[-1].count(".") == 1:
                words[-1] = words[-1][:-1]
            if len(words) < 2 or _bare(words[0]) in NOT_ACTORS:
                continue
            full = " ".join(words)
            index.full_names.setdefault(words[-1], full)
            title = _title_at_end([*piece[: match.start()].split(), *lead])
            appositive = _APPOSITIVE.match(piece[match.end() :])
            if not title and appositive:
                title = _title_at_end(appositive.group("title").split())
            if title:
                index.titles.setdefault(full, [_bare(w) for w in title])
    return index


def names_in(text: str, index: ActorIndex) -> list[str]:
    """The actor names in ``text``, titles removed, surnames expanded to full names.

    Demonyms, news agencies and days name no actor on their own, but a demonym can start a
    name ("European Commission")."""
    found = []
    for match in _NAME.finditer(text):
        _, words = _split_title(match.group().split())
        while words and _bare(words[0]) in _LEADING:
            words.pop(0)
        while words and _bare(words[-1]) in TITLE_WORDS:
            words.pop()
        if not words or all(_bare(w) in NOT_ACTORS for w in words):
            continue
        if _bare(words[0]) in NEWS_AGENCIES or _bare(" ".join(words)) in NEWS_AGENCIES:
            continue
        name = index.canonical(" ".join(words).rstrip("."))
        if name not in found:
            found.append(name)
    return found


def attribute(sentence: str, index: ActorIndex, last_speaker: str | None) -> str | None:
    """Who speaks in a sentence.

    In order: the speaker named right after a quotation ("“...,” said Jane Roe", "“...,”
    the minister said"; no one for "“...,” said one delegate"); the subject of a reporting
    verb; the last speaker, for a pronoun or a sentence that opens with a quotation; the
    source after "according to"; the subject before the sentence's first speech or stance
    verb. A description ("the Kremlin spokesman") is the person introduced with a title
    holding all its words.
    """
    said = _SAID_AFTER_QUOTE.search(sentence)
    if said:
        return _resolve(said.group("tail"), index, last_speaker, first=True)
    speaker = _SPEAKER_AFTER_QUOTE.search(sentence)
    if speaker:
        return _resolve(speaker.group("phrase"), index, last_speaker)
    subject = _SUBJECT_BEFORE_VERB.search(sentence)
    if subject:
        resolved = _resolve(subject.group("phrase"), index, last_speaker)
        if resolved:
            return resolved
    if _PRONOUNS.search(sentence) or sentence.lstrip().startswith(("“", '"')):
        return last_speaker
    according = _ACCORDING_TO.search(sentence)
    if according:
        return _resolve(according.group("source"), index, last_speaker, first=True)
    return _subject(sentence, index, last_speaker)


def _subject(sentence: str, index: ActorIndex, last_speaker: str | None) -> str | None:
    """The subject before the sentence's first speech or stance verb, or refusal to
    comment: the description the sentence opens with, else its first name ("Transport
    Secretary Ian Wood refused ...", "Carla Mendes, ..., would neither confirm nor deny")."""
    ends = [m.start() for m in (_SUBJECT_END.search(sentence), NEUTRAL_CUES.search(sentence)) if m]
    if not ends:
        return None
    head = _DATELINE.sub("", sentence[: min(ends)])
    return _resolve(head, index, last_speaker, first=True)


def _resolve(
    phrase: str, index: ActorIndex, last_speaker: str | None, *, first: bool = False
) -> str | None:
    """The actor a phrase names: the last speaker for "he" or "she"; for a description,
    the person introduced with that title, else a body named in it ("the Kremlin
    spokesman": the Kremlin); else a name in it. A phrase before a verb ends with its
    subject (the last name); with ``first``, a phrase starts with it (the first name)."""
    words = phrase.strip(" ,;:").split()
    if [w.lower() for w in words] in (["he"], ["she"]):
        return last_speaker
    description = _title_at_start(words) if first else _title_at_end(words)
    if description:
        person = index.by_description([_bare(w) for w in description], last_speaker)
        if person:
            return person
        words = description
    names = names_in(" ".join(words), index)
    if not names:
        return None
    return names[0] if first else names[-1]


def opening_person(sentence: str, index: ActorIndex) -> str | None:
    """The person a sentence opens with ("Health Secretary Laura Finch faced ..."), when
    the article names them in full: whom a following "he" or "she" most likely means."""
    opening = _NAME.match(sentence)
    names = names_in(opening.group(), index) if opening else []
    return names[0] if names and names[0] in index.full_names.values() else None


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
        quotations(text, empty=False)
        or re.search(rf"\b(?:{_SPEECH})\b", text)
        or DEMAND_CUES.search(text)
        or OPPOSE_CUES.search(text)
        or NEUTRAL_CUES.search(text)
    )


def attributions(
    sentences: list[Sentence], index: ActorIndex
) -> Iterator[tuple[Sentence, str | None]]:
    """Each body sentence with the speaker it is attributed to: named after a closing quote,
    the subject of a reporting verb, a title the article introduced, "he"/"she" for the last
    speaker; None where no one is."""
    last_speaker: str | None = None
    for sentence in sentences:
        if sentence.is_heading:
            continue
        actor = attribute(sentence.text, index, last_speaker)
        last_speaker = actor or opening_person(sentence.text, index) or last_speaker
        yield sentence, actor


def sentence_speakers(sentences: list[Sentence], index: ActorIndex) -> dict[int, str]:
    """The speaker of each candidate sentence (one that may state an item), by its start."""
    return {
        s.start: actor for s, actor in attributions(sentences, index) if actor and is_candidate(s)
    }


def disputed_claims(sentences: list[Sentence]) -> list[Claim]:
    """The claims the article marks as false, fabricated, doctored, debunked, denied or
    alleged by others, each with the span that names whom it is about."""
    return [
        Claim(s.start, s.end, s.start + start, s.start + end, denied)
        for s in sentences
        for start, end, denied in _claims_in(s.text)
        if s.text[start:end].strip()
    ]


def _claims_in(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, denied) of each disputed claim in one sentence."""
    breaks = [m.start() for m in _CLAUSE_BREAK.finditer(text)]
    found = _TRAILING_SOURCE.search(text)
    source = found.start() if found else None
    spans = []
    for m in _CLAIM_FOLLOWS.finditer(text):
        end = _clause(breaks, m.start(), m.end(), len(text), source)[1]
        agent = _DEBUNKED_BY.search(text, m.end(), end)  # who debunked it is not its subject
        spans.append((m.end(), agent.start() if agent else end, False))
    for m in _CLAIM_BEFORE.finditer(text):
        if _AFTER_PREPOSITION.search(text, 0, m.start()):
            continue  # "accountable for allegedly stifling ...": no subject before it is accused
        start = _clause(breaks, m.start(), m.end(), len(text), source)[0]
        spans.append((_about(text, start, m.start()), m.start(), False))
    for m in _CLAIM_DENIED.finditer(text):
        start, end = _clause(breaks, m.start(), m.end(), len(text), source)
        spans.append((_about(text, start, m.start()), end, True))
    return spans


def _clause(
    breaks: list[int], at: int, to: int, length: int, source: int | None
) -> tuple[int, int]:
    """The clause around ``[at, to)``: between clause breaks, and before a source named at
    the end of the sentence ("..., police said", starting at ``source``)."""
    ends = [length, *(b for b in breaks if b >= to)]
    if source is not None and source >= to:
        ends.append(source)
    return max([0, *(b for b in breaks if b < at)]), min(ends)


def _about(text: str, start: int, at: int) -> int:
    """Where the part of ``text[start:at]`` that names whom a claim is about begins: after
    the last "that", verb of saying or subordinating word."""
    return max([start, *(m.end() for m in _CLAUSE_OPENER.finditer(text, start, at))])


def find_candidates(
    text: str, sentences: list[Sentence], index: ActorIndex | None = None
) -> list[Candidate]:
    """The sentences that may state an item, labelled and attributed by the rules (``index``:
    the article's actor index, built from ``text`` when not given)."""
    index = index_actors(text) if index is None else index
    candidates = []
    for sentence, actor in attributions(sentences, index):
        if not is_candidate(sentence):
            continue
        kind, stance = classify(sentence.text)
        names = names_in(sentence.text, index)
        candidates.append(Candidate(sentence, actor, names, kind, stance))
    return candidates


def _body(sentence: str) -> str:
    """The sentence without its attribution ("..., Putin said.")."""
    quoted = [sentence[a + 1 : b - 1] for a, b in quotations(sentence, empty=False)]
    if quoted and sum(len(q) for q in quoted) > 0.5 * len(sentence):
        return " ".join(q.strip(" ,") for q in quoted)
    cue = re.search(rf"\b(?:{_REPORTING})\b(?:\s+(?:that|for|on))?\s+", sentence)
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
