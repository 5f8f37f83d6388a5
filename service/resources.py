"""Files the code reads at run time: prompts and seed articles (the API lists the seeds).

In a source checkout they are the top-level ``prompts/`` and ``seeds/`` folders; an installed
wheel carries the same folders inside the package (``service/prompt_files``,
``service/seed_files``; see ``[tool.setuptools]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

_PACKAGE = Path(__file__).resolve().parent


def _folder(packaged: str, checkout: str) -> Path:
    inside = _PACKAGE / packaged
    return inside if inside.is_dir() else _PACKAGE.parent / checkout


def prompts_dir() -> Path:
    return _folder("prompt_files", "prompts")


def seeds_dir() -> Path:
    return _folder("seed_files", "seeds")


class Seed(BaseModel):
    """A seed article, as the API lists it for trying the service out."""

    id: str
    text: str


def read_seeds(folder: Path | None = None) -> list[Seed]:
    folder = folder or seeds_dir()
    return [
        Seed(id=p.stem, text=p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.txt"))
    ]
