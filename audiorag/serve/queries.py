"""Search routes: a moment of an indexed track, an uploaded clip, a description, a blend, or a hum;
re-ranking options (:mod:`audiorag.rerank`) on the audio ones."""

from __future__ import annotations

import dataclasses
import io
import time
from typing import Annotated

import numpy as np
import soundfile as sf
from fastapi import APIRouter, Form, Query, Request, Response
from starlette.exceptions import HTTPException

from ..audio import load_clip
from ..errors import AudioDecodeError, UnusableClipError
from ..library import Library
from ..library.shards import ShardedLibrary
from ..rerank import Rerank
from ..search import Query as SearchQuery
from ..search import context, hit_columns, search
from .answers import column_hits, json_response, table_hits
from .contract import errors
from .forms import OptionalUpload, PlainSearchForm, SearchForm, SearchParams, Upload
from .models import RERANK, SearchBase, SearchResult, TextQuery
from .tracks import ApiError, Lib, filters, library, moment_position

router = APIRouter(tags=["search"])
_KEYS: dict = {}


def parse_rerank(text: str | None) -> Rerank | None:
    """``"diversity=0.3,max_per_artist=2,mood=calm"`` → an :class:`audiorag.rerank.Rerank` (``None``: no re-ranking).

    >>> parse_rerank("diversity=0.3, mood=calm").mood_weight, parse_rerank(None)
    (0.3, None)
    """
    if text is None or not text.strip():
        return None
    given = {}
    for item in text.split(","):
        name, sep, value = (p.strip() for p in item.partition("="))
        if not sep or name not in RERANK:
            raise HTTPException(422, f"rerank: expected NAME=VALUE,... with NAME one of {', '.join(RERANK)}; "
                                     f"got {item.strip()[:60]!r}")
        if name == "mood":
            given[name] = value
            continue
        try:
            given[name] = int(value) if name.startswith("max_per") else float(value)
        except ValueError:
            raise HTTPException(422, f"rerank: {name} must be a number, got {value[:40]!r}") from None
    if "mood" in given:
        given.setdefault("mood_weight", 0.3)  # as `audiorag search --mood`
    return Rerank(**given)


def run_search(lib: Library, query: SearchQuery, options: SearchBase, *, exclude_same_track: bool = False,
               described: dict) -> Response:
    """``search()`` with the request's options (re-ranked when they are :class:`SearchOptions` with
    ``rerank``), as the response: a :class:`~.models.SearchResult` body (:mod:`.answers`). A plain vector query
    takes its hits as columns (:func:`audiorag.search.hit_columns`), without the table ``search()`` builds."""
    rerank = parse_rerank(getattr(options, "rerank", None))
    by = options.by
    if rerank is not None and by == "track":  # re-ranking returns moments: one per track is its cap
        rerank, by = dataclasses.replace(rerank, max_per_track=1), "segment"
    where = filters(lib, options.where, search=True)
    t0 = time.perf_counter()
    if rerank is None and plain_query(lib, query, options):
        _, cols = hit_columns(lib, query, embedder=options.embedder, k=options.k, index=options.index,
                              exclude_same_track=exclude_same_track, filters=where, by=by)
        took, hits, attrs = time.perf_counter() - t0, column_hits(lib, cols), {}
    else:
        table = search(lib, query, embedder=options.embedder, k=options.k, index=options.index,
                       exclude_same_track=exclude_same_track, filters=where, by=by, rerank=rerank)
        took, hits, attrs = time.perf_counter() - t0, table_hits(table), table.attrs
    matched = attrs.get("matched_tags")
    return json_response({"query": described, "embedding": _embedding_key(lib, options, query.kind),
                          "generation": lib.generation, "took_ms": round(took * 1000, 3),
                          "matched_tags": {t: float(w) for t, w in matched.items()} if matched else None,
                          "missing_shards": attrs.get("missing_shards", []), "hits": hits})


