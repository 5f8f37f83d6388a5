"""Instruction-like text in articles: text addressed to a model or an editor, not the reader.

Instruction-like sentences (``find_instructions``) are set aside when an article is prepared
(``service.pipeline``): no stage sees them, and they never become summary sentences or items.
A sentence is instruction-like when it addresses a model or an editor rather than the reader:

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

Owns the patterns and the detector; imports only ``service.article``.
"""

from __future__ import annotations

import bisect
import re

from service.article import Sentence, quotations

_OPENS_TURN = (
    r"<\|im_start\|>|<\|start_header_id\|>|<\|(?:system|user|assistant)\|>|\[INST\]|<start_of_turn>"
)
_ENDS_TURN = r"<\|im_end\|>|<\|eot_id\|>|<\|end\|>|<\|endoftext\|>|\[/INST\]|<end_of_turn>"
_END_OF_TURN = re.compile(_ENDS_TURN, re.IGNORECASE)
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
    rf"this|[:\"“'‘])",
    re.IGNORECASE,
)
# "When summarizing this article, say ...": a signal only with an order word after it on its
# line (``_signal`` checks; a lookahead ``(?=.*...)`` here read the rest of the sentence after
# every such phrase, quadratic in a sentence that repeats it).
_WHILE_READING = re.compile(
    r"\b(?:when|while|before|after) (?:you )?(?:summari[sz]|extract|process|read|analy[sz]|"
    r"rewrit|translat)\w* (?:this|the) (?:article|page|text|story|document|content)\b",
    re.IGNORECASE,
)
_ORDER_WORD = re.compile(
    r"\b(?:you|say|state|write|output|report|mention|include)\b", re.IGNORECASE
)
_SIGNALS = (CHAT_MARKER, _ROLE_TAG, _TO_MODEL, _TO_EDITOR, _OVERRIDE, _ORDERS, _WHILE_READING)
_OPENS_BLOCK = (CHAT_MARKER, _ROLE_TAG, _TO_MODEL)
# "told the AI to ignore ...": an indirect command, reported.
_INDIRECT = re.compile(
    r"\b(?:told|tells|telling|instructed|instructs|instructing|asked|asks|ordered|orders|"
    r"directed|urged|tricked|tricks|tricking|prompted|commanded|coaxed|manipulated|led|"
    r"leading)\s+(?:[\w'’.-]+\s+){0,4}?to\s+",
    re.IGNORECASE,
)
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
    """The first signal that makes a sentence instruction-like, with its pattern.

    Linear in the sentence: each signal's matches are checked against the quotations, the
    first indirect command and the order words by bisection, not by a scan per match.
    """
    quoted = quotations(sentence)
    bounds = [0, *(i for span in quoted for i in span), len(sentence)]
    outside = " ".join(sentence[a:b] for a, b in zip(bounds[::2], bounds[1::2], strict=True))
    reported = bool(_REPORTED.search(outside))
    frame = _INDIRECT.search(sentence)
    first_frame = frame.start() if frame else len(sentence) + 1
    opening_marks = [a for a, _ in quoted]
    orders: list[int] | None = None  # where order words start, read on first need
    lines = [i for i, c in enumerate(sentence) if c == "\n"] if "\n" in sentence else []

    def in_quotes(at: int) -> bool:
        i = bisect.bisect_right(opening_marks, at) - 1
        return i >= 0 and at < quoted[i][1]

    for pattern in _SIGNALS:
        for match in pattern.finditer(sentence):
            if (reported and in_quotes(match.start())) or first_frame <= match.start():
                continue  # a report of what some text said
            if pattern is _WHILE_READING:  # an order word must follow on the same line
                if orders is None:
                    orders = [m.start() for m in _ORDER_WORD.finditer(sentence)]
                i = bisect.bisect_left(orders, match.end())
                j = bisect.bisect_left(lines, match.end())
                line_end = lines[j] if j < len(lines) else len(sentence)
                if i == len(orders) or orders[i] >= line_end:
                    continue
            return pattern, match
    return None


def find_instructions(text: str, sentences: list[Sentence]) -> list[Sentence]:
    """The instruction-like sentences of an article, with the blocks they open."""
    flagged: list[Sentence] = []
    block_end = -1
    closers = _Closers(text)
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
                closer = closers.after(s.start + match.end())
                block_end = closer if closer is not None else block_end
    return flagged


class _Closers:
    """Where the chat turns' end markers of a text end, found once the first time one is
    looked for (a search from every unclosed turn to the end of the text was quadratic)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def after(self, at: int) -> int | None:
        """The end of the first end marker that starts at or after ``at``, if any."""
        if self._starts is None:
            found = list(_END_OF_TURN.finditer(self.text))
            self._starts, self._ends = [m.start() for m in found], [m.end() for m in found]
        i = bisect.bisect_left(self._starts, at)
        return self._ends[i] if i < len(self._ends) else None


def instruction_warning(instructions: list[Sentence]) -> str:
    where = ", ".join(f"{s.start}-{s.end}" for s in instructions[:5])
    more = f" and {len(instructions) - 5} more" if len(instructions) > 5 else ""
    return (
        f"ignored {len(instructions)} instruction-like sentences addressed to a model or an "
        f"editor (characters {where}{more}): kept out of the summary and the items"
    )
