"""Summarizers: each fills ``Work.summary`` for the articles it is given.

``lead`` and ``centrality`` are deterministic; ``lead3`` and ``embed-centrality`` are the
eval's baselines; ``model-rank`` has the model rank the article's own sentences;
``model-write`` has the model write, then removes sentences whose names or numbers the article
does not contain. Every extractive summarizer returns article sentences in article order.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Any, ClassVar

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from service.article import Sentence, split_sentences
from service.grounding import filter_unembedded, filter_unsupported, fold
from service.prompts import fence
from service.stages import (
    Need,
    StageContext,
    Summarizer,
    Work,
    body_sentences,
    join,
    register,
)


class Extractive(Summarizer):
    """Picks the top ``k`` body sentences by ``rank`` and returns them in article order."""

    fixed_sentences: ClassVar[int | None] = None

    def rank(self, body: list[Sentence], work: Work, ctx: StageContext) -> list[Sentence]:
        raise NotImplementedError

    def run(self, works: list[Work], ctx: StageContext) -> None:
        for w in works:
            k = self.fixed_sentences or w.sentences_wanted(ctx.settings)
            body = body_sentences(w.sentences)
            chosen = self.rank(body, w, ctx)[:k]
            w.summary = " ".join(s.text for s in sorted(chosen, key=lambda s: s.start))


@register
class Lead(Extractive):
    """The first body sentences."""

    name = "lead"

    def rank(self, body: list[Sentence], work: Work, ctx: StageContext) -> list[Sentence]:
        return body


@register
class Lead3(Lead):
    """The first three body sentences, whatever ``summary_sentences`` says (eval baseline)."""

    name = "lead3"
    fixed_sentences = 3


@register
class Centrality(Extractive):
    """The sentences with the highest mean word-overlap cosine to the others."""

    name = "centrality"

    def rank(self, body: list[Sentence], work: Work, ctx: StageContext) -> list[Sentence]:
        return centrality_rank(body)


@register
class EmbedCentrality(Extractive):
    """The sentences with the highest mean all-MiniLM-L6-v2 cosine to the others."""

    name = "embed-centrality"
    needs = frozenset({Need.EMBEDDER})

    def rank(self, body: list[Sentence], work: Work, ctx: StageContext) -> list[Sentence]:
        from service.embedding import embed

        if len(body) < 2:
            return body
        vectors = embed([s.text for s in body])
        # each row's cosines with all the others, without the quadratic similarity matrix
        own = (vectors * vectors).sum(axis=1)
        scores = (vectors @ vectors.sum(axis=0) - own) / (len(body) - 1)
        order = sorted(range(len(body)), key=lambda i: (-float(scores[i]), i))
        return [body[i] for i in order]


@register
class ModelRank(Extractive):
    """Sentences by how much more likely the model finds them after reading the article
    than without it (length-normalised log-likelihood gain)."""

    name = "model-rank"
    needs = frozenset({Need.SCORER})
    prompts = ("rank",)
    uses_model = True

    def rank(self, body: list[Sentence], work: Work, ctx: StageContext) -> list[Sentence]:
        local = ctx.local
        prompt = ctx.prompts["rank"]
        chunks = ctx.chunks(body)
        work.chunks = len(chunks)

        def rendered(article: str) -> Any:  # the article stays plain text to the tokenizer
            return local.render(
                [
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.render("user", article=fence(article))},
                ]
            )

        empty = rendered("")
        scored: list[tuple[float, Sentence]] = []
        for chunk in chunks:
            prefix = rendered(join(chunk))
            options = [" " + s.text for s in chunk]
            lengths = [max(1, local.count_tokens(o)) for o in options]
            with_article = local.score(prefix, [""], options, chunk_size=8)[0]
            without = local.score(empty, [""], options, chunk_size=8)[0]
            work.prompt_tokens += local.count_tokens(prefix) + sum(lengths) * 2
            for s, a, b, n in zip(chunk, with_article, without, lengths, strict=True):
                scored.append(((a - b) / n, s))
        scored.sort(key=lambda pair: -pair[0])
        return [s for _, s in scored]


@register
class Learned(Extractive):
    """Sentences by the salience head's score on the model's features (trained on reference
    summaries by oracle sentence labels, with position among its inputs)."""

    name = "learned"
    needs = frozenset({Need.FEATURES})
    uses_model = True

    def run(self, works: list[Work], ctx: StageContext) -> None:
        from service.learned import article_features

        article_features(ctx.local, works, ctx.heads)  # one pass per article, kept on its Work
        super().run(works, ctx)

    def rank(self, body: list[Sentence], work: Work, ctx: StageContext) -> list[Sentence]:
        from service.learned import article_features, salience, sentence_matrix

        (hidden,) = article_features(ctx.local, [work], ctx.heads)
        x = sentence_matrix(hidden, work.sentences)
        score = dict(zip(work.sentences, salience(ctx.heads, x), strict=True))
        return sorted(body, key=lambda s: (-score[s], s.start))


@register
class ModelWrite(Summarizer):
    """The model writes (map-reduce over chunks); unsupported sentences are removed."""

    name = "model-write"
    needs = frozenset({Need.CHAT, Need.EMBEDDER})
    prompts = ("summarize",)
    uses_model = True
    batched = True

    def run(self, works: list[Work], ctx: StageContext) -> None:
        jobs: list[tuple[Work, list[BaseMessage]]] = []
        for w in works:
            chunks = ctx.chunks(w.sentences)
            w.chunks = len(chunks)
            k = w.sentences_wanted(ctx.settings)
            jobs += [(w, self._messages(ctx, join(c), k)) for c in chunks]
        partial: dict[int, list[str]] = {}
        for (w, _), text in zip(jobs, ctx.generate(jobs), strict=True):
            partial.setdefault(id(w), []).append(text)
        reduce_jobs = [
            (w, self._messages(ctx, "\n".join(partial[id(w)]), w.sentences_wanted(ctx.settings)))
            for w in works
            if w.chunks > 1
        ]
        for (w, _), text in zip(reduce_jobs, ctx.generate(reduce_jobs), strict=True):
            partial[id(w)] = [text]
        for w in works:
            k = w.sentences_wanted(ctx.settings)
            sentences = [s.text for s in split_sentences(" ".join(partial[id(w)]))]
            sentences = [s for s in dict.fromkeys(sentences) if len(s.split()) >= 4]
            kept, removed = filter_unsupported(sentences, w.text)
            kept, unembedded = filter_unembedded(
                kept, [s.text for s in w.sentences if s.text.strip()]
            )
            w.warnings += removed + unembedded
            w.diagnostics.summary_sentences_removed += len(removed) + len(unembedded)
            if len(kept) > k:
                w.warnings.append(f"the model wrote {len(kept)} sentences; kept the first {k}")
                kept = kept[:k]
            if not kept:
                w.warnings.append(
                    "no model-written sentence survived the faithfulness check; used lead"
                )
                kept = [s.text for s in body_sentences(w.sentences)[:k]]
            w.summary = " ".join(kept)

    @staticmethod
    def _messages(ctx: StageContext, text: str, k: int) -> list[BaseMessage]:
        prompt = ctx.prompts["summarize"]
        return [
            SystemMessage(prompt.render("system")),
            HumanMessage(prompt.render("user", article=fence(text), sentences=k)),
        ]


def centrality_rank(sentences: list[Sentence]) -> list[Sentence]:
    """Sentences by their mean word-overlap cosine with the others (most central first).

    The sum of one sentence's cosines with all the others is its unit vector's dot product
    with the sum of the others' unit vectors, so one pass over the words computes every
    score: linear in the article, where comparing each pair of sentences was quadratic.
    """
    bags = [Counter(re.findall(r"[a-z0-9]+", fold(s.text).lower())) for s in sentences]
    norms = [math.sqrt(sum(v * v for v in b.values())) or 1.0 for b in bags]
    total: defaultdict[str, float] = defaultdict(float)  # the sum of the unit vectors
    for bag, norm in zip(bags, norms, strict=True):
        for word, count in bag.items():
            total[word] += count / norm
    scores = []
    for bag, norm in zip(bags, norms, strict=True):
        own = sum(count * count for count in bag.values()) / (norm * norm)  # 1, or 0 if empty
        others = sum(count * total[word] for word, count in bag.items()) / norm - own
        scores.append(others / max(1, len(bags) - 1))
    order = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    return [sentences[i] for i in order]
