"""Article -> Result: clean, summarize, extract, ground. One LangChain runnable.

Each stage runs over all articles of a call at once, so model work batches across articles.
Summarizers: ``lead`` and ``centrality`` (deterministic), ``model-rank`` (the model ranks the
article's own sentences), ``model-write`` (the model writes; sentences with names or numbers
not in the article are removed). Extractors: ``rules`` (deterministic), ``model-score`` (the
model labels the rule candidates by likelihood), ``model-json`` (the model writes JSON under a
schema constraint; items whose quote is not in the article are dropped).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ValidationError

from service.article import Sentence, clean_article, split_sentences
from service.cache import ResultCache, cache_key
from service.errors import InputError, ModelError, StandpointError
from service.extraction import find_candidates, index_actors, names_in, to_items
from service.grounding import filter_unsupported, fold, locate_quote, unsupported_terms
from service.prompts import Prompt, fence, load_prompt
from service.schemas import (
    Article,
    Demand,
    DemandDraft,
    ExtractionDraft,
    Meta,
    Position,
    PositionDraft,
    Result,
)
from service.settings import Settings

logger = logging.getLogger(__name__)

JSON_ATTEMPTS = 2
DRAFT_MAX_ITEMS = 3
DRAFT_TEXT_CHARS = 120
DRAFT_SHORT_CHARS = 60


@dataclass
class _Work:
    """One article on its way through the stages."""

    article: Article
    text: str = ""
    sentences: list[Sentence] = field(default_factory=list)
    summary: str = ""
    demands: list[Demand] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks: int = 1
    prompt_tokens: int = 0
    generated_tokens: int = 0
    timings: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    error: StandpointError | None = None


class Pipeline(Runnable[Article | dict[str, Any], Result]):
    """The whole of standpoint as one runnable: ``invoke`` one article, ``batch`` many.

    ``batch(..., return_exceptions=True)`` returns an error in place of each failed article.
    """

    def __init__(self, *, settings: Settings, model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.model = model
        needs_model = settings.summarizer.startswith("model") or settings.extractor.startswith(
            "model"
        )
        if needs_model and model is None:
            raise ModelError("the configured summarizer/extractor needs a model; none was given")
        needs_scores = settings.summarizer == "model-rank" or settings.extractor == "model-score"
        if needs_scores and not hasattr(model, "local"):
            raise ModelError(
                "model-rank and model-score score options by likelihood and need a local model"
            )
        self.prompts: dict[str, Prompt] = {}
        if settings.summarizer == "model-write":
            self.prompts["summarize"] = load_prompt("summarize")
        if settings.summarizer == "model-rank":
            self.prompts["rank"] = load_prompt("rank")
        if settings.extractor == "model-json":
            self.prompts["extract"] = load_prompt("extract")
        if settings.extractor == "model-score":
            self.prompts["classify"] = load_prompt("classify")

    @property
    def model_id(self) -> str:
        if self.model is None:
            return "none"
        return str(
            getattr(self.model, "model_id", None) or getattr(self.model, "model_name", "model")
        )

    # Runnable interface -------------------------------------------------------------------
    def invoke(
        self, input: Article | dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Result:
        result = self.run([input])[0]
        if isinstance(result, StandpointError):
            raise result
        return result

    def batch(
        self,
        inputs: list[Article | dict[str, Any]],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        results = self.run(inputs)
        if not return_exceptions:
            for r in results:
                if isinstance(r, StandpointError):
                    raise r
        return results

    @property
    def uses_model(self) -> bool:
        """Whether any configured stage asks the model (a loaded model may sit unused)."""
        s = self.settings
        return s.summarizer.startswith("model") or s.extractor.startswith("model")

    @property
    def result_model(self) -> str:
        """The model results come from: ``none`` when only deterministic stages run, so such
        results are the same (and cached the same) whether a model is loaded or not."""
        return self.model_id if self.uses_model else "none"

    @property
    def settings_key(self) -> str:
        """The settings that change results, for cache keys."""
        s = self.settings
        parts = (
            s.summarizer,
            s.extractor,
            s.summary_sentences,
            s.chunk_tokens,
            s.max_new_tokens,
            s.json_max_new_tokens,
        )
        return "|".join(map(str, parts))

    # Stages -------------------------------------------------------------------------------
    def run(
        self, inputs: list[Article | dict[str, Any]], *, cache: ResultCache | None = None
    ) -> list[Result | StandpointError]:
        """Results in input order; an article that fails yields its error instead.

        With a cache, articles seen before (same cleaned text, model, prompts, settings and
        options) are answered from it and new results are stored in it.
        """
        works = [self._prepare(item) for item in inputs]
        cached: dict[int, Result] = {}
        keys: dict[int, str] = {}
        if cache is not None:
            for i, w in enumerate(works):
                if w.error is None:
                    keys[i] = self.cache_key(w.article, w.text)
                    hit = cache.get(keys[i])
                    if hit is not None:
                        cached[i] = hit.model_copy(update={"id": w.article.id})
        live = [w for i, w in enumerate(works) if w.error is None and i not in cached]
        try:
            self._timed(live, "summary_ms", self._summarize)
            self._timed(live, "extract_ms", self._extract)
        except StandpointError as exc:
            for w in live:
                w.error = exc
        except Exception as exc:  # the model backend failed: every article of the call fails
            logger.exception("model call failed")
            for w in live:
                w.error = ModelError(f"the model failed: {type(exc).__name__}: {exc}")
        results: list[Result | StandpointError] = []
        for i, w in enumerate(works):
            if i in cached:
                results.append(cached[i])
            elif w.error is not None:
                results.append(w.error)
            else:
                result = self._result(w)
                if cache is not None:
                    cache.put(keys[i], result)
                results.append(result)
        return results

    def cache_key(self, article: Article, cleaned_text: str) -> str:
        return cache_key(
            text=cleaned_text,
            model_id=self.result_model,
            prompts={k: p.ref for k, p in self.prompts.items()},
            settings_key=self.settings_key,
            options=article.options,
        )

    def _timed(self, works: list[_Work], key: str, stage: Any) -> None:
        started = time.perf_counter()
        stage(works)
        elapsed = (time.perf_counter() - started) * 1000
        for w in works:
            w.timings[key] += elapsed

    def _prepare(self, item: Article | dict[str, Any]) -> _Work:
        started = time.perf_counter()
        try:
            article = item if isinstance(item, Article) else Article.model_validate(item)
        except ValidationError as exc:
            work = _Work(article=Article(text=""))
            work.error = InputError(_first_error(exc), article_id=_id_of(item))
            return work
        work = _Work(article=article)
        try:
            work.text, removed = clean_article(article, max_chars=self.settings.max_chars)
        except InputError as exc:
            exc.article_id = article.id
            work.error = exc
            return work
        if removed:
            work.warnings.append(f"removed {len(removed)} pieces of page furniture: {removed[:5]}")
        work.sentences = split_sentences(work.text)
        work.timings["clean_ms"] = (time.perf_counter() - started) * 1000
        return work

    def _result(self, w: _Work) -> Result:
        w.timings["total_ms"] = sum(w.timings.values())
        meta = Meta(
            model=self.result_model,
            prompts={k: p.ref for k, p in self.prompts.items()},
            summarizer=self.settings.summarizer,
            extractor=self.settings.extractor,
            chunks=w.chunks,
            prompt_tokens=w.prompt_tokens,
            generated_tokens=w.generated_tokens,
            timings_ms={k: round(v, 1) for k, v in w.timings.items()},
        )
        return Result(
            id=w.article.id,
            text=w.text,
            summary=w.summary,
            demands=w.demands,
            positions=w.positions,
            warnings=w.warnings,
            meta=meta,
        )

    # Summaries ----------------------------------------------------------------------------
    def _summarize(self, works: list[_Work]) -> None:
        works = [w for w in works if w.article.options.summary]
        kind = self.settings.summarizer
        if kind == "model-write":
            self._write_summaries(works)
            return
        for w in works:
            k = self._sentences_wanted(w)
            body = _body_sentences(w.sentences)
            if kind == "lead":
                chosen = body[:k]
            elif kind == "centrality":
                chosen = centrality_rank(body)[:k]
            else:
                chosen = self._rank_by_model(w, body)[:k]
            w.summary = " ".join(s.text for s in sorted(chosen, key=lambda s: s.start))

    def _rank_by_model(self, w: _Work, body: list[Sentence]) -> list[Sentence]:
        local = self.model.local  # type: ignore[union-attr]
        prompt = self.prompts["rank"]
        scored: list[tuple[float, Sentence]] = []
        chunks = self._chunks(body)
        w.chunks = len(chunks)
        empty = local.render(
            [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.render("user", article=fence(""))},
            ]
        )
        for chunk in chunks:
            prefix = local.render(
                [
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.render("user", article=fence(_join(chunk)))},
                ]
            )
            options = [" " + s.text for s in chunk]
            lengths = [max(1, local.count_tokens(o)) for o in options]
            with_article = local.score(prefix, [""], options, chunk_size=8)[0]
            without = local.score(empty, [""], options, chunk_size=8)[0]
            w.prompt_tokens += local.count_tokens(prefix) + sum(lengths) * 2
            for s, a, b, n in zip(chunk, with_article, without, lengths, strict=True):
                scored.append(((a - b) / n, s))
        scored.sort(key=lambda pair: -pair[0])
        return [s for _, s in scored]

    def _sentences_wanted(self, w: _Work) -> int:
        return w.article.options.summary_sentences or self.settings.summary_sentences

    def _write_summaries(self, works: list[_Work]) -> None:
        jobs: list[tuple[_Work, list[BaseMessage]]] = []
        for w in works:
            chunks = self._chunks(w.sentences)
            w.chunks = len(chunks)
            jobs += [
                (w, self._summary_messages(_join(c), self._sentences_wanted(w))) for c in chunks
            ]
        partial: dict[int, list[str]] = {}
        for (w, _), text in zip(jobs, self._generate(jobs), strict=True):
            partial.setdefault(id(w), []).append(text)
        reduce_jobs = [
            (w, self._summary_messages("\n".join(partial[id(w)]), self._sentences_wanted(w)))
            for w in works
            if w.chunks > 1
        ]
        for (w, _), text in zip(reduce_jobs, self._generate(reduce_jobs), strict=True):
            partial[id(w)] = [text]
        for w in works:
            k = self._sentences_wanted(w)
            sentences = [s.text for s in split_sentences(" ".join(partial[id(w)]))]
            sentences = [s for s in dict.fromkeys(sentences) if len(s.split()) >= 4]
            kept, removed = filter_unsupported(sentences, w.text)
            w.warnings += removed
            if len(kept) > k:
                w.warnings.append(f"the model wrote {len(kept)} sentences; kept the first {k}")
                kept = kept[:k]
            if not kept:
                w.warnings.append(
                    "no model-written sentence survived the faithfulness check; used lead"
                )
                kept = [s.text for s in _body_sentences(w.sentences)[:k]]
            w.summary = " ".join(kept)

    def _summary_messages(self, text: str, k: int) -> list[BaseMessage]:
        prompt = self.prompts["summarize"]
        return [
            SystemMessage(prompt.render("system")),
            HumanMessage(prompt.render("user", article=fence(text), sentences=k)),
        ]

    # Extraction ---------------------------------------------------------------------------
    def _extract(self, works: list[_Work]) -> None:
        works = [w for w in works if w.article.options.extraction]
        kind = self.settings.extractor
        if kind == "model-json":
            self._extract_json(works)
            return
        for w in works:
            candidates = find_candidates(w.text, w.sentences)
            if kind == "model-score" and candidates:
                self._label_by_model(w, candidates)
            w.demands, w.positions, unattributed = to_items(candidates, w.text)
            if unattributed:
                w.warnings.append(f"dropped {unattributed} items whose speaker could not be named")

    def _label_by_model(self, w: _Work, candidates: list[Any]) -> None:
        local = self.model.local  # type: ignore[union-attr]
        prompt = self.prompts["classify"]
        assert prompt.options is not None
        labels, options = list(prompt.options), list(prompt.options.values())
        prefix = prompt.render("system") + "\n" + prompt.render("user")
        queries = [f" {c.sentence.text}\nLabel:" for c in candidates]
        scores = local.score(prefix, [*queries, " N/A\nLabel:"], options)
        baseline = scores.pop()
        w.prompt_tokens += local.count_tokens(prefix) + sum(local.count_tokens(q) for q in queries)
        for c, row in zip(candidates, scores, strict=True):
            calibrated = [a - b for a, b in zip(row, baseline, strict=True)]
            c.kind = labels[max(range(len(labels)), key=calibrated.__getitem__)]
            if (
                c.kind == "position"
                and c.stance == "support"
                and re.search(r"\bnot?\b", c.sentence.text)
            ):
                c.stance = "oppose"

    def _extract_json(self, works: list[_Work]) -> None:
        prompt = self.prompts["extract"]
        fields = _field_descriptions(ExtractionDraft.model_json_schema())
        jobs, schemas = [], []
        for w in works:
            chunks = self._chunks(w.sentences)
            w.chunks = max(w.chunks, len(chunks))
            index = index_actors(w.text)
            for c in chunks:
                messages = [
                    SystemMessage(prompt.render("system", fields=fields)),
                    HumanMessage(prompt.render("user", article=fence(_join(c)))),
                ]
                jobs.append((w, messages))
                schemas.append(draft_schema(c, names_in(_join(c), index)))
        pending = list(zip(jobs, schemas, strict=True))
        for attempt in range(1, JSON_ATTEMPTS + 1):
            texts = self._generate(
                [job for job, _ in pending],
                schemas=[schema for _, schema in pending],
                max_new_tokens=self.settings.json_max_new_tokens,
            )
            retry = []
            for ((w, messages), schema), text in zip(pending, texts, strict=True):
                try:
                    draft = ExtractionDraft.model_validate_json(text)
                except ValidationError as exc:
                    if attempt < JSON_ATTEMPTS:
                        fix = (
                            f"That was not valid: {_first_error(exc)}. Return shorter, valid JSON."
                        )
                        retry.append(((w, [*messages, HumanMessage(fix)]), schema))
                    else:
                        w.warnings.append(f"the model's JSON was invalid after {attempt} attempts")
                    continue
                if attempt > 1:
                    w.warnings.append(f"valid JSON after {attempt} attempts")
                self._ground_draft(w, draft)
            pending = retry
            if not pending:
                break

    def _ground_draft(self, w: _Work, draft: ExtractionDraft) -> None:
        dropped = 0
        items: list[DemandDraft | PositionDraft] = [*draft.demands, *draft.positions]
        for item in items:
            span = locate_quote(item.quote, w.text)
            actor_ok = bool(item.actor.strip()) and fold(item.actor).lower() in fold(w.text).lower()
            content = item.demand if isinstance(item, DemandDraft) else item.issue
            if span is None or not actor_ok or unsupported_terms(content, w.text):
                dropped += 1
                continue
            start, end = span
            evidence: dict[str, Any] = {"quote": w.text[start:end], "start": start, "end": end}
            data = item.model_dump(exclude={"quote"})
            if isinstance(item, DemandDraft):
                w.demands.append(Demand(**data, **evidence))
            else:
                w.positions.append(Position(**data, **evidence))
        if dropped:
            w.warnings.append(f"dropped {dropped} model items not grounded in the article")

    # Model plumbing -----------------------------------------------------------------------
    def _generate(
        self,
        jobs: list[tuple[_Work, list[BaseMessage]]],
        *,
        schemas: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Replies for many conversations, batched; ``schemas`` constrain each reply's JSON."""
        if not jobs:
            return []
        assert self.model is not None
        local = hasattr(self.model, "local")
        if not local:
            kwargs.pop("max_new_tokens", None)
        texts = []
        size = self.settings.batch_size
        for i in range(0, len(jobs), size):
            group = jobs[i : i + size]
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
            for (w, _), reply in zip(group, replies, strict=True):
                usage = getattr(reply, "usage_metadata", None) or {}
                w.prompt_tokens += int(usage.get("input_tokens", 0))
                w.generated_tokens += int(usage.get("output_tokens", 0))
                texts.append(str(reply.content))
        return texts

    def _count(self, text: str) -> int:
        local = getattr(self.model, "local", None)
        return local.count_tokens(text) if local is not None else math.ceil(len(text) / 4)

    def _chunks(self, sentences: list[Sentence]) -> list[list[Sentence]]:
        """Sentences packed into chunks of at most ``chunk_tokens`` (map-reduce input)."""
        budget = self.settings.chunk_tokens
        chunks: list[list[Sentence]] = [[]]
        used = 0
        for s in sentences:
            n = self._count(s.text) + 1
            if chunks[-1] and used + n > budget:
                chunks.append([])
                used = 0
            chunks[-1].append(s)
            used += n
        return [c for c in chunks if c]


