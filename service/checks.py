"""Checks on what every stage produces, applied by the pipeline after each stage, so that a
new stage gets them without asking.

Instruction-like sentences are found and set aside by ``service.guard`` when an article is
prepared; the checks here use it to keep them out of what stages make.

**Summaries** (``check_summary``) lose sentences that are instruction-like, or whose names or
numbers the article holds only inside instruction-like sentences, or not at all, or that state
as fact a claim the article reports as false or alleged (``Work.disputed``).

**Items** (``check_items``), whichever extractor made them:

1. the quote is the article's text at its offsets, outside instruction-like sentences;
2. the actor is attributed to the quote: its name (or the surname of a person the article
   names in full) occurs in a sentence the quote overlaps or in the sentence just before it
   (the lead-in "Putin said:"), or it is the speaker the article attributes the quoted
   sentence to (``Work.speakers``, computed once per article by ``service.extraction``:
   named after a closing quote, the subject of a reporting verb, a title the article
   introduced, "he"/"she" for the last speaker);
3. the demand or issue has no name or number the article's news text lacks, and no field is
   instruction-like (unless it copies the quote, which passed as the article's content);
4. the item is not a claim the article reports as false, fabricated, doctored, debunked,
   denied or alleged by others (``Work.disputed``, found once per article by
   ``service.extraction``): its quote holds such a claim and its actor is the one the claim is
   about ("A viral post falsely claimed that Joe Biden had demanded ..." is not Joe Biden's
   demand; "X accused Y of ..." stays X's position);
5. ``target`` and ``conditions`` are spans of the article's news text outside such claims
   (whole words, up to case, typography and white space), else they are set to null;
6. identical items are merged; positions of one actor on one quote with contradictory stances
   on the same issue keep the stance the rules read in the quote, or are all dropped.

Every removal is counted in ``meta.diagnostics`` and said in ``warnings`` (by position, never
by repeating the injected text).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict

from service.article import Sentence, split_sentences
from service.extraction import ActorIndex, Claim, classify, disputed_claims
from service.grounding import filter_unsupported, fold, unsupported_terms, verify_offsets
from service.guard import CHAT_MARKER, is_instruction
from service.lexicon import STOPWORDS
from service.schemas import Demand, Position
from service.stages import Work, body_sentences

CHECKS_VERSION = 2  # results change when the checks (or the guard) do: part of the cache key


# Summaries ---------------------------------------------------------------------------------


def check_summary(work: Work, *, wanted: int) -> None:
    """Remove summary sentences that are instruction-like or rest on names or numbers the
    article's news text does not hold; fall back to the lead if none is left."""
    if not work.summary:
        return
    article = _norm(work.text)
    kept: list[str] = []
    injected = disputed = 0
    warnings: list[str] = []
    for s in split_sentences(work.summary):
        if is_instruction(s.text) or CHAT_MARKER.search(s.text):
            injected += 1
        elif _states_disputed(s.text, work, article):
            disputed += 1
        elif not work.terms.missing(s.text):
            kept.append(s.text)
        elif not unsupported_terms(s.text, work.text):
            injected += 1  # its names or numbers occur only in instruction-like sentences
        else:
            warnings += filter_unsupported([s.text], work.terms)[1]
    removed = injected + disputed + len(warnings)
    if not removed:
        return
    work.diagnostics.summary_sentences_removed += removed
    work.warnings += warnings
    if injected:
        work.warnings.append(
            f"removed {injected} summary sentences that repeat instruction-like text"
        )
    if disputed:
        work.warnings.append(
            f"removed {disputed} summary sentences that state a claim the article reports as "
            "false or alleged"
        )
    if not kept:
        kept = [s.text for s in body_sentences(work.sentences)[:wanted]]
        work.warnings.append("no summary sentence survived the checks; used lead")
    work.summary = " ".join(kept)


def _states_disputed(sentence: str, work: Work, article: str) -> bool:
    """Whether a summary sentence states a disputed claim without saying it is disputed
    (``article``: the article's text, ``_norm``-folded)."""
    if not work.disputed or _norm(sentence) in article:
        return False  # nothing disputed, or the article's own words
    if disputed_claims(split_sentences(sentence)):
        return False  # it says the claim is disputed
    said = _content_words(sentence)
    for claim in work.disputed:
        words = _content_words(work.text[claim.start : claim.end])
        shared = len(words & said)
        if shared >= 2 and shared >= 0.6 * len(words):
            return True
    return False


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", _norm(text)) if w not in STOPWORDS}


