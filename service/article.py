"""From raw input to the cleaned text every offset refers to, and its sentences."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import trafilatura

from service.errors import InputError
from service.lexicon import SPEECH_VERBS, alternation
from service.schemas import Article

# A sentence with a reporting verb (the lexicon's list) is reported speech, never furniture.
REPORTING_VERBS = alternation(SPEECH_VERBS)
_REPORTED = re.compile(rf"\b(?:{REPORTING_VERBS}|according to)\b", re.IGNORECASE)

# Page furniture that scrapers leave inside or between paragraphs. A phrase is cut only where
# it cannot belong to a sentence: at the start of a line or right after a sentence's end, and
# not followed by a lower-case word ("Advertisement revenue fell" stays).
# (``_cut_phrases`` checks what comes before, in the line as cut so far.)
_JUNK_PHRASE = re.compile(
    r"(?:Open Modal|Loading\.\.\.|Loading…|Recommended (?:Posts|Stories|Articles)|"
    r"Skip to (?:main )?content|Advertisement|ADVERTISEMENT|Read more:?|Share this article|"
    r"Sign up for our newsletter)"
    r"(?![ \t]*[a-z])",
)
_SENTENCE_END = frozenset(".!?…”’\"')]")
# Whole sentences that are furniture: copyright and contributor lines, photo captions' credits,
# share buttons. Only the sentence goes, never the rest of its line or paragraph.
_JUNK_SENTENCE = re.compile(
    r"Copyright\s*(?:©|\(c\)|\d{4}).*|©.*|(?:.*\s)?All rights reserved\.?|"
    r".*\bcontributed to this report\.?|(?:Photo|Image|Picture)s?(?: credit)?:.*|"
    r"Share|Tweet|Email|Print|Comments?",
    re.IGNORECASE,
)
# A picture credit: capitalised names around an agency ("Contributor/Getty Images",
# "REUTERS/Gleb Garanich", "(AP Photo/Evan Vucci)", "AFP via Getty Images").
_AGENCY = r"(?:Getty Images|AFP|AP Photo|AP|REUTERS|Reuters(?: Photo)?|EPA|Shutterstock)"
_NAME_WORD = r"[A-Z][\w.'’-]*"
_CREDIT = re.compile(
    rf"\(?(?:(?:Photo|Image|Picture)s?(?: credit)?:? ?)?(?:by )?"
    rf"(?:{_NAME_WORD}(?: |/ ?))*{_AGENCY}"
    rf"(?:(?: ?/ ?| via ){_NAME_WORD}(?: {_NAME_WORD})*)*\)?"
)
# A lone token such as an image slug ("vladimir20putin309713").
_SLUG_LINE = re.compile(r"^(?=.*\d)[\w./-]{6,}$")

_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "gen",
    "col",
    "lt",
    "sgt",
    "capt",
    "gov",
    "sen",
    "rep",
    "st",
    "jr",
    "sr",
    "no",
    "vs",
    "etc",
    "inc",
    "ltd",
    "co",
    "corp",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "u.s",
    "u.k",
    "u.n",
    "e.g",
    "i.e",
    "a.m",
    "p.m",
}
_OPENERS = "“‘"
_CLOSERS = "”’"
_LAST_TOKEN = re.compile(r"([\w.]+)$")


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str
    paragraph: int
    is_heading: bool


def quotations(text: str, *, empty: bool = True) -> list[tuple[int, int]]:
    """The spans of the quotations in ``text``, “curly” or "straight", closing marks included:
    what ``re.finditer(r'“[^”]*”|"[^"]*"', text)`` finds (``[^”]+`` when not ``empty``), in
    one pass. The regular expression looked for a closing mark after every opening one, to the
    end of the text when there was none: quadratic in a text of openers without closers."""
    spans: list[tuple[int, int]] = []
    pairs = {"“": "”", '"': '"'}
    upcoming = dict.fromkeys(pairs, -1)  # the next opening mark of each kind at or after ``at``
    closed = dict.fromkeys(pairs, True)  # False once an opening mark has no closing one after it
    at = 0
    while True:
        for mark in pairs:
            if closed[mark] and upcoming[mark] < at:
                upcoming[mark] = text.find(mark, at)
                closed[mark] = upcoming[mark] >= 0
        opening = [(upcoming[m], m) for m in pairs if closed[m]]
        if not opening:
            return spans
        start, mark = min(opening)
        end = text.find(pairs[mark], start + 1)
        if end < 0:
            closed[mark] = False  # no later opening mark of this kind has a closing one either
        elif end == start + 1 and not empty:
            at = start + 1
        else:
            spans.append((start, end + 1))
            at = end + 1


# What a byte-level BPE tokenizer (the embedded model's) reads as one token or more: letters
# come merged about five to a token; digits, marks and symbols one each; a character outside
# ASCII one, or two for a combining mark or a CJK character, three outside the BMP (emoji).
_ASCII_WORD = re.compile(r"[A-Za-z]+")
_ASCII_SYMBOL = re.compile(r"[!-/:-@\[-`{-~]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_TWO_TOKENS = re.compile(
    "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
    "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00010000-\U0010ffff]"
)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is, for limits and costs, without a tokenizer.

    Checked against the embedded model's tokenizer: English news within 20% (above it),
    French, Russian and Chinese within 15%, German about a third below; floods of what a
    byte-level tokenizer reads byte by byte (combining marks, emoji, digits) count what they
    cost it, not one token per word. Linear, about 10 ms per 100,000 characters.
    """
    letters = sum((len(word) + 4) // 5 for word in _ASCII_WORD.findall(text))
    digits = sum(map(text.count, "0123456789"))
    symbols = len(_ASCII_SYMBOL.findall(text))
    wide = len(_NON_ASCII.findall(text)) + len(_TWO_TOKENS.findall(text))
    return letters + digits + symbols + wide + len(_ASTRAL.findall(text))


def clean_article(
    article: Article, *, max_chars: int, max_tokens: int | None = None
) -> tuple[str, list[str]]:
    """Cleaned text and a list of what was removed. Raises InputError on unusable input, and
    on a cleaned text over ``max_chars`` characters or ``max_tokens`` tokens
    (``estimate_tokens``): the limits that bound the work one article can cost."""
    raw = _html_to_text(article.html) if article.html is not None else article.text or ""
    _reject_binary(raw)
    text, removed = strip_junk(raw)
    if not text.strip():
        raise InputError("the article has no text", article_id=article.id)
    if len(text) > max_chars:
        raise InputError(
            f"the article has {len(text)} characters; the limit is {max_chars} "
            "(STANDPOINT_MAX_CHARS)",
            article_id=article.id,
        )
    if max_tokens is not None and (tokens := estimate_tokens(text)) > max_tokens:
        raise InputError(
            f"the article has about {tokens} tokens after cleaning; the limit is {max_tokens} "
            "(STANDPOINT_MAX_ARTICLE_TOKENS)",
            article_id=article.id,
        )
    return text, removed


def _html_to_text(html: str) -> str:
    if not html.strip():
        return ""
    extracted = trafilatura.extract(
        html,
        include_comments=False,
        include_tables=False,
        include_images=False,
        favor_precision=True,
    )
    if extracted is None:
        raise InputError("no article text found in the HTML")
    return extracted


def _reject_binary(raw: str) -> None:
    if "\x00" in raw:
        raise InputError("the input looks binary (it contains NUL bytes)")
    sample = raw[:4000]
    control = sum(1 for c in sample if unicodedata.category(c) == "Cc" and c not in "\n\r\t")
    if sample and control / len(sample) > 0.01:
        raise InputError("the input looks binary (too many control characters)")


def strip_junk(raw: str) -> tuple[str, list[str]]:
    """The text without page furniture, and each removed piece in order.

    Only the junk span goes (a phrase, a sentence, a credit, a slug line); the kept text and
    the removed pieces together hold every non-space character of the (NFC) input.
    """
    text = unicodedata.normalize("NFC", raw).replace("\r\n", "\n").replace("\r", "\n")
    removed: list[str] = []
    lines = []
    for line in text.split("\n"):
        line = _cut_phrases(line, removed)
        line = re.sub(r"[ \t\u00a0]+", " ", line).strip()
        if _SLUG_LINE.match(line):
            removed.append(line)
            continue
        kept = _cut_sentences(line, removed)
        if kept or not line:  # a line that was all furniture leaves no empty paragraph
            lines.append(kept)
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return cleaned, removed


def _cut_phrases(line: str, removed: list[str]) -> str:
    """The line without its furniture phrases: each one at the start of the line or after a
    sentence's end (spaces and tabs between), in the line as cut so far (cutting one can
    expose the next: "x. AdvertisementRead more:"). One pass: searching the line again from
    its start after each cut, and copying it, was quadratic in a line of furniture."""
    kept: list[str] = []
    before = ""  # the last kept character that is not a space or tab; "" at the line's start
    at = search_from = 0
    while match := _JUNK_PHRASE.search(line, search_from):
        start, end = match.span()
        i = start
        while i > at and line[i - 1] in " \t":
            i -= 1
        previous = line[i - 1] if i > at else before
        if previous and previous not in _SENTENCE_END:
            search_from = start + 1
            continue
        removed.append(match.group())
        kept.append(line[at:start])
        before = previous
        at = search_from = end
    kept.append(line[at:])
    return "".join(kept)


def _cut_sentences(line: str, removed: list[str]) -> str:
    """The line without its furniture sentences; neighbouring ones are removed as one piece."""
    spans = [(a, b) for a, b in _split_line(line) if _is_junk(line[a:b])]
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and not line[merged[-1][1] : a].strip():
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    removed += [line[a:b] for a, b in merged]
    for a, b in reversed(merged):
        line = line[:a] + line[b:]
    return re.sub(r" {2,}", " ", line).strip()


def _is_junk(sentence: str) -> bool:
    if _REPORTED.search(sentence):
        return False
    return bool(_JUNK_SENTENCE.fullmatch(sentence) or _CREDIT.fullmatch(sentence))


def split_sentences(text: str) -> list[Sentence]:
    """Sentences with their offsets; a quotation that spans sentences stays in one piece."""
    sentences = []
    for paragraph, match in enumerate(re.finditer(r"[^\n]+", text)):
        line, base = match.group(), match.start()
        for start, end in _split_line(line):
            piece = line[start:end]
            heading = not re.search(r"[.!?…:;”’\"')]$", piece) and len(piece.split()) <= 14
            sentences.append(Sentence(base + start, base + end, piece, paragraph, heading))
    return sentences


def _split_line(line: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    depth = 0
    straight_open = False
    i = 0
    while i < len(line):
        c = line[i]
        if c in _OPENERS and (i == 0 or not line[i - 1].isalpha()):
            depth += 1
        elif c in _CLOSERS and depth and (i + 1 == len(line) or not line[i + 1].isalpha()):
            depth -= 1
        elif c == '"':
            straight_open = not straight_open
        if c in ".!?…":
            end = i + 1
            while end < len(line) and line[end] in '”’")':
                end += 1
            run = line[i + 1 : end]  # closers right after the stop
            inside = depth - run.count("”") > 0 or (straight_open and '"' not in run)
            if end < len(line) and line[end] == " " and _is_boundary(line, i, end, inside=inside):
                spans.append((start, end))
                start = end + 1
                depth, straight_open = 0, False
                i = end
        i += 1
    if start < len(line) and line[start:].strip():
        spans.append((start, len(line)))
    return spans


def _is_boundary(line: str, i: int, end: int, *, inside: bool) -> bool:
    """Whether the stop at ``i`` (closers up to ``end``, then a space) ends a sentence.

    Looks only at a few characters on either side, so splitting a line stays linear.
    """
    after = end
    while after < len(line) and line[after].isspace():
        after += 1
    following = line[after : after + 1]
    if not following or not (
        following.isupper() or following in _OPENERS + '"' or following.isdigit()
    ):
        return False
    if inside and len(line) < 2000:
        return False
    if line[i] == ".":
        word = _LAST_TOKEN.search(line, max(0, i - 64), i)
        if word:
            token = word.group(1).lower()
            if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                return False
    return True
