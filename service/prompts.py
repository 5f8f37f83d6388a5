"""Versioned prompt files (prompts/<id>/v<N>.yaml), loaded strictly and rendered with Jinja."""

from __future__ import annotations

from functools import lru_cache

import yaml
from jinja2 import Environment, StrictUndefined
from pydantic import BaseModel, ConfigDict

from service.resources import prompts_dir

PROMPTS_DIR = prompts_dir()
_ENV = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class Prompt(BaseModel):
    """One published prompt version. Scoring prompts add ``options`` (label -> continuation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: int
    changelog: list[str]
    system: str
    user: str
    options: dict[str, str] | None = None

    @property
    def ref(self) -> str:
        return f"{self.id}@v{self.version}"

    def render(self, part: str, **values: object) -> str:
        return _ENV.from_string(getattr(self, part)).render(**values)


@lru_cache
def load_prompt(prompt_id: str, version: int | None = None) -> Prompt:
    """A prompt by id, at the given version or the newest one published."""
    folder = PROMPTS_DIR / prompt_id
    files = sorted(folder.glob("v*.yaml"), key=lambda p: int(p.stem[1:]))
    if version is not None:
        files = [p for p in files if p.stem == f"v{version}"]
    if not files:
        raise FileNotFoundError(f"no prompt {prompt_id!r} version {version} in {folder}")
    data = yaml.safe_load(files[-1].read_text(encoding="utf-8"))
    prompt = Prompt.model_validate(data)
    if prompt.id != prompt_id or f"v{prompt.version}" != files[-1].stem:
        raise ValueError(f"{files[-1]} declares {prompt.ref}; the file name says otherwise")
    return prompt


def fence(article: str) -> str:
    """The article as data: inside <article> tags it cannot close."""
    return "<article>\n" + article.replace("</article>", "</ article>") + "\n</article>"
