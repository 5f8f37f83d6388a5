"""standpoint: faithful news summaries and demand/position extraction with verbatim evidence.

The package face imports nothing heavy: ``from service import summarize_many`` loads the batch
module on first use (PEP 562), so importing a leaf such as ``service.errors`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.batch import summarize_many
    from service.briefing import brief
    from service.schemas import Article, Briefing, Demand, Position, Result

_EXPORTS = {
    "Article": "service.schemas",
    "Briefing": "service.schemas",
    "Demand": "service.schemas",
    "Position": "service.schemas",
    "Result": "service.schemas",
    "brief": "service.briefing",
    "summarize_many": "service.batch",
}

__all__ = ["Article", "Briefing", "Demand", "Position", "Result", "brief", "summarize_many"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
