"""The API's request and response bodies (pydantic; they are the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ..rerank import MOODS

By = Literal["segment", "track"]
#: the re-rank options a search takes (``rerank=diversity=0.3,max_per_artist=2``; see :mod:`audiorag.rerank`)
RERANK = ("diversity", "max_per_track", "max_per_artist", "harmonic", "tempo", "key", "mood", "mood_weight")
_WEIGHT = r"[0-9]{1,3}(?:\.[0-9]{1,6})?"
_RERANK_ITEM = (r"(?:diversity=(?:0(?:\.[0-9]{1,6})?|1(?:\.0{1,6})?)|max_per_(?:track|artist)=[1-9][0-9]{0,5}"
                rf"|(?:harmonic|tempo|key|mood_weight)={_WEIGHT}|mood=(?:{'|'.join(MOODS)}))")
#: what a ``rerank`` value is, stated in the schema and enforced by the server (the same text)
RERANK_PATTERN = rf"^{_RERANK_ITEM}(?:,{_RERANK_ITEM}){{0,15}}$"
RERANK_HELP = ("re-rank k x 10 candidates: NAME=VALUE,... of diversity (0-1), max_per_track, max_per_artist "
               "(integers >= 1), harmonic, tempo, key, mood_weight (weights >= 0), mood "
               f"({', '.join(MOODS)}); docs/recommend.md")
AudioFormat = Literal["wav", "ogg", "mp3"]


class ErrorBody(BaseModel):
    """Every error: a short code and one line saying what was wrong (naming the field or item)."""

    error: str = Field(examples=["invalid_parameter"])
    detail: str = Field(examples=["k: Input should be greater than or equal to 1"])


class Health(BaseModel):
    status: Literal["ok", "warming"] = Field("ok", description="warming: the process is still running one query of "
                                                             "each kind (answers come, the first may be slower)")
    version: str
    library: str = Field(description="the library folder's name")
    generation: int = Field(description="the committed generation being served")


class IndexStats(BaseModel):
    name: str
    factory: str
    n: int
    recall: float | None = Field(None, description="measured recall@10 against exact search")
    bytes_per_segment: float | None = None
    search_params: dict[str, Any] | None = None


class EmbeddingStats(BaseModel):
    key: str
    name: str
    dim: int
    n_segments: int
    text: Literal["tower", "tags"] | None = Field(None, description="how this embedding answers text queries")
    indexes: list[IndexStats]


class Stats(BaseModel):
    generation: int
    tracks: int
    segments: int
    hours: float
    segmentation: dict[str, Any]
    labels: dict[str, dict[str, int]] = Field(description="per column: tracks per value")
    embeddings: list[EmbeddingStats]
    default_embedding: str | None = Field(None, description="the embedding key queries use when they name none")
    errors: int = Field(description="files the library could not index")


class Track(BaseModel):
    track_id: int
    duration: float | None
    file: str = Field(description="the file's name (never its path)")
    metadata: dict[str, Any] = Field(default_factory=dict)
    audio: str = Field(description="URL of the track's audio")


class TrackPage(BaseModel):
    total: int = Field(description="tracks passing the filters")
    offset: int
    limit: int
    tracks: list[Track]


class Hit(BaseModel):
    rank: int
    track_id: int
    segment_id: int
    start: float
    end: float
    score: float
    n_segments: int | None = Field(None, description="by=track: the track's segments among the matches")
    file: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, float] | None = Field(None, description="text queries in a tag space: the matched tags' "
                                                            "probabilities of this segment")
    audio: str = Field(description="URL of this moment's audio")


class SearchResult(BaseModel):
    query: dict[str, Any]
    embedding: str
    generation: int
    took_ms: float
    matched_tags: dict[str, float] | None = None
    missing_shards: list[int] = Field(default_factory=list, description="a sharded library: shards that did not "
                                      "answer (the hits come from the others)")
    hits: list[Hit]


class SearchBase(BaseModel):
    """Options every search takes."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(10, ge=1, le=1000, description="number of hits")
    embedder: str | None = Field(None, max_length=200, description="embedding name or key (default: the only one)")
    index: str | None = Field(None, max_length=200, description="index name (default: flat or the only one)")
    by: By = Field("segment", description="segment, or track: one hit per track at its best moment")
    where: list[str] = Field(default_factory=list, max_length=32,
                             description="filters COLUMN=VALUE, or !=, >=, <=, >, < (numbers compare as numbers)")


class SearchOptions(SearchBase):
    """The options of a search by audio (a moment, a clip, a blend): re-ranking too."""

    rerank: str | None = Field(None, max_length=300, pattern=RERANK_PATTERN, description=RERANK_HELP,
                               examples=["diversity=0.3,max_per_artist=2,mood=calm"])


class JsonBody(BaseModel):
    """A JSON request body read as its schema states: a boolean or a text is not a number (pydantic's lax mode
    reads ``"discovery": false`` as 0.0 and ``"k": "3"`` as 3), while ``181.0`` is the integer 181, as in JSON
    Schema.

    >>> class B(JsonBody):
    ...     k: int = 1
    >>> B.model_validate({"k": 3.0}).k
    3
    >>> B.model_validate({"k": True})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for B
    k
      a boolean is not a number ...
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _as_json_types(cls, value, info: ValidationInfo):
        types = _types(cls.model_fields[info.field_name].annotation)
        words = {t for t in types if isinstance(t, str)}  # the values of a Literal
        values = value if isinstance(value, list) else [value]
        if bool not in types and any(isinstance(v, bool) for v in values):
            raise PydanticCustomError("json_type", f"a boolean is not a {'text' if str in types else 'number'}")
        if str not in types and any(isinstance(v, str) and v not in words for v in values):
            raise PydanticCustomError("json_type", f"expected a number{' or one of ' if words else ''}"
                                                   f"{', '.join(sorted(words))}, got a text")
        return value


def _types(annotation) -> set:
    """Every type named in an annotation (``int | None`` → {int, NoneType}; ``list[int]`` → {list, int})."""
    out, todo = set(), [annotation]
    while todo:
        a = todo.pop()
        out.add(typing.get_origin(a) or a)
        todo += list(typing.get_args(a))
    return out


class TextQuery(SearchBase, JsonBody):
    """A description (text queries are not re-ranked)."""

    text: str = Field(min_length=1, max_length=1000, examples=["slow piano ballad"])
