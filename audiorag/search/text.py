"""Text queries in a tagger's tag space (embedders without a text tower): segments ranked by their tag
probabilities against the tags the text matches (:mod:`audiorag.embedders.text`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..embedders.text import score_segments, tag_query
from .context import allowed_tracks
from .hits import per_track, with_metadata


def text_search(lib, ctx, text: str, *, k: int, filters, by: str) -> pd.DataFrame:
    """Rank segments by their tag probabilities against the tags ``text`` matches.

    The matched tags and weights are in ``hits.attrs["matched_tags"]``, and each hit
    carries its probability for every matched tag (``tag:<name>`` columns).
    """
    emb = lib.tagger(ctx.emb.key)
    matched = tag_query(text, emb.tag_names)
    cols = [emb.tag_names.index(t) for t in matched]
    tags = lib.tags(embedder=emb.key).to_numpy()[:, cols]
    scores = score_segments(tags, np.array(list(matched.values())))
    lay = ctx.layout
    allowed = allowed_tracks(lib, filters)
    ok = emb.valid_rows(lay.seg_track) & (True if allowed is None else np.isin(lay.seg_track, allowed))
    ids = np.flatnonzero(ok)
    ids = ids[np.lexsort((ids, -scores[ids]))]  # score descending, then segment order
    hits = per_track(lay.hits(ids, scores[ids]), by, k)
    for t, c in zip(matched, range(len(cols))):
        hits[f"tag:{t}"] = tags[hits["segment_id"], c]
    out = with_metadata(ctx, hits)
    out.attrs["matched_tags"] = matched
    return out
