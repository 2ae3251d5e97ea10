"""Search routes: a moment of an indexed track, an uploaded clip, a description, a blend, or a hum;
re-ranking options (:mod:`audiorag.rerank`) on the audio ones."""

from __future__ import annotations

import io
import os
import time
from typing import Annotated

import numpy as np
import soundfile as sf
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from starlette.exceptions import HTTPException

from ..audio import load_clip
from ..errors import AudioDecodeError
from ..library import Library
from ..rerank import Rerank
from ..search import Query as SearchQuery
from ..search import search
from .models import RERANK, By, SearchOptions, SearchResult, TextQuery
from .tracks import ApiError, Lib, audio_url, filters, library, plain, track_position

router = APIRouter(tags=["search"])
_KEYS: dict = {}
_HIT_FIELDS = ("rank", "track_id", "segment_id", "start", "end", "score", "n_segments")
K = Annotated[int, Query(ge=1, le=1000, description="number of hits")]
Name = Annotated[str | None, Query(max_length=200)]
Where = Annotated[list[str], Query(max_length=32, description="filters COLUMN=VALUE, or !=, >=, <=, >, <")]
RERANK_HELP = "re-rank k x 10 candidates: NAME=VALUE,... (diversity, max_per_track, max_per_artist, harmonic, " \
              "tempo, key, mood, mood_weight; docs/recommend.md)"


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


def run_search(lib: Library, query: SearchQuery, options: SearchOptions, *, exclude_same_track: bool = False,
               described: dict) -> SearchResult:
    """``search()`` with the request's options, as the response body."""
    rerank = parse_rerank(options.rerank)
    if rerank is not None and query.kind in ("text", "hum"):
        raise HTTPException(422, f"rerank: {query.kind} queries are not re-ranked")
    t0 = time.perf_counter()
    hits = search(lib, query, embedder=options.embedder, k=options.k, index=options.index,
                  exclude_same_track=exclude_same_track, filters=filters(options.where), by=options.by,
                  rerank=rerank)
    took = (time.perf_counter() - t0) * 1000
    matched = hits.attrs.get("matched_tags")
    columns = {c: values.tolist() for c, values in hits.items()}
    out = []
    for i in range(len(hits)):
        row = {c: plain(v[i]) for c, v in columns.items()}
        tags = {c[4:]: row[c] for c in row if c.startswith("tag:")} or None
        meta = {c: v for c, v in row.items() if c not in (*_HIT_FIELDS, "uri", "track_duration") and
                not c.startswith("tag:")}
        out.append({**{c: row[c] for c in _HIT_FIELDS if c in row}, "file": os.path.basename(str(row.get("uri", ""))),
                    "metadata": meta, "tags": tags, "audio": audio_url(row["track_id"], row["start"], row["end"])})
    return SearchResult(query=described, embedding=_embedding_key(lib, options, query.kind),
                        generation=lib.generation, took_ms=round(took, 3),
                        matched_tags={t: float(w) for t, w in matched.items()} if matched else None, hits=out)


