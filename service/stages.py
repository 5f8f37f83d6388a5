"""Stages as registered units, and what every stage works on.

A stage is a class registered under its name with ``@register``: a summarizer fills
``Work.summary``, an extractor fills ``Work.demands`` and ``Work.positions``. It declares what
it needs (``Need``) and which prompts it reads; the pipeline checks those needs at build time,
loads the model only when a configured stage needs one, and hands every stage the same
``StageContext`` (settings, model, prompts, batched generation, chunking).

To add a stage, write one class in ``service/summarizers.py`` or ``service/extractors.py``::

    @register
    class Lead3(Summarizer):
        name = "lead3"

        def run(self, works, ctx):
            ...

A pipeline accepts its name as soon as it is registered (``service.registry`` looks names up
when the pipeline is built); nothing else changes. The pipeline applies the checks of
``service.checks`` to whatever a stage makes (instruction-like sentences are never in
``Work.sentences``; items and summaries are checked after the stage runs). Facts about an
article that several stages and checks read (the actor index, who each sentence is attributed
to, the model's features) are computed once and travel on its ``Work``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, cast

import numpy as np
from langchain_core.messages import BaseMessage

from service.article import Sentence
from service.errors import Cancelled, ModelError
from service.extraction import (
    ActorIndex,
    Claim,
    disputed_claims,
    index_actors,
    sentence_speakers,
)
from service.grounding import ArticleTerms
from service.schemas import Article, Demand, Diagnostics, Position

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from service.heads import Heads
    from service.prompts import Prompt
    from service.settings import Settings

StageKind = Literal["summarizer", "extractor"]


class LocalReader(Protocol):
    """What the scoring and learned stages need of a local model (``service.model.LocalModel``);
    a chat model served over HTTP has none of it."""

    model_id: str

    def count_tokens(self, text: Any) -> int: ...

    def render(self, messages: list[dict[str, str]]) -> Any: ...

    def score(
        self, prefix: Any, queries: list[str], options: list[str], *, chunk_size: int = ...
    ) -> list[list[float]]: ...

    def sentence_features(
        self, texts: list[str], spans: list[list[tuple[int, int]]], *, layers: Sequence[int]
    ) -> list[np.ndarray]: ...


def local_reader(model: object) -> LocalReader | None:
    """The local model behind a chat model (``LocalChatModel.local``), or None for a server."""
    local = getattr(model, "local", None)
    return cast("LocalReader | None", local)


class Need(StrEnum):
    """What a stage needs beyond the article."""

    CHAT = "chat"  # a chat model that generates (local or an OpenAI-compatible server)
    SCORER = "scorer"  # a local model that scores options by log-likelihood
    EMBEDDER = "embedder"  # the bundled sentence-embedding model (all-MiniLM-L6-v2)
    FEATURES = "features"  # a local model's hidden states, read by trained heads


@dataclass
class Work:
    """One article on its way through the stages."""

    article: Article
    text: str = ""
    language: str = "und"  # ISO 639-1 code (service.language), "und" when undetermined
    english: bool = True  # English enough for English-only stages (service.language)
    sentences: list[Sentence] = field(default_factory=list)  # without the instructions
    instructions: list[Sentence] = field(default_factory=list)  # see service.checks
    summary: str = ""
    demands: list[Demand] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    chunks: int = 1
    prompt_tokens: int = 0
    generated_tokens: int = 0
    timings: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    model_ms: float = 0.0  # this article's share of the batched model calls so far
    # The model's pooled sentence features, by (model id, layer, pooling): read once per
    # article by the first learned stage, shared by the next (service.learned).
    features: dict[tuple[str, int, str], np.ndarray] = field(default_factory=dict, repr=False)
    _actors: ActorIndex | None = field(default=None, repr=False)
    _speakers: dict[int, str] | None = field(default=None, repr=False)
    _disputed: list[Claim] | None = field(default=None, repr=False)
    _terms: ArticleTerms | None = field(default=None, repr=False)

    @property
    def actors(self) -> ActorIndex:
        """The people and bodies the news text names (built once, on first use)."""
        if self._actors is None:
            self._actors = index_actors(self.news_text)
        return self._actors

    @property
    def speakers(self) -> dict[int, str]:
        """Who the article attributes each candidate sentence to, by sentence start (once)."""
        if self._speakers is None:
            self._speakers = sentence_speakers(self.sentences, self.actors)
        return self._speakers

    @property
    def disputed(self) -> list[Claim]:
        """The claims the article reports as false, fabricated, denied or alleged by others
        (once): they are nobody's items."""
        if self._disputed is None:
            self._disputed = disputed_claims(self.sentences)
        return self._disputed

    @property
    def terms(self) -> ArticleTerms:
        """The names and numbers the news text holds, for the checks (read once)."""
        if self._terms is None:
            self._terms = ArticleTerms(self.news_text)
        return self._terms

    @property
    def news_text(self) -> str:
        """The text with its instruction-like sentences blanked out (same offsets)."""
        pieces, at = [], 0
        for s in self.instructions:
            pieces += [self.text[at : s.start], " " * (s.end - s.start)]
            at = s.end
        return "".join([*pieces, self.text[at:]])

    def sentences_wanted(self, settings: Settings) -> int:
        return self.article.options.summary_sentences or settings.summary_sentences


