"""Extractors: each fills ``Work.demands`` and ``Work.positions`` for the articles it is given.

``rules`` finds and labels candidate sentences deterministically (``service.extraction``);
``model-score`` has the model label the same candidates by calibrated log-likelihood;
``model-json`` has the model write JSON under a schema derived from the draft types, where
each quote must be one of the chunk's sentences and each actor one of its names. Model items
are grounded before they are kept: the quote is located in the article and the article's own
characters are emitted; items with an unknown actor or invented names are dropped and counted.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from service.article import Sentence
from service.errors import first_error
from service.extraction import Candidate, find_candidates, names_in, to_items
from service.grounding import ArticleTerms, fold, locate_quote
from service.prompts import fence
from service.schemas import (
    Demand,
    DemandDraft,
    ExtractionDraft,
    Position,
    PositionDraft,
)
from service.stages import Extractor, Need, StageContext, Work, join, register

JSON_ATTEMPTS = 2


@register
class Rules(Extractor):
    """Candidate sentences labelled and attributed by rules."""

    name = "rules"

    def run(self, works: list[Work], ctx: StageContext) -> None:
        for w in works:
            self.keep(w, find_candidates(w.news_text, w.sentences, w.actors))

    @staticmethod
    def keep(w: Work, candidates: list[Candidate]) -> None:
        w.demands, w.positions, unattributed = to_items(candidates, w.text)
        if unattributed:
            w.diagnostics.items_dropped += unattributed
            w.warnings.append(f"dropped {unattributed} items whose speaker could not be named")


@register
class Learned(Extractor):
    """Trained heads on the model's sentence features: which sentences state a demand or a
    position, the stance, and which of the article's names is the actor."""

    name = "learned"
    needs = frozenset({Need.FEATURES})
    uses_model = True

    def run(self, works: list[Work], ctx: StageContext) -> None:
        from service.learned import article_features, items_for, sentence_matrix

        heads = ctx.heads
        hidden = article_features(ctx.local, works, heads)
        for w, h in zip(works, hidden, strict=True):
            x = sentence_matrix(h, w.sentences)
            w.demands, w.positions, unattributed = items_for(
                heads, w.news_text, w.sentences, x, w.actors
            )
            if unattributed:
                w.diagnostics.items_dropped += unattributed
                w.warnings.append(f"dropped {unattributed} items whose speaker could not be named")


@register
class ModelScore(Extractor):
    """The rule candidates, labelled by the model: the label whose continuation is most
    likely after the sentence, calibrated against a content-free query."""

    name = "model-score"
    needs = frozenset({Need.SCORER})
    prompts = ("classify",)
    uses_model = True

    def run(self, works: list[Work], ctx: StageContext) -> None:
        for w in works:
            candidates = find_candidates(w.news_text, w.sentences, w.actors)
            if candidates:
                self._label(w, candidates, ctx)
            Rules.keep(w, candidates)

    @staticmethod
    def _label(w: Work, candidates: list[Candidate], ctx: StageContext) -> None:
        local = ctx.local
        prompt = ctx.prompts["classify"]
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


@register
class ModelJson(Extractor):
    """The model writes the items as JSON under a per-chunk schema, re-asked once on error."""

    name = "model-json"
    needs = frozenset({Need.CHAT})
    prompts = ("extract",)
    uses_model = True
    batched = True

    def run(self, works: list[Work], ctx: StageContext) -> None:
        prompt = ctx.prompts["extract"]
        fields = field_descriptions()
        pending: list[tuple[tuple[Work, list[BaseMessage]], dict[str, Any]]] = []
        for w in works:
            chunks = ctx.chunks(w.sentences)
            w.chunks = max(w.chunks, len(chunks))
            index = w.actors
            for c in chunks:
                messages: list[BaseMessage] = [
                    SystemMessage(prompt.render("system", fields=fields)),
                    HumanMessage(prompt.render("user", article=fence(join(c)))),
                ]
                pending.append(((w, messages), draft_schema(c, names_in(join(c), index))))
        for attempt in range(1, JSON_ATTEMPTS + 1):
            texts = ctx.generate(
                [job for job, _ in pending],
                schemas=[schema for _, schema in pending],
                max_new_tokens=ctx.settings.json_max_new_tokens,
            )
            retry = []
            for ((w, messages), schema), text in zip(pending, texts, strict=True):
                w.diagnostics.json_attempts = max(w.diagnostics.json_attempts, attempt)
                try:
                    draft = ExtractionDraft.model_validate_json(text)
                except ValidationError as exc:
                    if attempt < JSON_ATTEMPTS:
                        fix = f"That was not valid: {first_error(exc)}. Return shorter, valid JSON."
                        retry.append(((w, [*messages, HumanMessage(fix)]), schema))
                    else:
                        w.diagnostics.json_valid = False
                        w.warnings.append(f"the model's JSON was invalid after {attempt} attempts")
                    continue
                if w.diagnostics.json_valid is None:
                    w.diagnostics.json_valid = True
                if attempt > 1:
                    w.warnings.append(f"valid JSON after {attempt} attempts")
                ground_draft(w, draft)
            pending = retry
            if not pending:
                break


def ground_draft(w: Work, draft: ExtractionDraft) -> None:
    """Keep the draft items whose quote, actor and content the article supports."""
    dropped = 0
    items: list[DemandDraft | PositionDraft] = [*draft.demands, *draft.positions]
    terms = ArticleTerms(w.text)  # the article read once, not once per item
    for item in items:
        span = locate_quote(item.quote, w.text)
        actor_ok = bool(item.actor.strip()) and fold(item.actor).lower() in terms.folded
        content = item.demand if isinstance(item, DemandDraft) else item.issue
        if span is None or not actor_ok or terms.missing(content):
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
        w.diagnostics.items_dropped += dropped
        w.warnings.append(f"dropped {dropped} model items not grounded in the article")


@cache
def _draft_contract() -> dict[str, Any]:
    """``ExtractionDraft``'s JSON schema with its definitions inlined."""
    schema = ExtractionDraft.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items() if k not in {"title", "description"}}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def draft_schema(sentences: list[Sentence], names: list[str]) -> dict[str, Any]:
    """The extraction schema for one chunk: the draft types' schema, with each quote one of
    the chunk's sentences and each actor one of the names in it (the model chooses evidence,
    it cannot write it). Bounds on text and item counts come from the draft types."""
    schema = copy.deepcopy(_draft_contract())
    quotes = list(dict.fromkeys(s.text for s in sentences if not s.is_heading))
    actor: dict[str, Any] = (
        {"type": "string", "enum": names} if names else {"type": "string", "maxLength": 60}
    )
    quote = {"type": "string", "enum": quotes} if quotes else {"type": "string", "maxLength": 300}
    for kind in ("demands", "positions"):
        item = schema["properties"][kind]["items"]
        item["properties"]["actor"] = actor
        item["properties"]["quote"] = quote
    return schema


@cache
def field_descriptions() -> dict[str, str]:
    """Field name -> description from the draft types, for the extraction prompt."""
    fields: dict[str, str] = {}
    for definition in ExtractionDraft.model_json_schema().get("$defs", {}).values():
        for name, spec in definition.get("properties", {}).items():
            if "description" in spec:
                fields.setdefault(name, spec["description"])
    return fields
