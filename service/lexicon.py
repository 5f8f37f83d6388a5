"""Every word list the rules use, in one place.

The lists are grouped by the question they answer:

- Is a capitalised word a name? ``FUNCTION_WORDS``, ``HONORIFICS``, ``CALENDAR_WORDS``,
  ``DEMONYMS`` and ``NEWS_AGENCIES`` are not; ``NOT_NAMES`` (for the faithfulness check)
  and ``NOT_ACTORS`` (for the extractor) combine them.
- Is a word part of a title ("former Russian President", "Kremlin spokesman")?
  ``ROLE_WORDS`` name an office, ``ROLE_QUALIFIERS`` narrow one; ``TITLE_WORDS`` is both.
- Does a verb say that someone speaks or holds a view? ``REPORTING_VERBS`` and
  ``REPORTING_PARTICIPLES`` (together ``SPEECH_VERBS``), ``STANCE_VERBS``.
- What does a sentence state? ``DEMAND_CUES``, ``OPPOSE_CUES``, ``SUPPORT_CUES``,
  ``CONDITIONAL_CUES`` and ``NEUTRAL_CUES``, each compiled from a tuple of phrases.
- ``NUMBER_WORDS`` spell out the numbers the faithfulness check compares.

Words are lower case and spelled out, every form a rule should match listed, so a list
reads as what it matches. Each word is in one base list; wider sets are unions of base
lists, never copies (``tests/test_lexicon.py`` checks). A word belongs here because it
means the same in any news article, never because one article needed it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType


def alternation(words: Iterable[str]) -> str:
    """A regex alternation of ``words`` taken literally, longest first, for embedding in a
    larger pattern; word boundaries are the caller's."""
    return "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))


def _cues(phrases: Iterable[str]) -> re.Pattern[str]:
    """Any of ``phrases`` as whole words, in any case."""
    return re.compile(rf"\b(?:{alternation(phrases)})\b", re.IGNORECASE)


# ---------------------------------------------------------------------------
# Capitalised words that are not names

# fmt: off
# Words that start sentences without naming anything: articles, pronouns, prepositions,
# conjunctions and adverbs.
FUNCTION_WORDS = frozenset((
    "a", "an", "the",
    "i", "you", "he", "she", "it", "we", "they",
    "his", "her", "its", "our", "their",
    "this", "that", "these", "those", "there", "here",
    "what", "who", "which", "where", "why", "how",
    "both", "all", "some", "many", "most", "no", "not", "one",
    "in", "on", "at", "as", "by", "for", "from", "of", "to", "with",
    "about", "after", "ahead", "amid", "before", "despite", "during", "over", "since",
    "under", "until",
    "and", "but", "or", "so", "yet", "if", "while", "when",
    "although", "though", "because",
    "according", "actually", "also", "earlier", "however", "instead", "last", "later",
    "maybe", "meanwhile", "next", "now", "only", "overall", "perhaps", "still", "then",
    "speaking",
))

# Forms of address before a name (matched without their full stop).
HONORIFICS = frozenset((
    "mr", "mrs", "ms", "dr",
))

# Days and months: capitalised, never an actor.
CALENDAR_WORDS = frozenset((
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
))

# Adjectives of nationality or region. On their own they name no one ("Russian officials
# said"); before a title they qualify it ("Russian President Vladimir Putin"); before a
# noun they can start a name ("European Commission").
DEMONYMS = frozenset((
    "afghan", "african", "american", "arab", "argentine", "armenian", "asian",
    "australian", "austrian", "azerbaijani", "belarusian", "belgian", "brazilian",
    "british", "bulgarian", "canadian", "chinese", "colombian", "croatian", "cuban",
    "czech", "danish", "dutch", "egyptian", "emirati", "english", "estonian",
    "ethiopian", "european", "filipino", "finnish", "french", "georgian", "german",
    "greek", "hungarian", "indian", "indonesian", "iranian", "iraqi", "irish", "israeli",
    "italian", "japanese", "jordanian", "kazakh", "kenyan", "korean", "kurdish",
    "latvian", "lebanese", "libyan", "lithuanian", "mexican", "moldovan", "nigerian",
    "norwegian", "pakistani", "palestinian", "polish", "portuguese", "qatari", "romanian",
    "russian", "saudi", "scottish", "serbian", "slovak", "spanish", "sudanese", "swedish",
    "swiss", "syrian", "taiwanese", "thai", "turkish", "ukrainian", "venezuelan",
    "vietnamese", "welsh", "western", "yemeni",
))