# Items -------------------------------------------------------------------------------------

Item = Demand | Position


def check_items(work: Work) -> None:
    """Apply the item rules of the module docstring to ``work.demands`` and
    ``work.positions``; drop, clear, merge and resolve, and say so."""
    news = work.news_text
    folded = _norm(_blank(news, [(c.start, c.end) for c in work.disputed]))
    index, speakers = work.actors, work.speakers
    faults: Counter[str] = Counter()
    cleared = 0
    checked: list[Item] = []
    items: list[Item] = [*work.demands, *work.positions]
    sentences = _Sentences(work.sentences)
    for item in items:
        fault = _fault(item, work, sentences, index, speakers)
        if fault:
            faults[fault] += 1
            continue
        if isinstance(item, Demand):
            fields = {k: getattr(item, k) for k in ("target", "conditions")}
            spans = {k: v if v and _is_span(v, folded) else None for k, v in fields.items()}
            cleared += sum(1 for k in fields if fields[k] is not None and spans[k] is None)
            item = item.model_copy(update=spans)
        checked.append(item)
    merged, checked = _merge(checked)
    contradictory, checked = _resolve(checked, work.text)
    work.demands = [i for i in checked if isinstance(i, Demand)]
    work.positions = [i for i in checked if isinstance(i, Position)]
    dropped = sum(faults.values()) + contradictory
    work.diagnostics.items_dropped += dropped
    work.diagnostics.fields_cleared += cleared
    work.diagnostics.items_merged += merged
    if faults:
        reasons = ", ".join(f"{n} {reason}" for reason, n in faults.most_common())
        work.warnings.append(
            f"dropped {sum(faults.values())} items that failed the checks: {reasons}"
        )
    if cleared:
        work.warnings.append(f"cleared {cleared} target/conditions fields not spans of the article")
    if merged:
        work.warnings.append(f"merged {merged} duplicate items")
    if contradictory:
        work.warnings.append(
            f"dropped {contradictory} positions with contradictory stances on one quote"
        )


def _fault(
    item: Item, work: Work, sentences: _Sentences, index: ActorIndex, speakers: dict[int, str]
) -> str | None:
    if not verify_offsets(item.quote, item.start, item.end, work.text):
        return "quote not at its offsets"
    if any(s.start < item.end and item.start < s.end for s in work.instructions):
        return "quote in an instruction-like sentence"
    content = item.demand if isinstance(item, Demand) else item.issue
    values = [item.actor, content]
    if isinstance(item, Demand):
        values += [item.target or "", item.conditions or ""]
    quoted = _norm(item.quote)  # the article's words in a quote that passed are its content
    if any(
        v and (CHAT_MARKER.search(v) or (is_instruction(v) and _norm(v) not in quoted))
        for v in values
    ):
        return "instruction-like text in a field"
    if not item.actor.strip():
        return "no actor"
    if any(_disputes(claim, item, work.text, index) for claim in work.disputed):
        return "reported as false or alleged by others"
    if work.terms.missing(content):
        return "names or numbers not in the article"
    if not _attributed(item, sentences, index, speakers):
        return "actor not named in or before its quote"
    return None


def _disputes(claim: Claim, item: Item, text: str, index: ActorIndex) -> bool:
    """Whether ``item`` is ``claim``: its quote holds the claim, and the claim names its
    actor (the one it is about, not whoever made or denies it)."""
    if not (item.start < claim.sentence_end and claim.sentence_start < item.end):
        return False
    if isinstance(item, Position) and item.stance in ("oppose", "neutral"):
        return False  # a denial or rebuttal is the actor's own stance on the claim
    said = _POSSESSIVE.sub(" ", text[claim.start : claim.end])  # "a judge's orders": not whom
    content = _norm(item.demand if isinstance(item, Demand) else item.issue)
    if content and any(content in _norm(m.group()) for m in _ASIDE.finditer(said)):
        return False  # from an aside about the actor (", who has ..."), not what is alleged
    return _named(item.actor, said, index)