def _body_sentences(sentences: list[Sentence]) -> list[Sentence]:
    return [s for s in sentences if not s.is_heading and len(s.text.split()) >= 5]


def _join(sentences: list[Sentence]) -> str:
    return " ".join(s.text for s in sentences)


def centrality_rank(sentences: list[Sentence]) -> list[Sentence]:
    """Sentences by their mean word-overlap cosine with the others (most central first)."""
    bags = [Counter(re.findall(r"[a-z0-9]+", fold(s.text).lower())) for s in sentences]
    norms = [math.sqrt(sum(v * v for v in b.values())) or 1.0 for b in bags]

    def cosine(i: int, j: int) -> float:
        shared = bags[i].keys() & bags[j].keys()
        return sum(bags[i][t] * bags[j][t] for t in shared) / (norms[i] * norms[j])

    scores = [
        sum(cosine(i, j) for j in range(len(bags)) if j != i) / max(1, len(bags) - 1)
        for i in range(len(bags))
    ]
    order = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    return [sentences[i] for i in order]


def draft_schema(sentences: list[Sentence], names: list[str]) -> dict[str, Any]:
    """The extraction schema for one chunk: each quote must be one of the chunk's sentences and
    each actor one of the names in it (the model chooses evidence, it cannot write it), free
    text is bounded, and so is the number of items, so that the JSON fits the token budget."""
    quotes = list(dict.fromkeys(s.text for s in sentences if not s.is_heading))
    actor: dict[str, Any] = (
        {"type": "string", "enum": names} if names else {"type": "string", "maxLength": 60}
    )
    text = {"type": "string", "maxLength": DRAFT_TEXT_CHARS}
    short = {"anyOf": [{"type": "string", "maxLength": DRAFT_SHORT_CHARS}, {"type": "null"}]}
    quote = {"type": "string", "enum": quotes} if quotes else {"type": "string", "maxLength": 300}

    def items(properties: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "array",
            "maxItems": DRAFT_MAX_ITEMS,
            "items": {"type": "object", "properties": properties, "required": list(properties)},
        }

    stance = {"type": "string", "enum": ["support", "oppose", "conditional", "neutral"]}
    return {
        "type": "object",
        "properties": {
            "demands": items(
                {
                    "actor": actor,
                    "demand": text,
                    "target": short,
                    "conditions": short,
                    "quote": quote,
                }
            ),
            "positions": items({"actor": actor, "issue": text, "stance": stance, "quote": quote}),
        },
        "required": ["demands", "positions"],
    }


def _response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "extraction", "schema": schema}}


def _field_descriptions(schema: dict[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for definition in schema.get("$defs", {}).values():
        for name, spec in definition.get("properties", {}).items():
            if "description" in spec:
                fields.setdefault(name, spec["description"])
    return fields


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "input"
    return f"{where}: {err.get('msg', 'invalid')}"


def _id_of(item: Any) -> str | None:
    return item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None


__all__ = ["Pipeline", "centrality_rank", "draft_schema"]