def plain_query(lib: Library, query: SearchQuery, options: SearchBase) -> bool:
    """Whether :func:`audiorag.search.hit_columns` answers ``query``: a moment or an audio clip (a text or hybrid
    query only with a text tower; never a hum) on a library that is not sharded (``search()`` reports the
    shards that did not answer)."""
    if isinstance(lib, ShardedLibrary) or query.kind == "hum":
        return False
    return query.kind in ("moment", "audio") or context(lib, options.embedder, options.index, text=True).emb.has_text


def _embedding_key(lib: Library, options: SearchBase, kind: str) -> str:
    """The key of the embedding a search ran on (remembered per generation: a generation never changes)."""
    key = (str(lib.data), options.embedder, options.index, kind)
    if key not in _KEYS:
        from ..search import context
        if len(_KEYS) > 256:
            _KEYS.clear()
        _KEYS[key] = context(lib, options.embedder, options.index, text=kind in ("text", "hybrid")).emb.key
    return _KEYS[key]


def decode_upload(data: bytes, start: float | None, end: float | None, max_clip: float) -> tuple[np.ndarray, int]:
    """An uploaded file's ``[start, end)`` as mono float32 at its own rate; the decoder decides what
    it is (the declared content type is not trusted: 415 when it is not audio); a span holding no
    audio → 416; longer than ``max_clip`` seconds → 413."""
    if start is not None and end is not None and end <= start:
        raise HTTPException(416, f"end: must be after start ({start:g}), got {end:g}")
    if not data:
        raise ApiError(415, "undecodable_audio", "upload: empty file (0 bytes)")
    try:
        header = sf.info(io.BytesIO(data))
        total = header.frames / header.samplerate
    except Exception:  # noqa: BLE001 - load() below names the decoder's reason
        total = None
    if total is not None:
        span = min(end or total, total) - (start or 0.0)
        if span > max_clip:
            raise HTTPException(413, f"file: the clip is {span:.1f} s long, the limit is {max_clip:g} s "
                                     "(--max-clip); send a shorter span with start/end")
        if start is not None and start >= total:
            raise HTTPException(416, f"start: {start:g} s is beyond the end of the upload ({total:.2f} s)")
    named = io.BytesIO(data)
    named.name = "upload"  # how the decoder's messages name it
    try:  # the query side's one loader: its checks, its errors
        clip = load_clip(named, start=start, end=end)
    except UnusableClipError as exc:  # audio, but not a clip one can search with
        raise HTTPException(422, f"file: {exc.reason}") from None
    except AudioDecodeError as exc:  # the content is not audio this server decodes (RFC 9110: 415)
        raise ApiError(415, "undecodable_audio", str(exc)) from None
    if clip.duration > max_clip + 1e-6:  # a header may understate what decodes
        raise HTTPException(413, f"file: the clip is longer than the {max_clip:g} s limit (--max-clip)")
    return clip.y, clip.sr


_SEARCH_ERRORS = errors(404, 409, 416)
_UPLOAD_ERRORS = errors(409, 415, 416)


@router.get("/search/moment", response_model=SearchResult, responses=_SEARCH_ERRORS)
async def moment(lib: Lib, options: SearchParams,
                 track: Annotated[int, Query(ge=0, le=2**53, description="an indexed track's id")],
                 at: Annotated[float, Query(ge=0, allow_inf_nan=False, description="seconds into the track")] = 0.0,
                 exclude_same_track: bool = False) -> Response:
    """Moments like ``at`` seconds into ``track`` (the library's own segment there: no decoding; about
    a millisecond, so it runs on the event loop, never queued behind uploads)."""
    moment_position(lib, track, at)
    return run_search(lib, SearchQuery.moment(track, at), options, exclude_same_track=exclude_same_track,
                      described={"kind": "moment", "track": track, "at": at})


@router.post("/search/audio", response_model=SearchResult, responses=_UPLOAD_ERRORS)
async def audio(request: Request, clip: Upload, options: SearchForm) -> Response:
    """Moments like an uploaded clip (of its ``[start, end)`` span); a clip longer than one window is
    matched as a sequence of windows."""
    state = request.app.state
    lib = await library(request)

    def work():
        y, sr = decode_upload(clip.data, clip.start, clip.end, state.settings.max_clip)
        return run_search(lib, SearchQuery.audio(y, sr=sr), options, described={
            "kind": "audio", "seconds": round(len(y) / sr, 3), "start": clip.start, "end": clip.end})
    return await state.pool.run(work)


