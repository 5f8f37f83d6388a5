"""Article -> Result: prepare, summarize, extract (grounded), result. One LangChain runnable.

The stages are registered units (``service.stages``); the pipeline composes the summarizer and
the extractor the settings name, runs each over all articles of a call at once (so model work
batches across articles), and gives each article its own share of a stage's time. Caching,
metrics and the CLI sit outside: ``build_pipeline`` is the one place a pipeline is made from
settings, and ``service.cache.CachedPipeline`` wraps it with the result cache.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig

from service.article import clean_article, split_sentences
from service.checks import (
    CHECKS_VERSION,
    check_items,
    check_summary,
    find_instructions,
    instruction_warning,
)
from service.errors import InputError, ModelError, StandpointError
from service.inputs import parse_article
from service.language import detect_language, language_warning
from service.prompts import Prompt, load_prompt
from service.schemas import Article, Meta, Result
from service.stages import Need, Stage, StageContext, Work, needs_of, stage_class

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from service.settings import Settings

logger = logging.getLogger(__name__)

Outcome = Result | StandpointError
MODEL_NEEDS = frozenset({Need.CHAT, Need.SCORER, Need.FEATURES})

# Part of every cache key: bump it when results computed before a change would now differ
# in more than the settings show (2: meta.language and the English-only warning).
RESULT_FORMAT = 2


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
        if needs & {Need.SCORER, Need.FEATURES} and not hasattr(model, "local"):
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
    def settings_key(self) -> str:
        """The settings that change results, for cache keys."""
        s = self.settings
        parts = (
            RESULT_FORMAT,
            s.summarizer,
            s.extractor,
            s.summary_sentences,
            s.chunk_tokens,
            s.max_new_tokens,
            s.json_max_new_tokens,
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
    def run(self, inputs: list[Article | dict[str, Any]]) -> list[Outcome]:
        """Results in input order; an article that fails yields its error instead."""
        return self.finish(self.prepare(inputs))

    def prepare(self, inputs: list[Article | dict[str, Any]]) -> list[Work | StandpointError]:
        """Each input validated, cleaned and split, or the error that stops it."""
        return [self._prepare(item) for item in inputs]

    def finish(self, prepared: list[Work | StandpointError]) -> list[Outcome]:
        """Summarize and extract the prepared articles (errors pass through), in order."""
        live = [w for w in prepared if isinstance(w, Work)]
        answers = self._finish(live)
        return [answers[id(w)] if isinstance(w, Work) else w for w in prepared]

    def _finish(self, works: list[Work]) -> dict[int, Outcome]:
        """Each work's result or error, by ``id(work)``. When the stages fail on a batch of
        articles, each is run again alone, so an article that breaks a stage fails alone."""
        try:
            self._timed(works, "summary_ms", self.summarizer, lambda w: w.article.options.summary)
            self._timed(works, "extract_ms", self.extractor, lambda w: w.article.options.extraction)
        except StandpointError as exc:  # the configuration is unusable: every article fails
            return {id(w): exc for w in works}
        except Exception as exc:
            if len(works) > 1:
                logger.warning(
                    "a batch of %d articles failed (%s: %s); running each alone",
                    len(works),
                    type(exc).__name__,
                    exc,
                )
                return {id(w): self._alone(w) for w in works}
            logger.exception("article %r failed", works[0].article.id if works else None)
            return {id(w): self._failure(exc, w) for w in works}
        return {id(w): self._result(w) for w in works}

    def _alone(self, work: Work) -> Outcome:
        fresh = self._prepare(work.article)  # from the start: the failed run left partial state
        if not isinstance(fresh, Work):
            return fresh
        return self._finish([fresh])[id(fresh)]

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

    def _timed(self, works: list[Work], key: str, stage: Stage, wanted: Any) -> None:
        """Run a stage on the articles that want it, then the checks on what it made
        (``service.checks``: every stage gets them); each article gets its share of the time,
        in proportion to its length (the stages' cost grows with the text)."""
        chosen = [w for w in works if wanted(w)]
        if not chosen:
            return
        started = time.perf_counter()
        stage.run(chosen, self.context)
        for w in chosen:
            if stage.kind == "summarizer":
                check_summary(w, wanted=w.sentences_wanted(self.settings))
            else:
                check_items(w)
        elapsed = (time.perf_counter() - started) * 1000
        total = sum(len(w.text) for w in chosen) or 1
        for w in chosen:
            w.timings[key] += elapsed * len(w.text) / total

    def _prepare(self, item: Article | dict[str, Any]) -> Work | StandpointError:
        started = time.perf_counter()
        try:
            article = parse_article(item)
        except InputError as exc:
            return exc
        work = Work(article=article)
        try:
            work.text, removed = clean_article(article, max_chars=self.settings.max_chars)
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
        work.language, confidence = detect_language(work.text)
        if warning := language_warning(work.language, confidence):
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


def build_pipeline(
    settings: Settings, *, model: BaseChatModel | None = None, load_model: bool = False
) -> Pipeline:
    """The one way to make a pipeline from settings (CLI, API, batch, Ray, eval).

    The model is loaded only when a configured stage needs one (or ``load_model`` asks for it
    anyway, so that ``meta`` can name it); pass ``model`` to reuse one already loaded.
    """
    if model is None and (needs_of(settings) & MODEL_NEEDS or load_model):
        from service.model import load_model as load

        model = load(settings)
    return Pipeline(settings=settings, model=model)


__all__ = ["Outcome", "Pipeline", "build_pipeline"]
