"""``POST /recommend``: moments for a listener who liked some moments and played some tracks
(:func:`audiorag.recommend.recommend`: tastes, MMR diversity, caps, harmony/tempo/key, mood, discovery)."""

from __future__ import annotations

import os
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StringConstraints
from starlette.exceptions import HTTPException

from ..errors import ParameterError
from ..recommend import parse_moment
from ..recommend import recommend as run_recommend
from .contract import errors
from .models import Hit, JsonBody
from .tracks import audio_url, library, moment_position, plain, public_metadata, track_position

router = APIRouter(tags=["search"])
_FIELDS = ("rank", "track_id", "segment_id", "start", "end", "score")
#: a liked moment TRACK@SECONDS as the schema states it (what :func:`audiorag.recommend.parse_moment` reads)
MOMENT_PATTERN = r"^[0-9]{1,18}(@(?:[0-9]{1,9}(?:\.[0-9]{0,6})?|\.[0-9]{1,6}))?$"


#: an hour of the day
Hour = Annotated[int, Field(ge=0, le=23)]


class RecommendQuery(JsonBody):
    # `"discovery": false` is not a share (schemathesis); `"k": 2.0` is the count 2, as in JSON Schema

    liked: list[Annotated[str, StringConstraints(pattern=MOMENT_PATTERN)]] = Field(
        min_length=1, max_length=100, examples=[["3@12", "7@4.5"]],
                             description="liked moments TRACK@SECONDS, oldest first")
    history: list[int] = Field(default_factory=list, max_length=10_000,
                               description="tracks played: never recommended, their artists are known")
    k: int = Field(10, ge=1, le=200)
    diversity: float = Field(0.3, ge=0, le=1, description="MMR: 0 relevance only, 1 novelty only")
    max_per_track: int | None = Field(1, ge=1, description="null: no cap")
    max_per_artist: int | None = Field(2, ge=1, description="null: no cap")
    harmonic: float = Field(0.2, ge=0, le=10)
    tempo: float = Field(0.1, ge=0, le=10)
    key: float = Field(0.1, ge=0, le=10)
    mood: Literal["calm", "energetic", "dark", "bright", "happy", "sad"] | None = None
    time_of_day: Literal["morning", "afternoon", "evening", "night"] | Hour | None = Field(
        None, description="a mood prior when mood is not given (or an hour 0-23)")
    discovery: float | None = Field(None, ge=0, le=1, description="at least this share of moments by new artists")
    embedder: str | None = Field(None, max_length=200)
    index: str | None = Field(None, max_length=200)


class MoodInferred(BaseModel):
    mood: str
    valence: float
    arousal: float
    confidence: float
    likes: int = Field(description="liked moments it was estimated from")
    played: int = Field(description="played tracks it was estimated from")


class Recommended(BaseModel):
    generation: int
    took_ms: float
    tastes: int
    discovery: float = Field(description="share of the moments by artists new to the listener")
    mood: str | None
    mood_inferred: MoodInferred | None = Field(None, description="when neither mood nor time_of_day was given: the "
                                               "listener's mood estimated from the liked and played moments")
    hits: list[Hit]


@router.post("/recommend", response_model=Recommended, responses=errors(404, 409, 416))
async def recommend(request: Request, body: RecommendQuery) -> Recommended:
    """``k`` moments for this listener; each hit's ``metadata`` holds its factors (``contrib:*`` sum to
    ``score``), its taste and whether its artist is new."""
    lib = await library(request)
    try:
        liked = [parse_moment(m) for m in body.liked]
    except ParameterError as exc:
        raise HTTPException(422, f"liked: {exc}") from None
    for i, (track_id, at) in enumerate(liked):
        moment_position(lib, track_id, at, f"liked[{i}]")
    for track_id in body.history:
        track_position(lib, track_id)

    def work():
        t0 = time.perf_counter()
        out = run_recommend(lib, liked, history=body.history, k=body.k, embedder=body.embedder, index=body.index,
                            diversity=body.diversity, max_per_track=body.max_per_track,
                            max_per_artist=body.max_per_artist, harmonic=body.harmonic, tempo=body.tempo,
                            key=body.key, mood=body.mood, time_of_day=body.time_of_day, discovery=body.discovery)
        took = (time.perf_counter() - t0) * 1000
        hits = []
        for row in out.to_dict("records"):
            row = {c: plain(v) for c, v in row.items()}
            meta = public_metadata(row, _FIELDS)
            hits.append(Hit(**{c: row[c] for c in _FIELDS}, file=os.path.basename(str(row.get("uri", ""))),
                            metadata=meta, audio=audio_url(row["track_id"], row["start"], row["end"])))
        return Recommended(generation=lib.generation, took_ms=round(took, 3), tastes=int(out.attrs["tastes"]),
                           discovery=float(out.attrs["discovery"]), mood=out.attrs.get("mood"),
                           mood_inferred=_inferred(out.attrs.get("mood_inferred")), hits=hits)
    return await request.app.state.pool.run(work)


def _inferred(found: dict | None) -> MoodInferred | None:
    """The inferred mood as the answer states it (plain numbers)."""
    if not found:
        return None
    return MoodInferred(mood=str(found["mood"]), **{k: float(found[k]) for k in ("valence", "arousal", "confidence")},
                        likes=int(found["likes"]), played=int(found["played"]))
