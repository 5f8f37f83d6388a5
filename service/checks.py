"""Checks on what every stage produces, applied by the pipeline after each stage, so that a
new stage gets them without asking.

**Instruction-like sentences** (``find_instructions``) are set aside when an article is
prepared: no stage sees them, and they never become summary sentences or items. A sentence is
instruction-like when it addresses a model or an editor rather than the reader:

- chat-template markers (``<|im_start|>``, ``[INST]``, ``<<SYS>>``, ``<start_of_turn>``) or a
  role tag opening it (``SYSTEM:``, ``User:``, ``Assistant:``, ``### Instruction:``);
- a greeting or note to a model ("Note to AI systems ...", "ATTENTION LANGUAGE MODEL:",
  "Assistant, ...", "If you are an AI ..."), or instructions from or for an editor;
- an override ("ignore all previous instructions", "forget your rules", "you are now ...");
- orders about the output ("the summary must state ...", "you must report that ...",
  "Write that ...", "When summarizing this article, say ...").

A journalist's report *about* such text stays ordinary content: a signal inside quotation
marks in a sentence with a reporting verb outside them ("the note read “SYSTEM: ...”, police
said"), or after an indirect command ("told the AI to ignore previous instructions"), is not
an instruction. A chat marker or role tag opens a block: a chat turn runs to its end marker
(``<|im_end|>``, ``[/INST]``), else to the end of the paragraph, as does a role-tag or
note-to-a-model passage.

**Summaries** (``check_summary``) lose sentences that are instruction-like, or whose names or
numbers the article holds only inside instruction-like sentences, or not at all.

**Items** (``check_items``), whichever extractor made them:

1. the quote is the article's text at its offsets, outside instruction-like sentences;
2. the actor is attributed to the quote: its name (or the surname of a person the article
   names in full) occurs in a sentence the quote overlaps or in the sentence just before it
   (the lead-in "Putin said:"), or it is the speaker the rules attribute the quoted sentence to
   (``service.extraction.find_candidates``: named after a closing quote, the subject of a
   reporting verb, a title the article introduced, "he"/"she" for the last speaker);
3. the demand or issue has no name or number the article's news text lacks, and no field is
   instruction-like (unless it copies the quote, which passed as the article's content);
4. ``target`` and ``conditions`` are spans of the article's news text (whole words, up to case,
   typography and white space), else they are set to null;
5. identical items are merged; positions of one actor on one quote with contradictory stances
   on the same issue keep the stance the rules read in the quote, or are all dropped.

Every removal is counted in ``meta.diagnostics`` and said in ``warnings`` (by position, never
by repeating the injected text).
"""

from __future__ import annotations

import re
from collections import Counter

from service.article import Sentence, split_sentences
from service.extraction import ActorIndex, classify, find_candidates, index_actors
from service.grounding import filter_unsupported, fold, unsupported_terms, verify_offsets
from service.schemas import Demand, Position
from service.stages import Work, body_sentences

CHECKS_VERSION = 1  # results change when the checks do: part of the cache key

