"""Routes over the library's contents: health, stats, tracks (paged, filtered) and a moment's audio."""

from __future__ import annotations

import math
import os
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import AudioDecodeError
from ..library import Library
from ..library.ingest import TRACK_COLUMNS
from ..search.filters import PRIVATE_TRACK_COLUMNS, parse_where, public_columns, track_mask
from .contract import check_where, errors, vocabulary
from .media import MEDIA_TYPES, parse_range
from .models import AudioFormat, EmbeddingStats, Health, IndexStats, Stats, Track, TrackPage

router = APIRouter()
TrackId = Annotated[int, Path(ge=0, le=2**53, description="a track id (from /tracks or a search hit)")]
_STATS: dict = {}
_POSITIONS: dict = {}


async def library(request: Request) -> Library:
    """The library at its latest committed generation, for one request (async: no thread hop, it
    reads one small file; a new generation is opened in a thread, :meth:`.state.Libraries.latest`)."""
    return await request.app.state.libraries.latest()


Lib = Annotated[Library, Depends(library)]


def audio_url(track_id: int, start: float | None = None, end: float | None = None) -> str:
    """The URL path of a track's audio (of ``[start, end)`` when given).

    >>> audio_url(3, 12.0, 22.0), audio_url(3, 12345.678, 12355.678)
    ('/tracks/3/audio?start=12&end=22', '/tracks/3/audio?start=12345.678&end=12355.678')
    """
    if start is None:
        return f"/tracks/{track_id}/audio"
    return f"/tracks/{track_id}/audio?start={round(start, 3):.12g}&end={round(end, 3):.12g}"


def plain(value):
    """A table cell as JSON: numpy scalars as Python numbers, NaN and NA as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def track_position(lib: Library, track_id: int) -> int:
    """The row of ``track_id`` in ``lib.tracks`` (a lookup table per generation), else 404."""
    position = positions(lib)[0].get(track_id)
    if position is None:
        raise HTTPException(404, f"track {track_id} is not in this library")
    return position


def moment_position(lib: Library, track_id: int, at: float, field: str = "at") -> int:
    """:func:`track_position`, and 416 when ``at`` seconds lie beyond the track's end (no moment there: a time
    outside the audio, as for uploads and audio spans)."""
    position = track_position(lib, track_id)
    duration = positions(lib)[1][position]
    if at > duration:
        raise HTTPException(416, f"{field}: {at:g} s is beyond the end of track {track_id} ({duration:g} s)")
    return position


def positions(lib: Library) -> tuple[dict[int, int], list[float]]:
    """Track id → row of ``lib.tracks``, and each row's duration (made once per generation)."""
    key = str(lib.data)
    found = _POSITIONS.get(key)
    if found is None:
        if len(_POSITIONS) > 16:
            _POSITIONS.clear()
        tracks = lib.tracks
        found = _POSITIONS[key] = ({int(t): i for i, t in enumerate(tracks["track_id"].tolist())},
                                   [float(d) for d in tracks["duration"].tolist()])
    return found


def track_row(lib: Library, track_id: int) -> pd.Series:
    """The track's row, else 404."""
    return lib.tracks.iloc[track_position(lib, track_id)]


def public_metadata(row: dict, drop: tuple = ()) -> dict:
    """A row's cells a client may see: none of :data:`~audiorag.search.filters.PRIVATE_TRACK_COLUMNS`
    (the file's path, its hash, decoding facts), none of ``drop``.

    >>> public_metadata({"uri": "/music/a.wav", "content_hash": "ab", "genre": "rock", "rank": 1}, ("rank",))
    {'genre': 'rock'}
    """
    return {k: v for k, v in row.items() if k not in PRIVATE_TRACK_COLUMNS and k not in drop}


def to_track(row) -> Track:
    meta = {k: plain(v) for k, v in public_metadata(dict(row), ("track_id", "duration")).items()}
    return Track(track_id=int(row["track_id"]), duration=plain(row["duration"]),
                 file=os.path.basename(str(row["uri"])), metadata=meta, audio=audio_url(int(row["track_id"])))


