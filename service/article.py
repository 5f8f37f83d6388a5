"""From raw input to the cleaned text every offset refers to, and its sentences."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import trafilatura

from service.errors import InputError
from service.schemas import Article

# Page furniture that scrapers leave inside or between paragraphs.
_JUNK_PHRASES = re.compile(
    r"Open Modal|Loading\.\.\.|Loading…|Recommended (?:Posts|Stories|Articles)|"
    r"Skip to (?:main )?content|Advertisement|ADVERTISEMENT|Read more:?|Share this article|"
    r"Sign up for our newsletter",
)
_JUNK_LINE = re.compile(
    r"^(?:Copyright\b.*|©.*|.*\bAll rights reserved\.?|.*\bcontributed to this report\.?|"
    r"(?:Photo|Image|Picture)(?: credit)?:.*|.*(?:Getty Images|AFP|AP Photo|Reuters(?: Photo)?)"
    r"|Share|Tweet|Email|Print|Comments?)$",
    re.IGNORECASE,
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


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str
    paragraph: int
    is_heading: bool


def clean_article(article: Article, *, max_chars: int) -> tuple[str, list[str]]:
    """Cleaned text and a list of what was removed. Raises InputError on unusable input."""
    raw = _html_to_text(article.html) if article.html is not None else article.text or ""
    _reject_binary(raw)
    text, removed = _strip_junk(raw)
    if not text.strip():
        raise InputError("the article has no text", article_id=article.id)
    if len(text) > max_chars:
        raise InputError(
            f"the article has {len(text)} characters; the limit is {max_chars} "
            "(STANDPOINT_MAX_CHARS)",
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


def _strip_junk(raw: str) -> tuple[str, list[str]]:
    text = unicodedata.normalize("NFC", raw).replace("\r\n", "\n").replace("\r", "\n")
    removed: list[str] = []
    lines = []
    for line in text.split("\n"):
        removed += _JUNK_PHRASES.findall(line)
        kept = _JUNK_PHRASES.sub("", line)
        kept = re.sub(r"[ \t\u00a0]+", " ", kept).strip()
        if kept and (_JUNK_LINE.match(kept) or _SLUG_LINE.match(kept)):
            removed.append(kept)
            continue
        lines.append(kept)
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return cleaned, removed


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
        rest = line[i + 1 :]
        run = rest[: len(rest) - len(rest.lstrip('”’")'))]  # closers right after the stop
        inside = depth - run.count("”") > 0 or (straight_open and '"' not in run)
        if c in ".!?…" and _is_boundary(line, i, inside=inside):
            end = i + 1
            while end < len(line) and line[end] in '”’")':
                end += 1
            if end < len(line) and line[end] == " ":
                spans.append((start, end))
                start = end + 1
                depth, straight_open = 0, False
                i = end
        i += 1
    if start < len(line) and line[start:].strip():
        spans.append((start, len(line)))
    return spans


def _is_boundary(line: str, i: int, *, inside: bool) -> bool:
    after = line[i + 1 :].lstrip('”’")')
    if not after.startswith(" "):
        return False
    following = after.lstrip()
    if not following or not (
        following[0].isupper() or following[0] in _OPENERS + '"' or following[0].isdigit()
    ):
        return False
    if inside and len(line) < 2000:
        return False
    if line[i] == ".":
        word = re.search(r"([\w.]+)$", line[:i])
        if word:
            token = word.group(1).lower()
            if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                return False
    return True
