"""Domain types (Article, Demand, Position, Result) and their JSON schemas."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

Stance = Literal["support", "oppose", "conditional", "neutral"]


class Options(BaseModel):
    """What to compute for one article."""

    model_config = ConfigDict(extra="forbid")

    summary: bool = Field(default=True, description="Write the summary.")
    extraction: bool = Field(default=True, description="Extract demands and positions.")
    summary_sentences: int | None = Field(
        default=None, ge=1, le=10, description="Sentences in the summary (default: the setting)."
    )


def _id_as_text(value: object) -> object:
    """Integer ids (common in JSONL exports) become strings; booleans are not ids."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("an id must not be blank")
    return value


def lone_surrogate(text: str) -> str | None:
    """Where ``text`` holds a lone surrogate (JSON can spell one, ``"\\ud800"``, but it is no
    character and cannot be encoded), as ``\\ud800 at character N``; None if it holds none."""
    match = _SURROGATE.search(text)
    if match is None:
        return None
    return (
        f"{match.group().encode('utf-8', 'backslashreplace').decode()} at character {match.start()}"
    )


def _valid_unicode(value: str) -> str:
    where = lone_surrogate(value)
    if where is not None:
        raise ValueError(f"not valid Unicode text: a lone surrogate ({where})")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
UnicodeText = Annotated[str, AfterValidator(_valid_unicode)]
ArticleId = Annotated[
    Annotated[str, StringConstraints(max_length=512), AfterValidator(_not_blank)],
    AfterValidator(_valid_unicode),
    BeforeValidator(_id_as_text, json_schema_input_type=str | int),
]


class Article(BaseModel):
    """One input article: plain text or HTML, with an optional id and options.

    The one input model of every door (API, ``standpoint summarize`` and ``batch``, Ray,
    ``summarize_many``): unknown fields are refused, an integer id becomes a string, and text
    that is not valid Unicode is refused.
    """

    model_config = ConfigDict(extra="forbid")

    id: ArticleId | None = Field(
        default=None, description="Your id for the article, echoed in the result."
    )
    text: UnicodeText | None = None
    html: UnicodeText | None = None
    options: Options = Field(default_factory=Options)

    @model_validator(mode="after")
    def _one_body(self) -> Article:
        if (self.text is None) == (self.html is None):
            raise ValueError("give exactly one of 'text' or 'html'")
        return self


class Evidence(BaseModel):
    quote: str = Field(description="Exact words copied from the article that support the item.")
    start: int = Field(ge=0, description="Character offset of the quote in the cleaned text.")
    end: int = Field(ge=0, description="Offset one past the quote's last character.")


class Demand(Evidence):
    actor: str = Field(description="Who makes the demand, named as in the article.")
    demand: str = Field(description="What the actor demands, in the article's words.")
    target: str | None = Field(description="From whom it is demanded, named as in the article.")
    conditions: str | None = Field(description="Conditions attached (if/before/unless ...).")


class Position(Evidence):
    actor: str = Field(description="Who takes the position, named as in the article.")
    issue: str = Field(description="What the position is about, in the article's words.")
    stance: Stance = Field(
        description="support, oppose, conditional (only if a condition holds), or neutral."
    )


class Diagnostics(BaseModel):
    """What the pipeline removed or repaired, as numbers (the same facts as ``warnings``)."""

    junk_removed: int = Field(default=0, description="Pieces of page furniture removed.")
    items_dropped: int = Field(
        default=0,
        description="Items dropped: not grounded in the article, actor not attributed to the "
        "quote, quote in an instruction-like sentence, a claim the article reports as false or "
        "alleged by others, or contradictory stances.",
    )
    instructions_ignored: int = Field(
        default=0,
        description="Instruction-like sentences (addressed to a model or an editor) set aside.",
    )
    fields_cleared: int = Field(
        default=0, description="Item target/conditions fields set to null: not article spans."
    )
    items_merged: int = Field(default=0, description="Duplicate items merged into one.")
    summary_sentences_removed: int = Field(
        default=0, description="Summary sentences removed: unsupported or instruction-like."
    )
    json_attempts: int = Field(default=0, description="Model JSON attempts (0: none asked).")
    json_valid: bool | None = Field(
        default=None, description="Whether the model's JSON validated (None: none asked)."
    )


class Meta(BaseModel):
    model: str
    prompts: dict[str, str] = Field(default_factory=dict)
    summarizer: str
    extractor: str
    language: str = Field(
        default="und",
        description="ISO 639-1 code of the article's language, 'und' when undetermined. "
        "Extraction is English-only: other languages get a warning.",
    )
    chunks: int = 1
    prompt_tokens: int = 0
    generated_tokens: int = 0
    timings_ms: dict[str, float] = Field(default_factory=dict)
    heads: str | None = Field(
        default=None, description="sha256 of the trained heads artifact a learned stage used."
    )
    dtype: str | None = Field(
        default=None,
        description="Precision the model ran in (float32, bfloat16) when a stage used it.",
    )
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)


