"""Instruction-like text in articles: text addressed to a model or an editor, not the reader.

Instruction-like sentences (``find_instructions``) are set aside when an article is prepared
(``service.pipeline``): no stage sees them, and they never become summary sentences or items.
A sentence is instruction-like when it addresses a model or an editor rather than the reader:

- chat-template markers (``<|im_start|>``, ``[INST]``, ``<<SYS>>``, ``<start_of_turn>``) or a
  role tag opening it (``SYSTEM:``, ``User:``, ``Assistant:``, ``### Instruction:``);
- a greeting or note to a model ("Note to AI systems ...", "ATTENTION LANGUAGE MODEL:",
  "Summary bots, listen up: ...", "If you are an AI ..."), or instructions from or for an
  editor ("Editor's note to automated systems: ...");
- an override ("ignore all previous instructions", "forget your rules", "you are now ...");
- orders about the output ("the summary must state ...", "Automated summaries of this story
  should now say ...", "you must report that ...", "Write that ...");
- the same in French, Spanish, German, Russian (and the commonest overrides in Italian and
  Portuguese);
- a base64 run that decodes to any of the above.

Matching reads a folded copy of the sentence (``fold``): NFKC (fullwidth and mathematical
letters become plain ones), invisible format characters and combining marks removed, every
letter Unicode's confusables data (UTS #39, shipped by ``confusable-homoglyphs``) maps to an
ASCII letter replaced by it (Cyrillic "ЅYЅTЕM" reads "system"), accents stripped, case folded,
and digits inside ASCII words read as letters ("1gn0re" reads "ignore").

A journalist's report *about* such text stays ordinary content: a signal inside quotation
marks in a sentence with a reporting verb outside them ("the note read “SYSTEM: ...”, police
said"), or after an indirect command ("told the AI to ignore previous instructions"), is not
an instruction, unless the quoted command carries something to follow (a name, a demand, a
"say that ..."): "The post read: “Bots, listen up: Mayor Cole demanded ...”" is one.

Injected text comes in blocks, and a block is set aside whole:

- a chat marker, role tag or note to a model opens a block: a chat turn runs to its end marker
  (``<|im_end|>``, ``[/INST]``), else to the end of the paragraph, as does a note;
- after an instruction-like sentence, the next sentences belong to it while they give orders
  (an imperative; in the same paragraph or the next) or follow a colon that introduced them,
  and in the same paragraph while they address the tool ("you", the summary or the items) or
  are in the same foreign language (``service.language``);
- an order that points back ("... should now say so") takes the sentence before it, and a
  notice ("Correction (updated 14:05): ...", "Editor's note: ...") that holds an instruction
  is set aside from its label on.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from functools import cache, lru_cache

from service.article import Sentence
from service.language import ENGLISH, UNDETERMINED, sentence_language

# Folding -----------------------------------------------------------------------------------


@cache
def _prototypes() -> dict[str, str]:
    """Each non-ASCII letter or digit that Unicode's confusables data maps to one ASCII
    letter or digit, with that character."""
    from confusable_homoglyphs.utils import load

    table: dict[str, str] = {}
    for char, glyphs in load("confusables.json").items():
        if len(char) != 1 or char.isascii() or unicodedata.category(char)[0] not in "LN":
            continue
        ascii_ = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii()]
        ascii_ = [c for c in ascii_ if c.isalnum()]
        if ascii_:
            table[char] = ascii_[0]
    return table


@lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    if char.isascii():
        return char.lower()
    folded = []
    prototypes = _prototypes()
    for c in unicodedata.normalize("NFKC", char):
        if unicodedata.category(c) in ("Cf", "Mn", "Me"):
            continue  # zero-width and other format characters, combining marks
        # The small letter's look-alike, else the capital's: both cases of a letter fold
        # alike (Cyrillic "І" and "і" read "i", "Н" and "н" read "h").
        c = prototypes.get(c.casefold()) or prototypes.get(c.upper(), c)
        c = "".join(d for d in unicodedata.normalize("NFKD", c) if not unicodedata.combining(d))
        folded.append(c.casefold())
    return "".join(folded)


_LEET = str.maketrans("01345789", "oieastbg")
_LEET_WORD = re.compile(r"\b(?=[a-z]*[0-9])(?=[0-9]*[a-z])[a-z0-9]+\b")


def fold(text: str) -> tuple[str, list[int]]:
    """``text`` as the patterns read it, and for each folded character the offset in
    ``text`` of the character it comes from."""
    if text.isascii():
        folded, origin = text.lower(), list(range(len(text)))
    else:
        pieces: list[str] = []
        origin = []
        for i, char in enumerate(text):
            piece = _fold_char(char)
            pieces.append(piece)
            origin += [i] * len(piece)
        folded = "".join(pieces)
    folded = _LEET_WORD.sub(lambda m: m.group().translate(_LEET), folded)
    return folded, origin


def _foreign(pattern: str) -> str:
    """A pattern written in a non-Latin script, folded the way the text is."""
    return "".join(c if c.isascii() else _fold_char(c) for c in pattern)


# Signals (on folded text: lower case, no accents) ------------------------------------------

_OPENS_TURN = (
    r"<\|im_start\|>|<\|start_header_id\|>|<\|(?:system|user|assistant)\|>|\[INST\]|<start_of_turn>"
)
_ENDS_TURN = r"<\|im_end\|>|<\|eot_id\|>|<\|end\|>|<\|endoftext\|>|\[/INST\]|<end_of_turn>"
CHAT_MARKER = re.compile(
    rf"{_OPENS_TURN}|{_ENDS_TURN}|<\|[a-z_]{{2,30}}\|>|<</?SYS>>|\[/?INST\]"
    r"|</?(?:system|system_prompt|instructions?|prompt|assistant|user|developer|admin)>"
    r"|\b(?:begin|end) (?:of )?(?:the )?(?:new |hidden |secret )?system (?:prompt|instructions?)\b",
    re.IGNORECASE,
)
# Where an order can stand: at the start of the sentence or of a quotation in it.
_START = r"(?:^|(?<=[“\"«‘]))"
_ROLE_TAG = re.compile(
    _START
    + r"\W{0,3}(?:system|assistant|user|human|developer|ai|bot|systeme|sistema|"
    + _foreign("система")
    + r")\s*:"
    r"|^#{2,4}\s*(?:instruction|system|response|input|human|assistant)\b",
    re.IGNORECASE,
)
# Machines addressed by what they are or do: "automated systems", "summary bots", "AI tools".
_MACHINE = (
    r"(?:(?:automated|automatic|machine|ai|a\.i\.|robot|computer|language|summary|news|llm)"
    r"[- ](?:summar\w*|systems?|tools?|agents?|readers?|assistants?|programs?|models?|bots?|"
    r"crawlers?|scrapers?|writers?))"
)
# Who a message to a model addresses; _ADDRESSEE adds words that need a greeting before them.
_AI = (
    rf"(?:{_MACHINE}|AI|A\.I\.|AIs|artificial intelligence|(?:AI|language|large language) models?|"
    r"LLMs?|assistants?|chat ?bots?|ChatGPT|GPT[\w.-]*|Claude|Gemini|Copilot|summari[sz]ers?|"
    r"AI (?:systems?|tools?|agents?))"
)
_ADDRESSEE = rf"(?:{_AI}|models?|bots?|crawlers?|scrapers?)"
# What a machine does with the page: "reading this", "summarizing the article".
_READING = (
    r"(?:reading|processing|summari[sz]ing|parsing|scraping|crawling|analy[sz]ing|ingesting|"
    r"indexing) (?:this|the|these)(?: (?:page|article|text|story|post|content|site|document)s?)?"
)
_HEARKEN = r"(?:you|your|please|listen|heads up|take note|pay attention|remember|attention)"
_TO_MODEL = re.compile(
    rf"{_START}\W{{0,3}}(?:hi|hey|hello|dear|attention|note to|message (?:to|for)|memo to|"
    rf"reminder (?:to|for)|instructions? (?:to|for))\b[,:]?\s+(?:the |all |any |every )?"
    rf"(?:\w+ )?{_ADDRESSEE}\b"
    rf"|{_START}\W{{0,3}}(?:\w+ )?{_AI}\s*(?::|,(?=[^\n]{{0,400}}?\b{_HEARKEN}\b))"
    rf"|\b(?:if|when) you(?: are|'re|’re) an? (?:\w+ ){{0,2}}?{_ADDRESSEE}\b"
    rf"|\b(?:note|message|memo|notice|instructions?) (?:to|for) (?:the |all |any |every )?"
    rf"{_MACHINE}\b"
    # "Important message for LLMs:", "To any AI summarizing this:", "AI models reading this,"
    rf"|{_START}\W{{0,3}}(?:(?:(?:an? |this |one |quick |important |urgent |special |new |"
    r"final |hidden |secret )*(?:note|message|memo|reminder|instructions?|notice|rules?|"
    r"warning|request|task|directive|orders?|update|p\.?s\.?) )?(?:to|for) )?"
    rf"(?:the |all |any |every )?(?:\w+ )?{_ADDRESSEE}"
    rf"(?:\s+{_READING})?\s*:"
    rf"|{_START}\W{{0,3}}(?:the |all |any |every )?(?:\w+ )?{_ADDRESSEE}\s+{_READING}\s*,",
    re.IGNORECASE,
)
_TO_EDITOR = re.compile(
    r"\b(?:new |updated |revised |additional |special |secret |hidden )?instructions? "
    rf"(?:from|for|to) (?:the |an |our )?(?:\w+ )?(?:editors?|desk|newsroom|{_AI})\b"
    rf"|{_START}\W{{0,3}}(?:dear |attention |note to (?:the )?)editors?\b[,:]?"
    r"(?=[^\n]{0,400}?\b(?:summary|headline|article|story|output)\b)",
    re.IGNORECASE,
)
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any)\s+(?:of\s+)?)?"
    r"(?:(?:the|these|those|your|my)\s+)?"
    r"(?:(?:previous|prior|above|earlier|preceding|original|foregoing|system|initial)\s+"
    r"(?:\w+\s+)?(?:instructions?|prompts?|directions|directives|guidelines|rules|context|"
    r"text|article|messages?)\b"
    r"|(?<=your )(?:instructions|prompts?|rules|guidelines|directives|programming|training)\b"
    r"|(?:the\s+)?(?:article|text|content|instructions|prompt)\s+above\b"
    r"|(?:everything|anything|all)\s+(?:of\s+the\s+|that\s+is\s+|written\s+)?above\b"
    r"|the\s+above\b)"
    r"|\b(?:pay no attention to|do not follow|don't follow|stop following)\s+"
    r"(?:(?:all|any)\s+(?:of\s+)?)?(?:(?:the|these|those|your|my)\s+)?"
    r"(?:previous|prior|above|earlier|preceding|original|system|initial)\s+"
    r"(?:\w+\s+)?(?:instructions?|prompts?|directions|directives|guidelines|rules)\b"
    r"|\byou are now\b|\bfrom now on,? you\b|\byour (?:new|real|true) (?:task|role|job|"
    r"instructions?)\b|\b(?:you (?:must |should |will )?pretend|pretend you are)\b",
    re.IGNORECASE,
)
_OUTPUT = (
    r"(?:output|write|say|state|report|print|return|respond|reply|include|add|list|mention|"
    r"attribute|summari[sz]e|extract|claim|insert|append|describe|name|credit)"
)
_PRODUCT = r"(?:summary|summaries|output|answer|response|reply|extraction|json|headline)s?"
_ORDERS = re.compile(
    rf"\b(?:the|your|this|any|all|automated|automatic|ai|machine|generated|ai-generated) "
    rf"{_PRODUCT}(?: (?:of|for|about|on) (?:this|the) (?:story|article|page|report|text))? "
    r"(?:must|should|shall|will|needs? to|has to|is to|are to) (?:also |now |only |instead )*"
    r"(?:state|say|include|mention|read|contain|list|report|claim|attribute|name|show|begin|"
    r"start|end|note|credit|lead)\b"
    rf"|\byou (?:must|should|shall|will|need to|have to|are (?:required |instructed )?to) "
    rf"(?:now |also |instead |only )?(?:{_OUTPUT}|ignore|disregard|forget|pretend|follow|"
    r"obey|comply)\b"
    r"(?!\s*[,.;?!])"
    rf"|{_START}\W{{0,3}}(?:please |now |also |instead )?{_OUTPUT} "
    r"(?:that|only|exactly|the following|this|[:\"“'‘])"
    rf"|\b(?:when|while|before|after) (?:you )?(?:summari[sz]|extract|process|read|analy[sz]|"
    rf"rewrit|translat)\w* (?:this|the) (?:article|page|text|story|document|content)\b"
    rf"(?=[^\n]{{0,400}}?\b(?:you|say|state|write|output|report|mention|include)\b)",
    re.IGNORECASE,
)
# The same in other languages, on folded text (no accents, lower case). An override needs an
# imperative and the instructions' own words ("ignorez les consignes précédentes"), so a
# report that protesters ignored the police's instructions is not one.
_FOREIGN_AI = (
    r"(?:l'|la |le |les |el |los |las |die |den |alle |all |any |tout |toute |toutes |tous |"
    r"cualquier |jede[nrs]? )?"
    r"(?:ia|ki|intelligence artificielle|inteligencia artificial|kunstliche intelligenz|"
    r"assistants?|asistentes?|assistenten|chatbots?|bots?|robots?|"
    r"modeles? de langage|modelos? de lenguaje|sprachmodelle?|"
    r"(?:ki|ia)-(?:systeme?|modelle?|tools?)|"
    r"systemes? (?:d'ia|automatiques?|automatises?)|"
    r"sistemas? (?:de ia|automaticos?|automatizados?)|"
    r"outils? (?:d'ia|automatiques?)|herramientas? de ia|automatische systeme|resumeurs?)"
)
_FOREIGN_ADDRESS = re.compile(
    r"\b(?:instructions?|consignes?|note|message|avis|instrucciones|nota|mensaje|aviso|"
    r"anweisungen?|hinweis|nachricht|notiz|instruktionen?)\s*(?:pour|a|aux|para|fur|an)\s+"
    rf"{_FOREIGN_AI}\b"
    r"|\bsi (?:vous etes|tu es|eres) (?:une? |l')?(?:ia|intelligence artificielle|"
    r"inteligencia artificial|assistant|asistente|modele|modelo|robot|bot|chatbot)\b"
    r"|\bwenn du (?:eine? )?(?:ki|sprachmodell|chatbot|assistent|bot) bist\b"
    + _foreign(
        r"|\b(?:инструкци[яи]|указани[ея]|сообщение|примечание|записка)\s+(?:для|к)\s+"
        r"(?:ии|искусственного интеллекта|нейросет\w*|языков\w* модел\w*|чат-бот\w*|бот\w*|"
        r"ассистент\w*)"
        r"|\bесли ты\s+(?:ии|нейросеть|языковая модель|чат-бот|бот|ассистент)"
    ),
    re.IGNORECASE,
)
_FOREIGN_OVERRIDE = re.compile(
    # French
    r"\b(?:ignorez|ignore|oubliez|oublie|ne tenez pas compte des?)\s+(?:toutes |tous )?"
    r"(?:(?:vos|tes) (?:\w+ )?(?:consignes|instructions|regles|directives)"
    r"|(?:les |ces )?(?:consignes|instructions|regles|directives) (?:precedentes|anterieures|"
    r"ci-dessus|initiales|d'origine|du systeme))"
    # Spanish
    r"|\b(?:ignora|ignore|ignoren|ignorad|olvida|olvide|olviden|olvidad)\s+(?:todas )?"
    r"(?:(?:tus|sus) (?:\w+ )?(?:instrucciones|indicaciones|reglas|ordenes)"
    r"|(?:las )?(?:instrucciones|indicaciones|reglas|ordenes) (?:anteriores|previas|de arriba|"
    r"originales|del sistema))"
    # German
    r"|\b(?:ignoriere|ignorier|ignoriert|ignorieren sie|vergiss|vergesst|vergessen sie|"
    r"missachte)\s+(?:alle )?(?:(?:deine|eure) (?:\w+ )?(?:anweisungen|instruktionen|regeln|"
    r"vorgaben)|(?:die )?(?:vorherigen|bisherigen|obigen|fruheren|vorigen) (?:anweisungen|"
    r"instruktionen|regeln|vorgaben))"
    # Italian, Portuguese
    r"|\b(?:ignora|dimentica|ignore|esqueca)\s+(?:tutte le |todas as )?(?:istruzioni|"
    r"indicazioni|instrucoes|regras) (?:precedenti|anteriores|acima)"
    # Russian
    + _foreign(
        r"|\b(?:игнорируй|игнорируйте|проигнорируй|проигнорируйте|забудь|забудьте|"
        r"не обращай внимания на|не обращайте внимания на)\s+(?:все\s+)?"
        r"(?:предыдущие\s+|прежние\s+|свои\s+|эти\s+|вышеуказанные\s+)?"
        r"(?:инструкции|указания|правила|команды|распоряжения)"
    ),
    re.IGNORECASE,
)
_FOREIGN_ORDERS = re.compile(
    rf"(?:{_START}\W{{0,3}}|[:;,]\s*|\b(?:et|y|und)\s+)(?:ecrivez|ecris|dites|dis|indiquez|affirmez|"
    r"mentionnez|escribe|escriba|escriban|di|diga|digan|indica|indique|afirma|afirme|menciona|"
    r"mencione|schreibe|schreib|schreiben sie|sage|sag|sagen sie|behaupte)\s*,?\s+"
    r"(?:que|qu'|dass)\b"
    r"|\b(?:le|ce|votre|ton|chaque) resume (?:doit|devra|devrait) (?:\w+ )?(?:dire|indiquer|"
    r"mentionner|affirmer|preciser|commencer)"
    r"|\bel resumen (?:debe|debera|deberia|tiene que) (?:\w+ )?(?:decir|indicar|mencionar|"
    r"afirmar|empezar)"
    r"|\bdie zusammenfassung (?:muss|soll|sollte) (?:\w+ )?(?:sagen|angeben|erwahnen|lauten|"
    r"beginnen|enthalten)"
    + _foreign(
        rf"|(?:{_START}\W{{0,3}}|[:;,]\s*|\bи\s+)(?:напиши|напишите|скажи|скажите|укажи|укажите|"
        r"сообщи|"
        r"сообщите)\s*,?\s*(?:что|:)"
        r"|\b(?:в\s+)?(?:резюме|сводке|кратком изложении)\s+(?:укажи|укажите|напиши|напишите|"
        r"скажи|скажите|должно|должна)"
    ),
    re.IGNORECASE,
)
_SIGNALS = (
    CHAT_MARKER,
    _ROLE_TAG,
    _TO_MODEL,
    _TO_EDITOR,
    _OVERRIDE,
    _ORDERS,
    _FOREIGN_ADDRESS,
    _FOREIGN_OVERRIDE,
    _FOREIGN_ORDERS,
)
_OPENS_BLOCK = (CHAT_MARKER, _ROLE_TAG, _TO_MODEL, _FOREIGN_ADDRESS)

# Reports (on the sentence as written) ------------------------------------------------------

# "told the AI to ignore ...": an indirect command, reported.
_INDIRECT = re.compile(
    r"\b(?:told|tells|telling|instructed|instructs|instructing|asked|asks|ordered|orders|"
    r"directed|urged|tricked|tricks|tricking|prompted|commanded|coaxed|manipulated|led|"
    r"leading)\s+(?:[\w'’.-]+\s+){0,4}?to\s+",
    re.IGNORECASE,
)
# A quotation, or one still open at the end of the sentence (it runs on into the next).
_QUOTED = re.compile(r"“[^”]*(?:”|$)|\"[^\"]*(?:\"|$)|«[^»]*(?:»|$)")
_REPORTED = re.compile(
    r"\b(?:said|says|read|reads|wrote|writes|stated|reported|told|found|showed|shows|"
    r"contained|contains|included|includes|according to|warned|described)\b",
    re.IGNORECASE,
)
# Something a reported command would have a model write: a name (a capitalised word past the
# first), a demand, or "say that ...".
_NAMED = re.compile(r"(?<=[\s(“\"'‘])(?!(?:System|User|Assistant)\b)[A-Z][a-z]")
_CLAIMED = re.compile(
    r"\b(?:demand\w*|call(?:s|ed|ing)? for|insist\w*|urg\w+|resign\w*|support\w*|oppos\w+)\b"
    rf"|\b{_OUTPUT}\w*\s+(?:that|the following)\b",
    re.IGNORECASE,
)
_BASE64 = re.compile(r"(?<![\w+/])[A-Za-z0-9+/]{24,}={0,2}(?![\w+/=])")


def is_instruction(sentence: str) -> bool:
    """Whether a sentence addresses a model or an editor (and does not just report that
    some text did)."""
    return _signal(sentence) is not None


def _signal(sentence: str) -> tuple[re.Pattern[str], int, int] | None:
    """The first signal that makes a sentence instruction-like: its pattern and where it
    matched in ``sentence``."""
    folded, origin = fold(sentence)
    if not folded:
        return None
    origin.append(len(sentence))
    quoted: list[tuple[int, int]] | None = None
    for pattern in _SIGNALS:
        for match in pattern.finditer(folded):
            start, end = origin[match.start()], origin[match.end()]
            if quoted is None:  # how the sentence reports, read once it has a signal
                quoted = [m.span() for m in _QUOTED.finditer(sentence)]
                reported = bool(_REPORTED.search(_QUOTED.sub(" ", sentence)))
                frames = [m.end() for m in _INDIRECT.finditer(sentence)]
            quote = next(((a, b) for a, b in quoted if a <= start < b), None)
            frame = next((f for f in frames if f <= start), None)
            if quote and reported and not _carries(sentence[end : quote[1]]):
                continue  # a report of what some text said
            if frame is not None and not _carries(re.split(r"[,;.]", sentence[end:])[0]):
                continue  # a report of what someone told a model to do
            return pattern, start, end
    return _hidden(sentence)


def _carries(command: str) -> bool:
    """Whether a reported command has something for a model to write."""
    return bool(_NAMED.search(" " + command) or _CLAIMED.search(command))


def _hidden(sentence: str) -> tuple[re.Pattern[str], int, int] | None:
    """An instruction encoded in a base64 run of the sentence."""
    for match in _BASE64.finditer(sentence):
        run = match.group()
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        if decoded.isprintable() and " " in decoded and _signal(decoded) is not None:
            return _BASE64, match.start(), match.end()
    return None


# Blocks ------------------------------------------------------------------------------------

_IMPERATIVE = re.compile(
    r"^\W{0,3}(?:(?:please|now|also|then|and|instead|just|so)\W+)?"
    r"(?:add|output|write|say|state|report|print|return|respond|reply|include|list|mention|"
    r"attribute|summari[sz]e|extract|claim|insert|append|describe|name|credit|make|put|use|"
    r"treat|replace|remove|drop|skip|omit|lead|open|begin|start|end|finish|conclude|rewrite|"
    r"translate|answer|tag|label|mark|set|fill|follow|obey|comply|pretend|act|assume|consider|"
    r"tell|show|give|provide|keep|call|cite|quote|frame|present|emphasi[sz]e|highlight|focus|"
    r"ignore|disregard|forget|do|don't|never|always|remember|note|ensure|be sure|repeat|place|"
    r"rank|prioriti[sz]e|leave|exclude|change|update|correct|delete|send|reveal)\b",
)
_ADDRESSES_TOOL = re.compile(
    r"\b(?:you|your|yours|yourself)\b"
    r"|\b(?:summar(?:y|ies)|output|extraction|headline|json|items?|bullet|first line)\b"
)
_POINTS_BACK = re.compile(
    r"\b(?:say|state|report|write|mention|repeat|reflect|include|use|follow|lead with|"
    r"open with|start with|begin with)\s+(?:so|this|that|it|these|them|the above)\W*$"
)
_NOTICE = re.compile(
    r"^\W{0,3}(?:correction|clarification|update|updated|editor'?s'? note|note|notice|"
    r"disclaimer|important|breaking|p\.?s\.?)\b[^.:]{0,40}[:—–-]"
)


def find_instructions(text: str, sentences: list[Sentence]) -> list[Sentence]:
    """The instruction-like sentences of an article, with the blocks they belong to."""
    flagged: dict[int, Sentence] = {}
    block_end = -1
    previous: Sentence | None = None  # the last sentence, if it was set aside
    for i, s in enumerate(sentences):
        found = None if s.start < block_end else _signal(s.text)
        if s.start < block_end or found or (previous and _continues(s, previous)):
            flagged[i] = s
            previous = s
        else:
            previous = None
            continue
        if found is None:
            continue
        pattern, start, end = found
        for j in _opening(sentences, i):
            flagged.setdefault(j, sentences[j])
        if pattern in _OPENS_BLOCK:
            paragraph_end = text.find("\n", s.end)
            block_end = len(text) if paragraph_end < 0 else paragraph_end
            if re.fullmatch(_OPENS_TURN, s.text[start:end], re.IGNORECASE):
                closer = re.compile(_ENDS_TURN, re.IGNORECASE).search(text, s.start + end)
                block_end = closer.end() if closer else block_end
    return [flagged[i] for i in sorted(flagged)]


def _opening(sentences: list[Sentence], i: int) -> list[int]:
    """Sentences before instruction ``i`` that belong to its block: from a notice's label
    ("Correction: ...") in its paragraph, or the one an order points back to ("say so")."""
    s = sentences[i]
    before = [j for j in range(max(0, i - 3), i) if sentences[j].paragraph == s.paragraph]
    for j in before:
        if _NOTICE.search(fold(sentences[j].text)[0]):
            return list(range(j, i))
    if before and _POINTS_BACK.search(fold(s.text)[0]):
        return [before[-1]]
    return []


def _continues(s: Sentence, previous: Sentence) -> bool:
    """Whether ``s`` goes on with the injected block that ``previous`` belongs to: in the
    next paragraph only as an order, in the same one also by addressing the tool or by
    speaking the same foreign language."""
    folded = fold(s.text)[0]
    if previous.text.rstrip().endswith(":") or _IMPERATIVE.search(folded):
        return s.paragraph - previous.paragraph <= 1
    if s.paragraph != previous.paragraph:
        return False
    if _ADDRESSES_TOOL.search(folded):
        return True
    language = sentence_language(s.text)
    return language not in (ENGLISH, UNDETERMINED) and language == sentence_language(previous.text)


def instruction_warning(instructions: list[Sentence]) -> str:
    where = ", ".join(f"{s.start}-{s.end}" for s in instructions[:5])
    more = f" and {len(instructions) - 5} more" if len(instructions) > 5 else ""
    return (
        f"ignored {len(instructions)} instruction-like sentences addressed to a model or an "
        f"editor (characters {where}{more}): kept out of the summary and the items"
    )