# News agencies report what actors say; they are never the actor.
NEWS_AGENCIES = frozenset((
    "reuters", "ap", "afp", "associated press", "agence france-presse", "bloomberg",
    "dpa", "efe", "ansa", "kyodo", "yonhap", "xinhua", "tass", "ria", "ria novosti",
    "interfax", "ukrinform", "unian", "anadolu", "pti",
))


# ---------------------------------------------------------------------------
# Titles

# Nouns that name an office or a function. A description must contain one of these to
# stand for a person ("the Kremlin spokesman", but not "the Kremlin").
ROLE_WORDS = frozenset((
    "president", "premier", "chancellor", "minister", "secretary", "commissioner",
    "governor", "mayor", "senator", "lawmaker", "ambassador", "envoy", "negotiator",
    "diplomat", "spokesman", "spokeswoman", "spokesperson", "aide", "adviser", "advisor",
    "official", "leader", "chief", "head", "chairman", "chairwoman", "chair", "director",
    "general", "commander", "king", "queen", "prince",
))

# Words that narrow an office ("prime", "foreign", "deputy"); part of a title only
# together with a role word.
ROLE_QUALIFIERS = frozenset((
    "prime", "vice", "deputy", "acting", "former", "senior", "top", "special", "first",
    "executive", "state", "foreign", "defence", "defense", "interior", "finance",
    "economy", "trade", "health", "justice", "security",
))
# fmt: on

# Any word of a title before a name.
TITLE_WORDS = ROLE_WORDS | ROLE_QUALIFIERS | HONORIFICS

# Capitalised words that name nothing, for the faithfulness check: a title word is not an
# entity (the name after it is checked).
NOT_NAMES = FUNCTION_WORDS | HONORIFICS | ROLE_WORDS


# ---------------------------------------------------------------------------
# Verbs

# fmt: off
# Verbs that report speech, in the forms that follow a subject or come between a
# quotation and its speaker ("Putin said", "officials say", "“...,” said Putin"). Base
# forms other than "say" are left out: most are also nouns ("state", "call", "offer").
REPORTING_VERBS = frozenset((
    "say", "says", "said",
    "states", "stated",
    "adds", "added",
    "tells", "told",
    "warns", "warned",
    "notes", "noted",
    "reiterates", "reiterated",
    "repeats", "repeated",
    "insists", "insisted",
    "demands", "demanded",
    "urges", "urged",
    "calls", "called",
    "argues", "argued",
    "claims", "claimed",
    "declares", "declared",
    "stresses", "stressed",
    "emphasises", "emphasised",
    "emphasizes", "emphasized",
    "explains", "explained",
    "writes", "wrote",
    "asks", "asked",
    "replies", "replied",
    "rules", "ruled",
    "rejects", "rejected",
    "accuses", "accused",
    "alleges", "alleged",
    "suggests", "suggested",
    "announces", "announced",
    "acknowledges", "acknowledged",
    "admits", "admitted",
    "concedes", "conceded",
    "confirms", "confirmed",
    "denies", "denied",
    "welcomes", "welcomed",
    "praises", "praised",
    "criticises", "criticised",
    "criticizes", "criticized",
    "proposes", "proposed",
    "offered",
))

# Their -ing forms, which attribute a clause to the sentence's subject ("Putin dismissed
# the plan, saying ..."). Those that are mostly nouns ("warning", "ruling") are left out.
REPORTING_PARTICIPLES = frozenset((
    "saying", "stating", "adding", "telling", "noting", "reiterating", "repeating",
    "insisting", "demanding", "urging", "calling", "arguing", "claiming", "declaring",
    "stressing", "emphasising", "emphasizing", "explaining", "asking", "replying",
    "rejecting", "accusing", "alleging", "suggesting", "announcing", "acknowledging",
    "admitting", "conceding", "confirming", "denying", "welcoming", "praising",
    "criticising", "criticizing", "proposing",
))

# Verbs that state a stance without reporting speech ("Ottawa wants ...", "the minister
# refused to ..."): after a name, they say whose stance a sentence gives.
STANCE_VERBS = frozenset((
    "want", "wants", "wanted",
    "refuse", "refuses", "refused",
    "declines", "declined",
    "oppose", "opposes", "opposed",
    "supports", "supported",
    "backs", "backed",
    "agree", "agrees", "agreed",
    "vows", "vowed",
    "pledges", "pledged",
    "promises", "promised",
    "threatens", "threatened",
))
# fmt: on

# Every form that reports speech.
SPEECH_VERBS = REPORTING_VERBS | REPORTING_PARTICIPLES

# Capitalised words that are never an actor on their own: besides NOT_NAMES, days and
# months, demonyms, news agencies, and reporting verbs opening a sentence ("Asked about
# the plan, ...").
NOT_ACTORS = NOT_NAMES | CALENDAR_WORDS | DEMONYMS | NEWS_AGENCIES | SPEECH_VERBS


