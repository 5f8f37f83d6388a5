"""Trained heads on the embedded model's sentence features, and the artifact that holds them.

A head is a logistic regression (binary or multinomial) over standardised features; inference
is plain numpy, so serving needs no training library. The artifact is one ``.npz`` file: the
heads' arrays plus a JSON metadata record (model id, layer, pooling, feature layout, thresholds,
data hashes, git sha, cross-validated metrics). ``load_heads`` refuses an artifact made for
another model or another feature layout, with a message that says which.

The features of a sentence are the model's pooled hidden state at ``layer`` followed by a few
cheap cues (``cue_features``); an actor candidate is described by ``candidate_features``.
Everything the heads output is a choice among the article's own sentences and names.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.article import Sentence
from service.errors import StandpointError
from service.extraction import classify
from service.lexicon import (
    CONDITIONAL_CUES,
    DEMAND_CUES,
    NEUTRAL_CUES,
    OPPOSE_CUES,
    SUPPORT_CUES,
)

# Bump when the meaning or order of features changes: artifacts record it and are refused
# when it differs from the code's.
FEATURE_LAYOUT = "v1: pooled hidden + 14 sentence cues; 12 candidate features"
DEFAULT_HEADS = Path(__file__).resolve().parent / "heads" / "default.npz"
STANCES = ("support", "oppose", "conditional", "neutral")

_QUOTE_MARKS = re.compile(r"[“”\"]")
_REPORTING = re.compile(
    r"\b(?:said|says|told|added|stated|warned|urged|insisted|demanded|argued|claimed|"
    r"called|asked|according to|announced|rejected|accused|criticis|criticiz)",
    re.IGNORECASE,
)


class HeadsError(StandpointError):
    """The heads artifact is missing, unreadable, or made for another model or layout."""

    exit_code = 3
    status_code = 503


def cue_features(sentence: Sentence, index: int, count: int) -> np.ndarray:
    """Cheap, deterministic facts about one sentence, appended to the model's features."""
    text = sentence.text
    kind, _ = classify(text)
    return np.array(
        [
            index / max(1, count - 1),
            1.0 if index == 0 else 0.0,
            1.0 if index < 3 else 0.0,
            math.log1p(len(text.split())),
            1.0 if _QUOTE_MARKS.search(text) else 0.0,
            1.0 if _REPORTING.search(text) else 0.0,
            1.0 if DEMAND_CUES.search(text) else 0.0,
            1.0 if OPPOSE_CUES.search(text) else 0.0,
            1.0 if SUPPORT_CUES.search(text) else 0.0,
            1.0 if CONDITIONAL_CUES.search(text) else 0.0,
            1.0 if NEUTRAL_CUES.search(text) else 0.0,
            1.0 if kind == "demand" else 0.0,
            1.0 if kind == "position" else 0.0,
            1.0 if sentence.is_heading else 0.0,
        ],
        dtype=np.float32,
    )


@dataclass
class Logistic:
    """``classes`` scored by ``softmax(standardise(x) @ coef.T + intercept)``; a binary head
    has one row of ``coef`` and scores its positive class with a sigmoid."""

    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities, one column per class (binary heads: ``[p(negative), p(positive)]``)."""
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        return {
            f"{name}.mean": self.mean,
            f"{name}.scale": self.scale,
            f"{name}.coef": self.coef,
            f"{name}.intercept": self.intercept,
        }

    @classmethod
    def from_arrays(cls, name: str, classes: list[str], data: Any) -> Logistic:
        return cls(
            classes=classes,
            mean=np.asarray(data[f"{name}.mean"]),
            scale=np.asarray(data[f"{name}.scale"]),
            coef=np.asarray(data[f"{name}.coef"]),
            intercept=np.asarray(data[f"{name}.intercept"]),
        )


@dataclass
class Heads:
    """Every trained head, the feature recipe they expect, and where they came from."""

    model_id: str
    layer: int
    pooling: str  # "mean" or "last": how a sentence's token states become one vector
    heads: dict[str, Logistic]
    thresholds: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    layout: str = FEATURE_LAYOUT
    sha256: str = ""

    def save(self, path: Path) -> str:
        """Write the artifact; returns its sha256."""
        meta = {
            **self.metadata,
            "model_id": self.model_id,
            "layer": self.layer,
            "pooling": self.pooling,
            "layout": self.layout,
            "thresholds": self.thresholds,
            "classes": {name: head.classes for name, head in self.heads.items()},
        }
        arrays: dict[str, np.ndarray] = {}
        for name, head in self.heads.items():
            arrays.update(head.arrays(name))
        arrays["metadata"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        buffer = io.BytesIO()
        stored = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}
        np.savez_compressed(buffer, **stored)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        self.sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()
        return self.sha256


def load_heads(path: Path, *, model_id: str | None = None) -> Heads:
    """The heads in ``path``; refused when made for another model or feature layout."""
    if not path.is_file():
        raise HeadsError(f"no heads artifact at {path} (STANDPOINT_HEADS); run `make train`")
    raw = path.read_bytes()
    try:
        data = np.load(io.BytesIO(raw), allow_pickle=False)
        meta = json.loads(bytes(data["metadata"]).decode())
    except (OSError, ValueError, KeyError) as exc:
        raise HeadsError(f"{path} is not a heads artifact: {exc}") from exc
    if meta.get("layout") != FEATURE_LAYOUT:
        raise HeadsError(
            f"{path} was trained for feature layout {meta.get('layout')!r}; this version "
            f"computes {FEATURE_LAYOUT!r}: retrain with `standpoint train`"
        )
    if model_id is not None and meta.get("model_id") != model_id:
        raise HeadsError(
            f"{path} was trained on {meta.get('model_id')!r} features, but the loaded model is "
            f"{model_id!r}: train heads for it with `standpoint train` or set STANDPOINT_MODEL"
        )
    heads = {
        name: Logistic.from_arrays(name, list(classes), data)
        for name, classes in meta["classes"].items()
    }
    keep = {"model_id", "layer", "pooling", "layout", "thresholds", "classes"}
    return Heads(
        model_id=meta["model_id"],
        layer=int(meta["layer"]),
        pooling=str(meta["pooling"]),
        heads=heads,
        thresholds={k: float(v) for k, v in meta["thresholds"].items()},
        metadata={k: v for k, v in meta.items() if k not in keep},
        layout=meta["layout"],
        sha256=hashlib.sha256(raw).hexdigest(),
    )