class Result(BaseModel):
    """The output contract: one per article. ``text[start:end] == quote`` for every item."""

    id: str | None
    text: str
    summary: str
    demands: list[Demand]
    positions: list[Position]
    warnings: list[str] = Field(default_factory=list)
    meta: Meta


# Schemas the model fills in when it is asked for JSON (model-json extractor). The JSON schema the
# decoder enforces is derived from these (``service.extractors.draft_schema``), so the bounds
# below are the model's contract and the validator's at once.
DRAFT_MAX_ITEMS = 3
DRAFT_TEXT_CHARS = 120
DRAFT_SHORT_CHARS = 60


class DemandDraft(BaseModel):
    actor: str = Field(description="Who makes the demand, a name that occurs in the article.")
    demand: str = Field(
        max_length=DRAFT_TEXT_CHARS, description="What is demanded, copied from the article."
    )
    target: str | None = Field(
        max_length=DRAFT_SHORT_CHARS, description="From whom it is demanded, or null."
    )
    conditions: str | None = Field(
        max_length=DRAFT_SHORT_CHARS, description="Conditions attached, or null."
    )
    quote: str = Field(description="The exact sentence of the article that states the demand.")


class PositionDraft(BaseModel):
    actor: str = Field(description="Who takes the position, a name that occurs in the article.")
    issue: str = Field(
        max_length=DRAFT_TEXT_CHARS,
        description="What the position is about, copied from the article.",
    )
    stance: Stance = Field(description="support, oppose, conditional or neutral.")
    quote: str = Field(description="The exact sentence of the article that states the position.")


class ExtractionDraft(BaseModel):
    demands: list[DemandDraft] = Field(max_length=DRAFT_MAX_ITEMS)
    positions: list[PositionDraft] = Field(max_length=DRAFT_MAX_ITEMS)


# Briefings: several reports of one event (service.briefing) ------------------------------------
ItemKind = Literal["demand", "position"]


class SourceArticle(Article):
    """An article in a briefing: an Article plus, optionally, who published it."""

    outlet: str | None = Field(default=None, max_length=200, description="The publisher.")
    title: str | None = Field(default=None, max_length=1000, description="The headline.")


class BriefingSource(Evidence):
    """One article's report of a merged item, in that article's own words."""

    article: str = Field(description="The article's id.")
    outlet: str | None = None
    title: str | None = None
    kind: ItemKind
    actor: str = Field(description="The actor as this article names them.")
    claim: str = Field(description="The demand or issue, in this article's words.")
    target: str | None = None
    conditions: str | None = None
    stance: Stance | None = Field(default=None, description="A position's stance (None: demand).")
    also: list[Evidence] = Field(
        default_factory=list, description="Further sentences of this article saying the same."
    )


class BriefingItem(BaseModel):
    """Who demanded or said what, with every article that carried it."""

    id: str
    actor: str = Field(description="The actor, resolved across articles (fullest name).")
    kind: ItemKind = Field(description="demand if any source reports it as a demand.")
    claim: str = Field(description="The most representative source's wording.")
    sources: list[BriefingSource] = Field(description="One per article carrying the item.")
    carried_by: list[str] = Field(description="Ids of the articles carrying the item.")
    missing_from: list[str] = Field(description="Ids of the briefed articles that do not.")
    single_source: bool = Field(description="Only one article carries the item.")
    conflict: bool = Field(
        description="Articles disagree on the actor's stance (oppose against support or "
        "conditional support)."
    )
    conditions_differ: bool = Field(
        description="Articles word the conditions differently (see each source's conditions)."
    )


class SummarySentence(Evidence):
    """A sentence of the combined summary: ``quote`` is ``text[start:end]`` of ``article``."""

    article: str


class BriefedArticle(BaseModel):
    id: str
    outlet: str | None = None
    title: str | None = None
    text: str = Field(description="The cleaned text every offset of this article refers to.")
    items: int = Field(description="Demands and positions extracted from it.")


class FailedArticle(BaseModel):
    id: str
    status: int
    message: str


class BriefingMeta(BaseModel):
    threshold: float = Field(description="Similarity at or above which items merge.")
    embedding_weight: float = Field(description="Weight of the embedding cosine (vs word overlap).")
    embedding_model: str
    summarizer: str | None = None
    extractor: str | None = None


class Briefing(BaseModel):
    """Several reports of one event: merged items, what differs, and a combined summary."""

    articles: list[BriefedArticle]
    failed: list[FailedArticle] = Field(default_factory=list)
    summary: list[SummarySentence]
    items: list[BriefingItem]
    meta: BriefingMeta