class Stage:
    """Base of summarizers and extractors. Subclasses set ``name`` and implement ``run``.

    The pipeline hands a stage one article at a time and measures each article's time,
    unless the stage sets ``batched``: then it gets all articles of a call at once (to batch
    model calls across them), and each article's time is its share (see ``Pipeline``).
    """

    kind: ClassVar[StageKind]
    name: ClassVar[str]
    needs: ClassVar[frozenset[Need]] = frozenset()
    prompts: ClassVar[tuple[str, ...]] = ()
    uses_model: ClassVar[bool] = False  # results depend on the model (meta.model names it)
    batched: ClassVar[bool] = False  # run on all articles of a call at once
    # Reads English only: the pipeline does not run it on an article that is not English
    # enough (``Work.english``), and the article's warning says so.
    english_only: ClassVar[bool] = False

    def run(self, works: list[Work], ctx: StageContext) -> None:
        raise NotImplementedError


class Summarizer(Stage):
    kind = "summarizer"


class Extractor(Stage):
    kind = "extractor"
    english_only = True  # every extractor so far: cue words, attribution, English features


_REGISTRY: dict[StageKind, dict[str, type[Stage]]] = {"summarizer": {}, "extractor": {}}
S = TypeVar("S", bound=type[Stage])


def register(stage: S) -> S:
    """Class decorator: make a stage available under its ``name``."""
    table = _REGISTRY[stage.kind]
    if stage.name in table and table[stage.name] is not stage:
        raise ValueError(f"a {stage.kind} named {stage.name!r} is already registered")
    table[stage.name] = stage
    return stage


@dataclass
class StageContext:
    """What a stage may use: settings, the model (if any), its prompts, and model plumbing."""

    settings: Settings
    model: BaseChatModel | None
    prompts: dict[str, Prompt]
    cancel: threading.Event | None = None  # set when nobody waits for this call's results any more
    # The loaded heads, in a box: the copy a pipeline makes for each call (with the call's
    # ``cancel``) shares the box, so the heads are loaded once per pipeline, not per call.
    _heads: list[Heads] = field(default_factory=list)

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` if the call's results are no longer wanted (between steps)."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("stopped: every request waiting for this work has gone")

    @property
    def heads(self) -> Heads:
        """The trained heads (``STANDPOINT_HEADS``, else the packaged artifact), loaded once
        and refused unless they were trained on this model's features."""
        if not self._heads:
            from service.heads import DEFAULT_HEADS, load_heads

            path = self.settings.heads or DEFAULT_HEADS
            self._heads.append(load_heads(path, model_id=str(self.local.model_id)))
        return self._heads[0]

    @property
    def local(self) -> LocalReader:
        """The local model behind the chat model (scoring and token counts need it)."""
        local = local_reader(self.model)
        if local is None:
            raise ModelError("this stage scores options by likelihood and needs a local model")
        return local

    def generate(
        self,
        jobs: list[tuple[Work, list[BaseMessage]]],
        *,
        schemas: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Replies for many conversations, batched; ``schemas`` constrain each reply's JSON.

        Each batched call's time is shared among its conversations in proportion to the tokens
        each put through the model (prompt + generated), added to their article's ``model_ms``.
        A local model stops between decoding steps once ``cancel`` is set.
        """
        if not jobs:
            return []
        if self.model is None:
            raise ModelError("this stage needs a model; none was given")
        local = local_reader(self.model) is not None
        if local:
            kwargs["cancel"] = self.cancel
        else:
            kwargs.pop("max_new_tokens", None)
        texts = []
        size = self.settings.batch_size
        for i in range(0, len(jobs), size):
            self.check_cancelled()
            group = jobs[i : i + size]
            started = time.perf_counter()
            group_schemas = schemas[i : i + size] if schemas else None
            if group_schemas is None:
                replies = self.model.batch([m for _, m in group], **kwargs)
            elif local:
                replies = self.model.batch(
                    [m for _, m in group], json_schema=group_schemas, **kwargs
                )
            else:  # a server takes one response format per request
                replies = [
                    self.model.invoke(m, response_format=_response_format(s), **kwargs)
                    for (_, m), s in zip(group, group_schemas, strict=True)
                ]
            elapsed_ms = (time.perf_counter() - started) * 1000
            tokens = []
            for (w, _), reply in zip(group, replies, strict=True):
                usage = getattr(reply, "usage_metadata", None) or {}
                read = int(usage.get("input_tokens", 0))
                written = int(usage.get("output_tokens", 0))
                w.prompt_tokens += read
                w.generated_tokens += written
                tokens.append(read + written)
                texts.append(str(reply.content))
            total = sum(tokens)
            for (w, _), n in zip(group, tokens, strict=True):
                w.model_ms += elapsed_ms * (n / total if total else 1 / len(group))
        return texts

    def count_tokens(self, text: str) -> int:
        local = local_reader(self.model)
        return int(local.count_tokens(text)) if local is not None else math.ceil(len(text) / 4)

    def chunks(self, sentences: list[Sentence]) -> list[list[Sentence]]:
        """Sentences packed into chunks of at most ``chunk_tokens`` (map-reduce input)."""
        budget = self.settings.chunk_tokens
        chunks: list[list[Sentence]] = [[]]
        used = 0
        for s in sentences:
            n = self.count_tokens(s.text) + 1
            if chunks[-1] and used + n > budget:
                chunks.append([])
                used = 0
            chunks[-1].append(s)
            used += n
        return [c for c in chunks if c]


def _response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "extraction", "schema": schema}}


def body_sentences(sentences: list[Sentence]) -> list[Sentence]:
    """Sentences that can go into a summary: no headings, at least five words."""
    return [s for s in sentences if not s.is_heading and len(s.text.split()) >= 5]


def join(sentences: list[Sentence]) -> str:
    return " ".join(s.text for s in sentences)
