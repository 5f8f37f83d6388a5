"""Article -> Result: prepare, summarize, extract (grounded), result. One LangChain runnable.

The stages are registered units (``service.stages``); the pipeline composes the summarizer and
the extractor the settings name and runs each over the articles of a call. ``meta.timings_ms``
is each article's own time: a stage that works article by article is timed per article; a
``batched`` stage (model-write, model-json) runs over all articles at once so model calls batch
across them, and an article's time is its share of each batched model call, in proportion to the
tokens it put through the model, plus its share of the stage's remaining (per-article, non-model)
time in proportion to its length. ``finish`` stops between articles and between decoding steps
once its ``cancel`` event is set (the API sets it when every waiting client has gone). Caching,
metrics and the CLI sit outside: ``build_pipeline`` is the one place a pipeline is made from
settings, and ``service.cache.CachedPipeline`` wraps it with the result cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig

from service.article import clean_article, split_sentences
from service.checks import CHECKS_VERSION, check_items, check_summary
from service.errors import InputError, ModelError, StandpointError
from service.guard import find_instructions, instruction_warning
from service.inputs import parse_article
from service.language import detect_language, language_warning
from service.prompts import Prompt, load_prompt
from service.registry import needs_of, stage_class
from service.schemas import Article, Meta, Result
from service.stages import (
    Need,
    Stage,
    StageContext,
    Work,
    local_reader,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from service.settings import Settings

logger = logging.getLogger(__name__)

Outcome = Result | StandpointError
MODEL_NEEDS = frozenset({Need.CHAT, Need.SCORER, Need.FEATURES})

# Part of every cache key: bump it when results computed before a change would now differ
# in more than the settings show (2: meta.language and the English-only warning; 3: no items
# from English-only extractors for an article that is not English, languages by majority).
RESULT_FORMAT = 3


class Pipeline(Runnable[Article | dict[str, Any], Result]):
    """The whole of standpoint as one runnable: ``invoke`` one article, ``batch`` many.

    ``batch(..., return_exceptions=True)`` returns an error in place of each failed article.
    """

    def __init__(self, *, settings: Settings, model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.model = model
        self.summarizer: Stage = stage_class("summarizer", settings.summarizer)()
        self.extractor: Stage = stage_class("extractor", settings.extractor)()
        needs = self.needs = needs_of(settings)
        if needs & MODEL_NEEDS and model is None:
            names = f"{settings.summarizer}/{settings.extractor}"
            raise ModelError(f"the configured stages ({names}) need a model; none was given")
        if needs & {Need.SCORER, Need.FEATURES} and local_reader(model) is None:
            raise ModelError(
                "model-rank, model-score and the learned stages read a local model's scores "
                "or features; an OpenAI-compatible server cannot serve them"
            )
        self.prompts: dict[str, Prompt] = {
            prompt_id: load_prompt(prompt_id)
            for stage in (self.summarizer, self.extractor)
            for prompt_id in stage.prompts
        }
        self.context = StageContext(settings=settings, model=model, prompts=self.prompts)

    @property
    def model_id(self) -> str:
        if self.model is None:
            return "none"
        return str(
            getattr(self.model, "model_id", None) or getattr(self.model, "model_name", "model")
        )

    @property
    def uses_model(self) -> bool:
        """Whether any configured stage's results depend on the model."""
        return self.summarizer.uses_model or self.extractor.uses_model

    @property
    def result_model(self) -> str:
        """The model results come from: ``none`` when no stage uses one, so such results are
        the same (and cached the same) whether a model is loaded or not."""
        return self.model_id if self.uses_model else "none"

    @property
    def dtype(self) -> str:
        """The precision results come from: the local model's own (``auto`` resolved), else
        the setting (a model server's precision is its own business)."""
        local = local_reader(self.model)
        return str(getattr(local, "dtype", None) or self.settings.dtype)

    @property
    def settings_key(self) -> str:
        """The settings that change results, for cache keys.

        With a model, that includes the dtype the model runs in (``auto`` resolved): bfloat16
        and float32 give different output, and in bfloat16 a generated output can also change
        with its batch mates (a near tie of two tokens resolved differently; see
        ``LocalModel.generate``). Batch mates cannot be part of a key: in bfloat16, an article
        answered from the cache gets the answer of whichever batch computed it.
        """
        s = self.settings
        parts = (
            RESULT_FORMAT,
            s.summarizer,
            s.extractor,
            s.summary_sentences,
            s.chunk_tokens,
            s.max_new_tokens,
            s.json_max_new_tokens,
            *([self.dtype] if self.uses_model else []),
            self.heads_sha or "",
            f"checks@{CHECKS_VERSION}",
        )
        return "|".join(map(str, parts))

    @property
    def heads_sha(self) -> str | None:
        """The heads artifact's hash when a learned stage reads it (loading it if needed)."""
        if Need.FEATURES not in self.summarizer.needs | self.extractor.needs:
            return None
        return self.context.heads.sha256

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

    # The stages ---------------------------------------------------------------------------
    def run(
        self, inputs: list[Article | dict[str, Any]], *, cancel: threading.Event | None = None
    ) -> list[Outcome]:
        """Results in input order; an article that fails yields its error instead."""
        return self.finish(self.prepare(inputs), cancel=cancel)

    def prepare(self, inputs: list[Article | dict[str, Any]]) -> list[Work | StandpointError]:
        """Each input validated, cleaned and split, or the error that stops it."""
        return [self._prepare(item) for item in inputs]

    def finish(
        self, prepared: list[Work | StandpointError], *, cancel: threading.Event | None = None
    ) -> list[Outcome]:
        """Summarize and extract the prepared articles (errors pass through), in order.

        Once ``cancel`` is set the work stops at the next step and every article of the call
        gets a ``Cancelled`` error.
        """
        live = [w for w in prepared if isinstance(w, Work)]
        ctx = dataclasses.replace(self.context, cancel=cancel)
        answers = self._finish(live, ctx)
        return [answers[id(w)] if isinstance(w, Work) else w for w in prepared]

    def _finish(self, works: list[Work], ctx: StageContext) -> dict[int, Outcome]:
        """Each work's result or error, by ``id(work)``. When the stages fail on a batch of
        articles, each is run again alone, so an article that breaks a stage fails alone."""
        try:
            summarize = [w for w in works if w.article.options.summary]
            self._timed(ctx, summarize, "summary_ms", self.summarizer)
            extract = [
                w
                for w in works
                if w.article.options.extraction and (w.english or not self.extractor.english_only)
            ]
            self._timed(ctx, extract, "extract_ms", self.extractor)
        except StandpointError as exc:  # unusable configuration, or cancelled: every article
            return {id(w): exc for w in works}
        except Exception as exc:
            if len(works) > 1:
                logger.warning(
                    "a batch of %d articles failed (%s: %s); running each alone",
                    len(works),
                    type(exc).__name__,
                    exc,
                )
                return {id(w): self._alone(w, ctx) for w in works}
            logger.exception("article %r failed", works[0].article.id if works else None)
            return {id(w): self._failure(exc, w) for w in works}
        return {id(w): self._result(w) for w in works}

    def _alone(self, work: Work, ctx: StageContext) -> Outcome:
        fresh = self._prepare(work.article)  # from the start: the failed run left partial state
        if not isinstance(fresh, Work):
            return fresh
        return self._finish([fresh], ctx)[id(fresh)]

    def _failure(self, exc: Exception, work: Work) -> StandpointError:
        """The error an article gets when a stage raised on it alone: the model's failure
        when a stage calls a model, otherwise an internal error (logged, not shown)."""
        if self.needs & {Need.CHAT, Need.SCORER}:
            return ModelError(
                f"the model failed: {type(exc).__name__}: {exc}", article_id=work.article.id
            )
        return StandpointError(
            "internal error while processing this article; it has been logged",
            article_id=work.article.id,
        )

    @staticmethod
    def _timed(ctx: StageContext, works: list[Work], key: str, stage: Stage) -> None:
        """Run a stage on the articles, then the checks on what it made (``service.checks``:
        every stage gets them); each article's ``timings[key]`` gets its own time."""
        if not stage.batched:
            for w in works:
                ctx.check_cancelled()
                started = time.perf_counter()
                stage.run([w], ctx)
                _check(stage, w, ctx.settings)
                w.timings[key] += (time.perf_counter() - started) * 1000
            return
        if not works:
            return
        ctx.check_cancelled()
        before = [w.model_ms for w in works]
        started = time.perf_counter()
        stage.run(works, ctx)
        for w in works:
            _check(stage, w, ctx.settings)
        elapsed = (time.perf_counter() - started) * 1000
        own = [w.model_ms - b for w, b in zip(works, before, strict=True)]
        rest = max(0.0, elapsed - sum(own))
        length = sum(len(w.text) for w in works) or 1
        for w, model_ms in zip(works, own, strict=True):
            w.timings[key] += model_ms + rest * len(w.text) / length

    def _prepare(self, item: Article | dict[str, Any]) -> Work | StandpointError:
        started = time.perf_counter()
        try:
            article = parse_article(item)
        except InputError as exc:
            return exc
        work = Work(article=article)
        try:
            work.text, removed = clean_article(
                article,
                max_chars=self.settings.max_chars,
                max_tokens=self.settings.max_article_tokens,
            )
            sentences = split_sentences(work.text)
            work.instructions = find_instructions(work.text, sentences)
        except InputError as exc:
            exc.article_id = article.id
            return exc
        except Exception:  # a bug one article triggers must not reach the others
            logger.exception("cleaning article %r failed", article.id)
            return StandpointError(
                "internal error while cleaning this article; it has been logged",
                article_id=article.id,
            )
        if removed:
            work.diagnostics.junk_removed = len(removed)
            work.warnings.append(
                f"removed {len(removed)} pieces of page furniture: "
                + json.dumps(removed, ensure_ascii=False)
            )
        set_aside = set(work.instructions)
        work.sentences = [s for s in sentences if s not in set_aside]
        if work.instructions:
            work.diagnostics.instructions_ignored = len(work.instructions)
            work.warnings.append(instruction_warning(work.instructions))
        detected = detect_language(work.text, [s.text for s in work.sentences])
        work.language, work.english = detected.code, detected.english_enough
        if warning := language_warning(detected, english_only=self.extractor.english_only):
            work.warnings.append(warning)
        work.timings["clean_ms"] = (time.perf_counter() - started) * 1000
        return work

    def _result(self, w: Work) -> Result:
        w.timings["total_ms"] = sum(w.timings.values())
        meta = Meta(
            model=self.result_model,
            prompts={k: p.ref for k, p in self.prompts.items()},
            summarizer=self.settings.summarizer,
            extractor=self.settings.extractor,
            language=w.language,
            chunks=w.chunks,
            prompt_tokens=w.prompt_tokens,
            generated_tokens=w.generated_tokens,
            timings_ms={k: round(v, 1) for k, v in w.timings.items()},
            heads=self.heads_sha,
            dtype=self.dtype if self.uses_model else None,
            diagnostics=w.diagnostics,
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


def _check(stage: Stage, work: Work, settings: Settings) -> None:
    """The checks of ``service.checks`` on what ``stage`` made for ``work``."""
    if stage.kind == "summarizer":
        check_summary(work, wanted=work.sentences_wanted(settings))
    else:
        check_items(work)


def build_pipeline(
    settings: Settings, *, model: BaseChatModel | None = None, load_model: bool = False
) -> Pipeline:
    """The one way to make a pipeline from settings (CLI, API, batch, Ray, eval).

    The model is loaded only when a configured stage needs one (or ``load_model`` asks for it
    anyway, so that ``meta`` can name it); pass ``model`` to reuse one already loaded.
    """
    needs = needs_of(settings)
    if model is None and (needs & MODEL_NEEDS or load_model):
        from service.model import load_model as load

        model = load(settings, features_only=needs & MODEL_NEEDS == {Need.FEATURES})
    pipeline = Pipeline(settings=settings, model=model)
    pipeline.heads_sha  # noqa: B018  a learned stage's heads are loaded and checked now, not at the first article
    return pipeline


__all__ = ["Outcome", "Pipeline", "build_pipeline"]