_OPENS_TURN = (
    r"<\|im_start\|>|<\|start_header_id\|>|<\|(?:system|user|assistant)\|>|\[INST\]|<start_of_turn>"
)
_ENDS_TURN = r"<\|im_end\|>|<\|eot_id\|>|<\|end\|>|<\|endoftext\|>|\[/INST\]|<end_of_turn>"
CHAT_MARKER = re.compile(
    rf"{_OPENS_TURN}|{_ENDS_TURN}|<\|[a-z_]{{2,30}}\|>|<</?SYS>>|\[/?INST\]", re.IGNORECASE
)
_ROLE_TAG = re.compile(
    r"^\W{0,3}(?:system|assistant|user|human|developer|ai|bot)\s*:"
    r"|^#{2,4}\s*(?:instruction|system|response|input|human|assistant)\b",
    re.IGNORECASE,
)
# Who a message to a model addresses; _ADDRESSEE adds words that need a greeting before them.
_AI = (
    r"(?:AI|A\.I\.|AIs|artificial intelligence|(?:AI|language|large language) models?|LLMs?|"
    r"assistants?|chat ?bots?|ChatGPT|GPT[\w.-]*|Claude|Gemini|Copilot|summari[sz]ers?|"
    r"AI (?:systems?|tools?|agents?))"
)
_ADDRESSEE = rf"(?:{_AI}|models?|bots?|crawlers?|scrapers?)"
_TO_MODEL = re.compile(
    rf"^\W{{0,3}}(?:hi|hey|hello|dear|attention|note to|message (?:to|for)|memo to|"
    rf"reminder (?:to|for)|instructions? (?:to|for))\b[,:]?\s+(?:the |all |any |every )?"
    rf"(?:\w+ )?{_ADDRESSEE}\b"
    rf"|^\W{{0,3}}{_AI}\s*(?::|,(?=.*\b(?:you|your|please)\b))"
    rf"|\b(?:if|when) you are an? (?:\w+ ){{0,2}}?{_ADDRESSEE}\b",
    re.IGNORECASE,
)
_TO_EDITOR = re.compile(
    r"\b(?:new |updated |revised |additional |special |secret |hidden )?instructions? "
    rf"(?:from|for|to) (?:the |an |our )?(?:\w+ )?(?:editors?|desk|newsroom|{_AI})\b"
    r"|^\W{0,3}(?:dear |attention |note to (?:the )?)editors?\b[,:]?"
    r"(?=.*\b(?:summary|headline|article|story|output)\b)",
    re.IGNORECASE,
)
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any)\s+(?:of\s+)?)?"
    r"(?:(?:the|these|those|your|my)\s+)?"
    r"(?:(?:previous|prior|above|earlier|preceding|original|foregoing|system|initial)\s+"
    r"(?:\w+\s+)?(?:instructions?|prompts?|directions|directives|guidelines|rules|context|"
    r"text|article|messages?)\b"
    r"|(?<=your )(?:instructions|prompts?|rules|guidelines|directives|programming|training)\b"
    r"|(?:the\s+)?(?:article|text|content|instructions|prompt)\s+above\b)"
    r"|\byou are now\b|\bfrom now on,? you\b|\byour (?:new|real|true) (?:task|role|job|"
    r"instructions?)\b|\b(?:you (?:must |should |will )?pretend|pretend you are)\b",
    re.IGNORECASE,
)
_OUTPUT = (
    r"(?:output|write|say|state|report|print|return|respond|reply|include|add|list|mention|"
    r"attribute|summari[sz]e|extract|claim|insert|append|describe|name|credit)"
)
_ORDERS = re.compile(
    r"\b(?:the|your|this|any) (?:summary|summaries|output|answer|response|reply|extraction|json|"
    r"headline)s? (?:must|should|shall|will|needs? to|has to|is to) (?:also |now |only )?"
    r"(?:state|say|include|mention|read|contain|list|report|claim|attribute|name|show|begin|"
    r"start|end|note|credit)\b"
    rf"|\byou (?:must|should|shall|will|need to|have to|are (?:required |instructed )?to) "
    rf"(?:now |also |instead |only )?(?:{_OUTPUT}|ignore|disregard|forget|pretend)\b"
    rf"|^\W{{0,3}}(?:please |now |also |instead )?{_OUTPUT} (?:that|only|exactly|the following|"
    rf"this|[:\"“'‘])"
    rf"|\b(?:when|while|before|after) (?:you )?(?:summari[sz]|extract|process|read|analy[sz]|"
    rf"rewrit|translat)\w* (?:this|the) (?:article|page|text|story|document|content)\b"
    rf"(?=.*\b(?:you|say|state|write|output|report|mention|include)\b)",
    re.IGNORECASE,
)
_SIGNALS = (CHAT_MARKER, _ROLE_TAG, _TO_MODEL, _TO_EDITOR, _OVERRIDE, _ORDERS)
_OPENS_BLOCK = (CHAT_MARKER, _ROLE_TAG, _TO_MODEL)
# "told the AI to ignore ...": an indirect command, reported.
_INDIRECT = re.compile(
    r"\b(?:told|tells|telling|instructed|instructs|instructing|asked|asks|ordered|orders|"
    r"directed|urged|tricked|tricks|tricking|prompted|commanded|coaxed|manipulated|led|"
    r"leading)\s+(?:[\w'’.-]+\s+){0,4}?to\s+",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"“[^”]*”|\"[^\"]*\"")
_REPORTED = re.compile(
    r"\b(?:said|says|read|reads|wrote|writes|stated|reported|told|found|showed|shows|"
    r"contained|contains|included|includes|according to|warned|described)\b",
    re.IGNORECASE,
)


def is_instruction(sentence: str) -> bool:
    """Whether a sentence addresses a model or an editor (and does not just report that
    some text did)."""
    return _signal(sentence) is not None


def _signal(sentence: str) -> tuple[re.Pattern[str], re.Match[str]] | None:
    """The first signal that makes a sentence instruction-like, with its pattern."""
    quoted = [m.span() for m in _QUOTED.finditer(sentence)]
    reported = bool(_REPORTED.search(_QUOTED.sub(" ", sentence)))
    frames = [m.start() for m in _INDIRECT.finditer(sentence)]
    for pattern in _SIGNALS:
        for match in pattern.finditer(sentence):
            in_quotes = any(a <= match.start() < b for a, b in quoted)
            if (in_quotes and reported) or any(f <= match.start() for f in frames):
                continue  # a report of what some text said
            return pattern, match
    return None