def _embedding_key(lib: Library, options: SearchOptions, kind: str) -> str:
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
    it is (the declared content type is not trusted); longer than ``max_clip`` seconds → 422."""
    if start is not None and end is not None and end <= start:
        raise HTTPException(422, f"end: must be after start ({start:g}), got {end:g}")
    if not data:
        raise AudioDecodeError("upload", "empty file (0 bytes)")
    try:
        header = sf.info(io.BytesIO(data))
        total = header.frames / header.samplerate
    except Exception:  # noqa: BLE001 - load() below names the decoder's reason
        total = None
    if total is not None:
        span = min(end or total, total) - (start or 0.0)
        if span > max_clip:
            raise HTTPException(422, f"file: the clip is {span:.1f} s long, the limit is {max_clip:g} s "
                                     "(--max-clip); send a shorter span with start/end")
        if start is not None and start >= total:
            raise HTTPException(422, f"start: {start:g} s is beyond the end of the upload ({total:.2f} s)")
    named = io.BytesIO(data)
    named.name = "upload"  # how the decoder's messages name it
    clip = load_clip(named, start=start, end=end)  # the query side's one loader: its checks, its errors
    if clip.duration > max_clip + 1e-6:  # a header may understate what decodes
        raise HTTPException(422, f"file: the clip is longer than the {max_clip:g} s limit (--max-clip)")
    return clip.y, clip.sr


async def read_upload(file: UploadFile) -> bytes:
    await file.seek(0)
    return await file.read()


@router.get("/search/moment", response_model=SearchResult)
async def moment(lib: Lib, track: Annotated[int, Query(ge=0, le=2**63 - 1, description="an indexed track's id")],
           at: Annotated[float, Query(ge=0, allow_inf_nan=False, description="seconds into the track")] = 0.0,
           k: K = 10, embedder: Name = None, index: Name = None, by: By = "segment",
           exclude_same_track: bool = False, where: Where = [],  # noqa: B006
           rerank: Annotated[str | None, Query(max_length=300, description=RERANK_HELP)] = None) -> SearchResult:
    """Moments like ``at`` seconds into ``track`` (the library's own segment there: no decoding; about
    a millisecond, so it runs on the event loop, never queued behind uploads)."""
    track_position(lib, track)
    options = SearchOptions(k=k, embedder=embedder, index=index, by=by, where=where, rerank=rerank)
    return run_search(lib, SearchQuery.moment(track, at), options, exclude_same_track=exclude_same_track,
                      described={"kind": "moment", "track": track, "at": at})


@router.post("/search/audio", response_model=SearchResult)
async def audio(request: Request, file: Annotated[UploadFile, File(description="an audio file (WAV, FLAC, OGG, MP3)")],
                start: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
                end: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
                k: Annotated[int, Form(ge=1, le=1000)] = 10,
                embedder: Annotated[str | None, Form(max_length=200)] = None,
                index: Annotated[str | None, Form(max_length=200)] = None,
                by: Annotated[By, Form()] = "segment",
                where: Annotated[list[str], Form(max_length=32)] = [],  # noqa: B006
                rerank: Annotated[str | None, Form(max_length=300, description=RERANK_HELP)] = None) -> SearchResult:
    """Moments like an uploaded clip (of its ``[start, end)`` span); a clip longer than one window is
    matched as a sequence of windows."""
    state = request.app.state
    data = await read_upload(file)
    options = SearchOptions(k=k, embedder=embedder, index=index, by=by, where=where, rerank=rerank)
    lib = await library(request)

    def work():
        y, sr = decode_upload(data, start, end, state.settings.max_clip)
        return run_search(lib, SearchQuery.audio(y, sr=sr), options, described={
            "kind": "audio", "seconds": round(len(y) / sr, 3), "start": start, "end": end})
    return await state.pool.run(work)


@router.post("/search/text", response_model=SearchResult)
async def text(request: Request, body: TextQuery) -> SearchResult:
    """Moments matching a description: in a text tower's space (CLAP), else a tagger's tag space.
    409 when the library has neither."""
    lib = await library(request)
    if body.embedder is None:
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


@router.post("/search/hybrid", response_model=SearchResult)
async def hybrid(request: Request, text: Annotated[str, Form(min_length=1, max_length=1000)],
                 alpha: Annotated[float, Form(ge=0, le=1, allow_inf_nan=False,
                                              description="weight of the text; 1 - alpha: the audio")] = 0.7,
                 file: Annotated[UploadFile | None, File(description="an audio clip, or give track and at")] = None,
                 track: Annotated[int | None, Form(ge=0, le=2**63 - 1)] = None,
                 at: Annotated[float, Form(ge=0, allow_inf_nan=False)] = 0.0,
                 start: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
                 end: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
                 k: Annotated[int, Form(ge=1, le=1000)] = 10,
                 embedder: Annotated[str | None, Form(max_length=200)] = None,
                 index: Annotated[str | None, Form(max_length=200)] = None,
                 by: Annotated[By, Form()] = "segment",
                 where: Annotated[list[str], Form(max_length=32)] = [],  # noqa: B006
                 rerank: Annotated[str | None, Form(max_length=300, description=RERANK_HELP)] = None) -> SearchResult:
    """``alpha``·text + (1 − ``alpha``)·audio, the audio an upload or a moment (``track``, ``at``);
    needs an embedder with a text tower (CLAP)."""
    state = request.app.state
    if (file is None) == (track is None):
        raise HTTPException(422, "file: give an audio file or a track (with at), not both")
    lib = await library(request)
    if embedder is None:
        check_text(lib, tower=True)
    if track is not None:
        track_position(lib, track)
    data = await read_upload(file) if file is not None else None
    options = SearchOptions(k=k, embedder=embedder, index=index, by=by, where=where, rerank=rerank)

    def work():
        if data is None:
            part = SearchQuery.moment(track, at)
        else:
            y, sr = decode_upload(data, start, end, state.settings.max_clip)
            part = SearchQuery.audio(y, sr=sr)
        return run_search(lib, SearchQuery.hybrid(text, part, alpha=alpha), options, exclude_same_track=False,
                          described={"kind": "hybrid", "text": text, "alpha": alpha, "track": track, "at": at})
    return await state.pool.run(work)


@router.post("/search/hum", response_model=SearchResult)
async def hum(request: Request, file: Annotated[UploadFile, File(description="a hummed, sung or whistled phrase")],
              start: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
              end: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
              k: Annotated[int, Form(ge=1, le=1000)] = 10,
              embedder: Annotated[str | None, Form(max_length=200)] = None,
              index: Annotated[str | None, Form(max_length=200)] = None,
              by: Annotated[By, Form()] = "segment",
              where: Annotated[list[str], Form(max_length=32)] = []) -> SearchResult:  # noqa: B006
    """The recordings and moments a hummed phrase comes from (the library's ``melody`` embedding;
    409 without one, 422 when the upload holds no melody)."""
    state = request.app.state
    lib = await library(request)
    if embedder is None:
        melodies = [e.key for e in lib.embeddings() if e.kind == "melody"]
        if not melodies:
            raise ApiError(409, "no_melody_embedding", "hum queries need the melody embedding; add it with: "
                                                       "audiorag build LIBRARY --embedder melody ...")
        if len(melodies) > 1:
            raise ApiError(409, "ambiguous_embedding", f"several melody embeddings ({', '.join(melodies)}); "
                                                       "name one with embedder")
        embedder = melodies[0]
    data = await read_upload(file)
    options = SearchOptions(k=k, embedder=embedder, index=index, by=by, where=where)

    def work():
        y, sr = decode_upload(data, start, end, state.settings.max_clip)
        return run_search(lib, SearchQuery.hum(y, sr=sr), options, described={
            "kind": "hum", "seconds": round(len(y) / sr, 3), "start": start, "end": end})
    return await state.pool.run(work)
