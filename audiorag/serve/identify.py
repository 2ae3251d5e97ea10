"""``POST /identify``: which indexed track, and where in it, a recorded (degraded, stretched) clip
comes from — landmark fingerprints (:func:`audiorag.identify.identify`)."""

from __future__ import annotations

import os
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field

from ..identify import has_fingerprints
from ..identify import identify as run_identify
from .contract import errors
from .forms import Upload
from .queries import decode_upload
from .tracks import ApiError, audio_url, library

router = APIRouter(tags=["search"])


class Match(BaseModel):
    track_id: int
    file: str
    offset: float = Field(description="seconds into the track where the clip starts")
    stretch: float = Field(description="the clip's time scale (1.05: played 5 % slower)")
    score: int = Field(description="landmarks on the alignment")
    confidence: float
    audio: str = Field(description="URL of the matched moment's audio")


class Identified(BaseModel):
    generation: int
    took_ms: float
    clip_seconds: float
    landmarks: int = Field(description="landmark hashes found in the clip")
    reason: str | None = Field(None, description="why nothing matched")
    matches: list[Match]


@router.post("/identify", response_model=Identified, responses=errors(409, 415, 416))
async def identify(request: Request, clip: Upload, k: Annotated[int, Form(ge=1, le=100)] = 1) -> Identified:
    """The track and moment a clip was cut from (an empty ``matches`` with a ``reason`` when none);
    409 when the library has no fingerprints."""
    state = request.app.state
    lib = await library(request)
    if not has_fingerprints(lib):  # a sharded library: every shard's
        raise ApiError(409, "no_fingerprints", "identify needs the library's fingerprints; build them with: "
                                               "audiorag build LIBRARY --fingerprint ...")

    def work():
        y, sr = decode_upload(clip.data, clip.start, clip.end, state.settings.max_clip)
        t0 = time.perf_counter()
        found = run_identify(lib, y, sr=sr, k=k)
        matches = [Match(track_id=int(r.track_id), file=os.path.basename(str(r.uri)), offset=float(r.offset),
                         stretch=float(r.stretch), score=int(r.score), confidence=float(r.confidence),
                         audio=audio_url(int(r.track_id), max(0.0, float(r.offset)),
                                         max(0.0, float(r.offset)) + len(y) / sr / float(r.stretch)))
                   for r in found.itertuples(index=False)]
        return Identified(generation=lib.generation, took_ms=round((time.perf_counter() - t0) * 1000, 3),
                          clip_seconds=round(len(y) / sr, 3), landmarks=int(found.attrs.get("n_hashes", 0)),
                          reason=found.attrs.get("reason"), matches=matches)
    return await state.pool.run(work)