def find_instructions(text: str, sentences: list[Sentence]) -> list[Sentence]:
    """The instruction-like sentences of an article, with the blocks they open."""
    flagged: list[Sentence] = []
    block_end = -1
    for s in sentences:
        if s.start < block_end:
            flagged.append(s)
            continue
        found = _signal(s.text)
        if found is None:
            continue
        flagged.append(s)
        pattern, match = found
        if pattern in _OPENS_BLOCK:
            paragraph_end = text.find("\n", s.end)
            block_end = len(text) if paragraph_end < 0 else paragraph_end
            if re.fullmatch(_OPENS_TURN, match.group(), re.IGNORECASE):
                closer = re.compile(_ENDS_TURN, re.IGNORECASE).search(text, s.start + match.end())
                block_end = closer.end() if closer else block_end
    return flagged


def instruction_warning(instructions: list[Sentence]) -> str:
    where = ", ".join(f"{s.start}-{s.end}" for s in instructions[:5])
    more = f" and {len(instructions) - 5} more" if len(instructions) > 5 else ""
    return (
        f"ignored {len(instructions)} instruction-like sentences addressed to a model or an "
        f"editor (characters {where}{more}): kept out of the summary and the items"
    )


# Summaries ---------------------------------------------------------------------------------


def check_summary(work: Work, *, wanted: int) -> None:
    """Remove summary sentences that are instruction-like or rest on names or numbers the
    article's news text does not hold; fall back to the lead if none is left."""
    if not work.summary:
        return
    news = work.news_text
    kept: list[str] = []
    injected = 0
    warnings: list[str] = []
    for s in split_sentences(work.summary):
        if is_instruction(s.text) or CHAT_MARKER.search(s.text):
            injected += 1
        elif not unsupported_terms(s.text, news):
            kept.append(s.text)
        elif not unsupported_terms(s.text, work.text):
            injected += 1  # its names or numbers occur only in instruction-like sentences
        else:
            warnings += filter_unsupported([s.text], news)[1]
    removed = injected + len(warnings)
    if not removed:
        return
    work.diagnostics.summary_sentences_removed += removed
    work.warnings += warnings
    if injected:
        work.warnings.append(
            f"removed {injected} summary sentences that repeat instruction-like text"
        )
    if not kept:
        kept = [s.text for s in body_sentences(work.sentences)[:wanted]]
        work.warnings.append("no summary sentence survived the checks; used lead")
    work.summary = " ".join(kept)


# Items -------------------------------------------------------------------------------------

Item = Demand | Position


def check_items(work: Work) -> None:
    """Apply the item rules of the module docstring to ``work.demands`` and
    ``work.positions``; drop, clear, merge and resolve, and say so."""
    news = work.news_text
    folded = _norm(news)
    index = index_actors(news)
    speakers = _speakers(news, work.sentences)
    faults: Counter[str] = Counter()
    cleared = 0
    checked: list[Item] = []
    items: list[Item] = [*work.demands, *work.positions]
    for item in items:
        fault = _fault(item, work, news, index, speakers)
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
    item: Item, work: Work, news: str, index: ActorIndex, speakers: dict[int, str]
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
    if unsupported_terms(content, news):
        return "names or numbers not in the article"
    if not _attributed(item, work.sentences, index, speakers):
        return "actor not named in or before its quote"
    return None


def _speakers(text: str, sentences: list[Sentence]) -> dict[int, str]:
    """The speaker the rules attribute each candidate sentence to, by sentence start."""
    return {c.sentence.start: c.actor for c in find_candidates(text, sentences) if c.actor}


def _attributed(
    item: Item, sentences: list[Sentence], index: ActorIndex, speakers: dict[int, str]
) -> bool:
    inside = [s for s in sentences if s.start < item.end and item.start < s.end]
    if not inside:
        return False
    before = [s for s in sentences if s.end <= inside[0].start][-1:]
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
    positions = [(i, p) for i, p in enumerate(items) if isinstance(p, Position)]
    for i, p in positions:
        rivals = [
            (j, q)
            for j, q in positions
            if j != i
            and (q.start, q.end, _norm(q.actor)) == (p.start, p.end, _norm(p.actor))
            and q.stance != p.stance
            and (_norm(q.issue) in _norm(p.issue) or _norm(p.issue) in _norm(q.issue))
        ]
        if not rivals:
            continue
        kind, stance = classify(text[p.start : p.end])
        if kind == "none" or p.stance != stance:
            drop.add(i)
    return len(drop), [item for i, item in enumerate(items) if i not in drop]