_POSSESSIVE = re.compile(r"[\w.-]+['’]s?\b(?=\s)")
# ", who has courted controversy with ... tactics,": a relative clause set off by commas.
_ASIDE = re.compile(r",\s+(?:who|whose|which)\b[^,]*,")


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with ``spans`` replaced by spaces (same offsets)."""
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


class _Sentences:
    """An article's sentences (in order, not overlapping), found by offsets in log time."""

    def __init__(self, sentences: list[Sentence]) -> None:
        self.sentences = sentences
        self.starts = [s.start for s in sentences]
        self.ends = [s.end for s in sentences]

    def around(self, start: int, end: int) -> tuple[list[Sentence], list[Sentence]]:
        """The sentences overlapping ``start:end``, and the one before the first of them."""
        first = bisect.bisect_right(self.ends, start)
        inside = self.sentences[first : bisect.bisect_left(self.starts, end)]
        return inside, self.sentences[max(0, first - 1) : first]


def _attributed(
    item: Item, sentences: _Sentences, index: ActorIndex, speakers: dict[int, str]
) -> bool:
    inside, before = sentences.around(item.start, item.end)
    if not inside:
        return False
    canonical = _norm(index.canonical(item.actor))
    if any(_norm(speakers.get(s.start, "")) in {canonical, _norm(item.actor)} for s in inside):
        return True
    return any(_named(item.actor, s.text, index) for s in [*before, *inside])


def _named(actor: str, text: str, index: ActorIndex) -> bool:
    canonical = index.canonical(actor)
    forms = {_norm(actor), _norm(canonical)}
    words = canonical.split()
    if len(words) > 1 and index.full_names.get(words[-1]) == canonical:
        forms.add(_norm(words[-1]))  # the surname of a person the article names in full
    folded = _norm(text)
    return any(re.search(rf"(?<!\w){re.escape(f)}(?!\w)", folded) for f in forms if f)


def _is_span(value: str, folded_text: str) -> bool:
    """Whether ``value`` occurs in the (``_norm``-folded) text as whole words."""
    words = _norm(value).split()
    if not words:
        return False
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pattern, folded_text) is not None


def _norm(text: str) -> str:
    return " ".join(fold(text).lower().split())


def _key(item: Item) -> tuple[str, ...]:
    content = item.demand if isinstance(item, Demand) else f"{item.issue}|{item.stance}"
    return (type(item).__name__, _norm(item.actor), str(item.start), str(item.end), _norm(content))


def _merge(items: list[Item]) -> tuple[int, list[Item]]:
    """Identical items once, a demand's empty target/conditions filled from its duplicates."""
    kept: dict[tuple[str, ...], Item] = {}
    merged = 0
    for item in items:
        key = _key(item)
        first = kept.get(key)
        if first is None:
            kept[key] = item
            continue
        merged += 1
        if isinstance(first, Demand) and isinstance(item, Demand):
            kept[key] = first.model_copy(
                update={
                    "target": first.target or item.target,
                    "conditions": first.conditions or item.conditions,
                }
            )
    return merged, list(kept.values())


def _resolve(items: list[Item], text: str) -> tuple[int, list[Item]]:
    """Positions of one actor on one quote and one issue with different stances: keep the
    stance the rules read in the quote, else drop them all."""
    drop: set[int] = set()
    on_quote: dict[tuple[int, int, str], list[tuple[int, Position]]] = defaultdict(list)
    for i, p in enumerate(items):
        if isinstance(p, Position):
            on_quote[p.start, p.end, _norm(p.actor)].append((i, p))
    for i, p in [pair for group in on_quote.values() for pair in group]:
        rivals = [
            (j, q)
            for j, q in on_quote[p.start, p.end, _norm(p.actor)]
            if j != i
            and q.stance != p.stance
            and (_norm(q.issue) in _norm(p.issue) or _norm(p.issue) in _norm(q.issue))
        ]
        if not rivals:
            continue
        kind, stance = classify(text[p.start : p.end])
        if kind == "none" or p.stance != stance:
            drop.add(i)
    return len(drop), [item for i, item in enumerate(items) if i not in drop]