# ---------------------------------------------------------------------------
# What a sentence states

# fmt: off
# A demand: someone wants someone else to act.
DEMAND_PHRASES = (
    "demand", "demands", "demanded", "demanding",
    "insist", "insists", "insisted", "insisting",
    "call for", "calls for", "called for", "calling for",
    "call on", "calls on", "called on", "calling on",
    "urge", "urges", "urged", "urging",
    "press for", "presses for", "pressed for", "pressing for",
    "require", "requires", "required", "requiring",
    "want", "wants", "wanted",
    "must", "condition", "conditions", "ultimatum",
)
DEMAND_CUES = _cues(DEMAND_PHRASES)

# A position against something.
OPPOSE_PHRASES = (
    "reject", "rejects", "rejected", "rejecting",
    "oppose", "opposes", "opposed", "opposing",
    "refuse", "refuses", "refused", "refusing",
    "rule out", "rules out", "ruled out", "ruling out",
    "deny", "denies", "denied",
    "accuse", "accuses", "accused", "accusing",
    "criticise", "criticises", "criticised", "criticising",
    "criticize", "criticizes", "criticized", "criticizing",
    "lack legitimacy", "lacks legitimacy", "lacked legitimacy",
    "won’t", "won't", "will not", "never", "no trust",
    "pointless", "illegal", "unacceptable", "fake",
)
OPPOSE_CUES = _cues(OPPOSE_PHRASES)

# A position for something.
SUPPORT_PHRASES = (
    "welcome", "welcomes", "welcomed", "welcoming",
    "support", "supports", "supported", "supporting",
    "backs", "backed", "backing",
    "agree", "agrees", "agreed", "agreeing",
    "praise", "praises", "praised", "praising",
    "commit to", "commits to", "committed to", "committing to",
    "take into account", "takes into account", "took into account", "taken into account",
    "taking into account",
    "ready", "willing", "open to", "prepared to",
    "hopeful", "optimistic", "positive", "constructive", "progress", "basis",
)
SUPPORT_CUES = _cues(SUPPORT_PHRASES)

# Words that open a condition ("only if Israel withdraws"): they make a position
# conditional, and the clause they open is a demand's conditions.
CONDITION_PHRASES = (
    "if", "only if", "only when", "only after", "unless", "provided", "provided that",
    "as long as", "on condition", "on condition that", "until", "before any",
    "in exchange for",
)
CONDITIONAL_CUES = _cues(CONDITION_PHRASES)

# Saying that one will not say: a neutral position.
NEUTRAL_PHRASES = (
    "neither confirm nor deny", "neither confirms nor denies", "neither confirmed nor denied",
    "decline to comment", "declines to comment", "declined to comment",
    "refused to comment", "would not comment", "would not say", "no comment",
)
NEUTRAL_CUES = _cues(NEUTRAL_PHRASES)
# fmt: on


# ---------------------------------------------------------------------------
# Claims the article does not stand behind: false, fabricated, denied, alleged by others