class ApiError(HTTPException):
    """An error answered with its own code in ``{error, detail}``."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(status, detail)
        self.code = code


def filters(lib: Library, where: list[str], *, search: bool) -> dict | None:
    """``where`` conditions (``COLUMN=VALUE``, ``!=``, ``>=``...) → the filters of :func:`audiorag.search.search`
    (``search``: the segments' descriptors too); each must match the schema's pattern of public columns
    and values of their kind (the server's file paths are not a column clients may probe)."""
    vocab = vocabulary(lib)
    check_where(where, vocab.search_where if search else vocab.track_where)
    return parse_where(where, option="where") or None


@router.get("/health", response_model=Health, tags=["library"])
async def health(request: Request, lib: Lib) -> Health:
    """Liveness, warm-up (``warming`` until one query of each kind ran) and the generation served (never needs
    a token)."""
    return Health(status="ok" if request.app.state.warmer.ready.is_set() else "warming", version=__version__,
                  library=lib.path.name, generation=lib.generation)


@router.get("/stats", response_model=Stats, tags=["library"])
def stats(lib: Lib, column: Annotated[list[str], Query(
        max_length=32, description="count tracks per value of these columns (default: every text column "
                                   "with at most 200 values)")] = []) -> Stats:  # noqa: B006
    """Tracks, segments, hours, per-label counts, embeddings and their indexes (measured recall, bytes)."""
    key = (str(lib.data), tuple(column))
    if key not in _STATS:
        if len(_STATS) > 64:
            _STATS.clear()
        _STATS[key] = _stats(lib, column)
    return _STATS[key]


def _stats(lib: Library, columns: list[str]) -> Stats:
    info = lib.info()
    tracks = lib.tracks
    if columns:
        unknown = [c for c in columns if c not in public_columns(tracks)]
        if unknown:
            raise HTTPException(422, f"column: no track column {unknown[0]!r}; columns: "
                                     f"{', '.join(public_columns(tracks))}")
    else:
        columns = [c for c in tracks.columns if c not in TRACK_COLUMNS and not pd.api.types.is_numeric_dtype(
            tracks[c]) and tracks[c].astype(str).nunique() <= 200]
    labels = {c: {str(k): int(v) for k, v in tracks[c].dropna().astype(str).value_counts().head(1000).items()}
              for c in columns}
    embeddings = []
    for e in info["embeddings"]:
        emb = lib.embedding(e["key"])
        indexes = [IndexStats(name=i["name"], factory=i["factory"], n=i["n"] or 0,
                              recall=(i.get("quality") or {}).get("recall@10"),
                              bytes_per_segment=i.get("bytes_per_segment"), search_params=i.get("search_params"))
                   for i in e["indexes"]]
        embeddings.append(EmbeddingStats(key=e["key"], name=e["name"], dim=e["dim"], n_segments=e["n_segments"],
                                         text="tower" if emb.has_text else "tags" if emb.is_tagger else None,
                                         indexes=indexes))
    return Stats(generation=info["generation"], tracks=info["tracks"], segments=info["segments"],
                 hours=info["hours"], segmentation=info["segmentation"], labels=labels, embeddings=embeddings,
                 default_embedding=info.get("default_embedding"), errors=info["errors"])


@router.get("/tracks", response_model=TrackPage, tags=["library"])
async def list_tracks(lib: Lib, offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                where: Annotated[list[str], Query(max_length=32, description=(
                    "filters on any track column: COLUMN=VALUE (repeat for alternatives), or !=, >=, <=, >, <; "
                    "numeric columns compare as numbers"))] = []) -> TrackPage:  # noqa: B006
    """The tracks passing every filter, in track id order, a page at a time (search by filters)."""
    tracks = lib.tracks
    conditions = filters(lib, where, search=False)
    if conditions:
        tracks = tracks[track_mask(tracks, conditions, what="where")]
    tracks = tracks.sort_values("track_id", kind="stable")
    page = tracks.iloc[offset:offset + limit]
    return TrackPage(total=len(tracks), offset=offset, limit=limit, tracks=[to_track(r) for _, r in page.iterrows()])


@router.get("/tracks/{track_id}", response_model=Track, tags=["library"], responses=errors(404))
async def get_track(lib: Lib, track_id: TrackId) -> Track:
    """One track's metadata."""
    return to_track(track_row(lib, track_id))


@router.get("/tracks/{track_id}/audio", tags=["library"], response_class=Response,
            responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}, 206: {"description": "a byte range"},
                       **errors(404, 409, 410, 416)})
async def track_audio(request: Request, lib: Lib, track_id: TrackId,
                      start: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 0.0,
                      end: Annotated[float | None, Query(gt=0, allow_inf_nan=False,
                                                         description="default: the track's end")] = None,
                      format: Annotated[AudioFormat, Query(description="wav, ogg or mp3")] = "wav",
                      range: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
    """The moment ``[start, end)`` of a track as a file for a player (``Range`` requests answered with 206;
    416 for a byte range or a time span outside the audio).

    Read only from the file the library indexed, and only while it still holds the indexed content."""
    settings = request.app.state.settings
    row = track_row(lib, track_id)
    duration = float(row["duration"])
    end = duration if end is None else min(end, duration)
    rate = int(row["sample_rate"])
    # the decoder counts samples: 29.99999 s is the end of 30 s (and 1e307 s is past it before any rounding)
    if start >= duration or round(start * rate) >= round(duration * rate):
        raise HTTPException(416, f"start: {start:g} s is beyond the end of track {track_id} ({duration:g} s)")
    if end <= start:
        raise HTTPException(416, f"end: must be after start ({start:g} s), got {end:g}")
    if round((end - start) * rate) < 1:
        raise HTTPException(416, f"end: the span {start:g}-{end:g} s holds no sample at {rate} Hz")
    if end - start > settings.max_span:
        raise HTTPException(422, f"end: at most {settings.max_span:g} s of audio per request, asked {end - start:g}")
    try:
        data = await request.app.state.pool.run(request.app.state.moments.get, str(row["uri"]),
                                                str(row["content_hash"]), start, end, format)
    except FileNotFoundError:
        raise HTTPException(410, f"the file of track {track_id} is gone from the server") from None
    except AudioDecodeError as exc:  # the track's own file: its name, never where the server keeps it
        raise HTTPException(409, f"the file of track {track_id} ({os.path.basename(str(row['uri']))}) "
                                 f"no longer decodes: {exc.reason}") from None
    span = parse_range(range, len(data))
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600",
               "Content-Disposition": f'inline; filename="track{track_id}-{start:g}-{end:g}.{format}"'}
    if span is None:
        raise HTTPException(416, f"range {range!r} is outside the {len(data)} bytes",
                            headers={"Content-Range": f"bytes */{len(data)}"})
    first, last, partial = span
    if partial:
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        return Response(data[first:last + 1], 206, headers=headers, media_type=MEDIA_TYPES[format])
    return Response(data, 200, headers=headers, media_type=MEDIA_TYPES[format])