@router.post("/search/text", response_model=SearchResult, responses=errors(409))
async def text(request: Request, body: TextQuery) -> Response:
    """Moments matching a description: in a text tower's space (CLAP), else a tagger's tag space.
    409 when the library has neither."""
    lib = await library(request)
    check_text(lib)
    return await request.app.state.pool.run(
        lambda: run_search(lib, SearchQuery.text(body.text), body, described={"kind": "text", "text": body.text}))


def check_text(lib: Library, *, tower: bool = False) -> None:
    """409 when no embedding of the library can take a text query (``tower``: a hybrid one)."""
    usable = [e for e in lib.embeddings() if e.has_text or (e.is_tagger and not tower)]
    if not usable:
        present = ", ".join(e.key for e in lib.embeddings()) or "none"
        need = "a text tower (clap)" if tower else "a text tower (clap) or a tagger (musicnn-mtt)"
        raise ApiError(409, "no_text_embedding", f"{'hybrid' if tower else 'text'} queries need an embedding with "
                                                 f"{need}; this library has {present}")


@router.post("/search/hybrid", response_model=SearchResult, responses=errors(404, 409, 415, 416))
async def hybrid(request: Request, text: Annotated[str, Form(min_length=1, max_length=1000)],
                 clip: OptionalUpload, options: SearchForm,
                 alpha: Annotated[float, Form(ge=0, le=1, allow_inf_nan=False,
                                              description="weight of the text; 1 - alpha: the audio")] = 0.7,
                 track: Annotated[int | None, Form(ge=0, le=2**53)] = None,
                 at: Annotated[float, Form(ge=0, allow_inf_nan=False)] = 0.0) -> Response:
    """``alpha``·text + (1 − ``alpha``)·audio, the audio an upload or a moment (``track``, ``at``);
    needs an embedder with a text tower (CLAP)."""
    state = request.app.state
    lib = await library(request)
    check_text(lib, tower=True)
    if (clip.data is None) == (track is None):
        raise HTTPException(422, "file: give an audio file or a track (with at), not both")
    if track is not None:
        moment_position(lib, track, at)

    def work():
        if clip.data is None:
            part = SearchQuery.moment(track, at)
        else:
            y, sr = decode_upload(clip.data, clip.start, clip.end, state.settings.max_clip)
            part = SearchQuery.audio(y, sr=sr)
        return run_search(lib, SearchQuery.hybrid(text, part, alpha=alpha), options, exclude_same_track=False,
                          described={"kind": "hybrid", "text": text, "alpha": alpha, "track": track, "at": at})
    return await state.pool.run(work)


@router.post("/search/hum", response_model=SearchResult, responses=_UPLOAD_ERRORS)
async def hum(request: Request, clip: Upload, options: PlainSearchForm) -> Response:
    """The recordings and moments a hummed phrase comes from (the library's ``melody`` embedding;
    409 without one, 422 when the upload holds no melody)."""
    state = request.app.state
    lib = await library(request)
    melodies = [e.key for e in lib.embeddings() if e.kind == "melody"]
    if not melodies:
        raise ApiError(409, "no_melody_embedding", "hum queries need the melody embedding; add it with: "
                                                   "audiorag build LIBRARY --embedder melody ...")
    if options.embedder is None:
        if len(melodies) > 1:
            raise ApiError(409, "ambiguous_embedding", f"several melody embeddings ({', '.join(melodies)}); "
                                                       "name one with embedder")
        options = options.model_copy(update={"embedder": melodies[0]})

    def work():
        y, sr = decode_upload(clip.data, clip.start, clip.end, state.settings.max_clip)
        return run_search(lib, SearchQuery.hum(y, sr=sr), options, described={
            "kind": "hum", "seconds": round(len(y) / sr, 3), "start": clip.start, "end": clip.end})
    return await state.pool.run(work)
