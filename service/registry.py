"""The stage registry's lookups: every registered stage by name, and what a configuration needs.

Importing this module registers the built-in stages (``service.summarizers``,
``service.extractors``); a stage defined elsewhere registers itself with ``@register``
(``service.stages``) when its module is imported. Names are checked here, when the pipeline is
built (``stage_class``), not in the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import service.extractors
import service.summarizers  # noqa: F401  (the built-in stages register on import)
from service.errors import SettingsError
from service.stages import _REGISTRY, Need, Stage, StageKind

if TYPE_CHECKING:
    from service.settings import Settings


def registered(kind: StageKind) -> dict[str, type[Stage]]:
    """The stages of one kind by name: the built-in ones and any registered since."""
    return dict(_REGISTRY[kind])


def stage_class(kind: StageKind, name: str) -> type[Stage]:
    """The stage registered as ``name``; an unknown name is a ``SettingsError`` naming the
    setting and every registered choice (names are checked where a pipeline is built)."""
    table = registered(kind)
    if name not in table:
        raise SettingsError(
            f"STANDPOINT_{kind.upper()}={name!r} (--{kind}) is not registered; "
            f"choose one of {', '.join(sorted(table))}"
        )
    return table[name]


def needs_of(settings: Settings) -> frozenset[Need]:
    """Everything the configured stages need."""
    return stage_class("summarizer", settings.summarizer).needs | (
        stage_class("extractor", settings.extractor).needs
    )