# fmt: off
# "falsely claimed that ...": an adverb of falsity before a verb of saying or showing.
FALSITY_ADVERBS = (
    "falsely", "wrongly", "erroneously", "baselessly", "incorrectly", "mistakenly",
    "fraudulently", "spuriously", "inaccurately", "without evidence",
)
CLAIM_VERBS = (
    "claim", "claims", "claimed", "claiming", "say", "says", "said", "saying",
    "state", "states", "stated", "stating", "report", "reports", "reported", "reporting",
    "suggest", "suggests", "suggested", "suggesting", "assert", "asserts", "asserted",
    "allege", "alleges", "alleged", "alleging", "attribute", "attributes", "attributed",
    "attributing", "quote", "quotes", "quoted", "quoting", "portray", "portrays", "portrayed",
    "portraying", "depict", "depicts", "depicted", "depicting", "show", "shows", "showed",
    "shown", "showing", "imply", "implies", "implied", "implying", "credit", "credits",
    "credited", "crediting",
)
# "a doctored video (appears to show) ...": a word of falsity before what carries a claim.
FALSITY_WORDS = (
    "false", "fake", "fabricated", "bogus", "doctored", "manipulated", "altered", "forged",
    "phony", "phoney", "made-up", "invented", "debunked", "discredited", "unfounded",
    "baseless", "unsubstantiated", "spurious", "hoax", "satirical", "misattributed",
    "fraudulent", "unverified",
)
CLAIM_CARRIERS = (
    "claim", "claims", "report", "reports", "rumour", "rumours", "rumor", "rumors", "story",
    "stories", "quote", "quotes", "quotation", "quotations", "statement", "statements", "post",
    "posts", "video", "videos", "image", "images", "photo", "photos", "picture", "pictures",
    "clip", "clips", "screenshot", "screenshots", "tweet", "tweets", "letter", "letters",
    "account", "accounts", "allegation", "allegations", "assertion", "assertions", "message",
    "messages", "article", "articles", "headline", "headlines", "meme", "memes", "document",
    "documents", "recording", "recordings", "audio",
)
# "a hoax claiming that ...": a claim named as false, then what it says.
FALSITY_NOUNS = (
    "hoax", "hoaxes", "fabrication", "fabrications", "forgery", "forgeries", "fake", "fakes",
    "disinformation", "misinformation", "rumour", "rumours", "rumor", "rumors", "allegation",
    "allegations", "conspiracy theory", "conspiracy theories",
)
# "police alleged that ...": what others say someone did. ("X accused Y of ..." is X's
# position, and often of a fact: it is not here.)
ALLEGING_VERBS = ("allege", "alleges", "alleged", "alleging")
# "X allegedly demanded ...": the clause's own subject is the one the claim is about.
HEDGES = ("allegedly", "purportedly", "supposedly")
# "X denied demanding ...", "X never demanded ...": the subject denies the claim.
DENIALS = ("denied", "denies", "deny", "denying")
NEGATIONS = (
    "never", "did not", "didn't", "has not", "hasn't", "have not", "haven't", "had not",
    "does not", "doesn't",
)
# "The claim that X demanded ... was false": the claim comes first.
PROVEN_FALSE = (
    "false", "fake", "fabricated", "a hoax", "doctored", "debunked", "untrue", "not true",
    "bogus", "invented", "a fabrication", "a forgery", "misattributed", "baseless",
    "unfounded", "a lie",
)
# fmt: on


# ---------------------------------------------------------------------------
# Numbers

# Numbers written as words, with their digits, so "three envoys" supports "3 envoys".
NUMBER_WORDS: Mapping[str, str] = MappingProxyType(
    {
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
)


# ---------------------------------------------------------------------------
# Briefings (service.briefing): which names stand for one country or body across
# articles, which words tie a person to one, and which words are not content.
# ---------------------------------------------------------------------------
# Names that stand for a country or body, and the words that tie a person to one.
GROUPS: dict[str, tuple[str, ...]] = {
    "Russia": ("russia", "moscow", "kremlin", "russian government", "russian side"),
    "Ukraine": ("ukraine", "kyiv", "kiev", "ukrainian government", "ukrainian side"),
    "United States": (
        "us",
        "u.s.",
        "usa",
        "united states",
        "washington",
        "white house",
        "trump administration",
        "american side",
    ),
    "European Union": (
        "eu",
        "european union",
        "brussels",
        "bloc",
        "european commission",
        "commission",
    ),
    "United Kingdom": (
        "uk",
        "britain",
        "united kingdom",
        "london",
        "downing street",
        "number 10",
        "no 10",
        "uk government",
        "british government",
    ),
    "China": ("china", "beijing"),
}
AFFILIATIONS = {
    "Russia": r"russia(?:n|'s)?|kremlin|moscow(?:'s)?",
    "Ukraine": r"ukrain(?:e|ian|e's)|kyiv(?:'s)?",
    "United States": r"u\.s\.|us|american|washington(?:'s)?",
    "European Union": r"eu|european commission|european union|brussels",
    "United Kingdom": r"uk|british|britain(?:'s)?",
    "China": r"china(?:'s)?|chinese|beijing(?:'s)?",
    "Ireland": r"irish|ireland(?:'s)?",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


PERSON_TITLE_WORDS = _words(
    "president vice prime minister secretary envoy spokesperson spokesman spokeswoman aide "
    "chief negotiator leader head deputy special foreign defence defense top senior former "
    "general ambassador adviser advisor chancellor official press state of lord sir mr mrs "
    "ms dr taoiseach premier commissioner mayor governor senator chairman chairwoman chair "
    "ceo director commander speaker judge justice professor king queen"
)
# Words that make a capitalised name an institution or a place, not a person.
INSTITUTION_WORDS = _words(
    "service services union commission council ministry party states kingdom sea agency "
    "government department office court bank group company corporation association "
    "committee parliament congress senate forces army navy news press league federation "
    "organisation organization institute university center centre studies trade "
    "international industry fund trust board administration delegation conference summit "
    "talks agreement deal"
)
STOPWORDS = _words(
    "the a an and or but of to in on at for with by from as that this these those is are "
    "was were be been being it its their there they them he she his her we our you your i "
    "not no any all some would could should will can may might must has have had do does "
    "did said says say also than then into about over after before only just more most such "
    "which who whom what when where while very"
)
