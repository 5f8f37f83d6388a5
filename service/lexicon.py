"""Every word list the rules use, in one place.

Grounding uses ``COMMON_CAPITALISED`` and ``NUMBER_WORDS``; the rule extractor
(``service.extraction``) uses the rest.
"""

from __future__ import annotations

import re

# Capitalised words that start sentences without naming anything.
COMMON_CAPITALISED = {
    "a",
    "an",
    "the",
    "he",
    "she",
    "it",
    "they",
    "we",
    "i",
    "you",
    "this",
    "that",
    "these",
    "those",
    "in",
    "on",
    "at",
    "but",
    "and",
    "or",
    "however",
    "meanwhile",
    "also",
    "after",
    "before",
    "while",
    "when",
    "according",
    "overall",
    "instead",
    "his",
    "her",
    "their",
    "its",
    "our",
    "as",
    "if",
    "for",
    "with",
    "by",
    "from",
    "to",
    "of",
    "so",
    "yet",
    "there",
    "here",
    "what",
    "who",
    "which",
    "where",
    "why",
    "how",
    "both",
    "all",
    "some",
    "many",
    "most",
    "no",
    "not",
    "one",
    "speaking",
    "ahead",
    "despite",
    "during",
    "since",
    "until",
    "under",
    "over",
    "about",
    "amid",
    "still",
    "then",
    "now",
    "earlier",
    "later",
    "last",
    "next",
    "mr",
    "mrs",
    "ms",
    "president",
    "minister",
}
# Numbers written as words, with their digits.
NUMBER_WORDS = {
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
}
# Verbs that report speech, as a regex alternation.
REPORTING = (
    r"said|says|say|stated|states|added|adds|told|tells|warned|warns|noted|notes|"
    r"reiterated|repeated|insisted|insists|demanded|demands|urged|urges|called|calls|"
    r"argued|argues|claimed|claims|declared|declares|stressed|stresses|wrote|writes|"
    r"asked|asks|ruled|rules|rejected|rejects|accused|accuses|suggested|suggests|"
    r"projected|alleged|alleging|announced|announces|acknowledged|confirmed|denied|"
    r"welcomed|welcomes|praised|criticized|criticised|proposed|proposes|offered"
)
# Cues for what a sentence states: a demand, or a position with its stance.
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
# Words of a title before a name ("Russian President", "top Kremlin aide").
TITLE_WORDS = {
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
NOT_ACTORS = COMMON_CAPITALISED | {
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
# Verbs, besides the reporting ones, after which a sentence's subject is looked for.
SUBJECT_CUES = r"wants?|refused|drove|set out|restated|underscored|accused"
