"""The request forms routes share, as FastAPI dependencies: a search's options (from the query
string or from a multipart form) and an uploaded clip with its span. A route names what it takes
(``options: SearchForm``, ``clip: Upload``) instead of repeating the fields. They are ``async``: they
only read and check, and FastAPI runs a plain ``def`` dependency in a worker thread (two thread hops
per moment search, a quarter of its cost on 2 cores).

(No ``from __future__ import annotations`` here: FastAPI reads these signatures, built per source.)
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, File, Form, HTTPException, Query, Request

from .contract import check_names, check_where, vocabulary
from .models import RERANK_HELP, RERANK_PATTERN, By, SearchBase, SearchOptions
from .tracks import Lib

_WHERE = ("filters COLUMN=VALUE, or !=, >=, <=, >, < (numbers compare as numbers; the schema's pattern lists "
          "the columns)")
_EMBEDDER = "embedding name or key (default: the only one)"
_INDEX = "index name (default: flat or the only one)"


def _options(source):
    """The dependencies reading a search's options from ``source`` (``Query`` or ``Form``)."""

    async def base(lib: Lib, request: Request,
                   k: Annotated[int, source(ge=1, le=1000, description="number of hits")] = 10,
                   embedder: Annotated[str | None, source(max_length=200, description=_EMBEDDER)] = None,
                   index: Annotated[str | None, source(max_length=200, description=_INDEX)] = None,
                   by: Annotated[By, source(description="segment, or track: one hit per track at its best moment")]
                   = "segment",
                   where: Annotated[list[str], source(max_length=32, description=_WHERE)] = []  # noqa: B006
                   ) -> SearchBase:
        # the where grammar and the names are checked here, before any upload is decoded: a request the schema
        # refuses is refused as such (422), whatever its clip
        vocab = vocabulary(lib)
        check_where(where, vocab.search_where)
        check_names(request.url.path, vocab, embedder=embedder, index=index)
        return SearchBase(k=k, embedder=embedder, index=index, by=by, where=where)

    async def reranked(options: Annotated[SearchBase, Depends(base)],
                       rerank: Annotated[str | None, source(max_length=300, pattern=RERANK_PATTERN,
                                                            description=RERANK_HELP)] = None) -> SearchOptions:
        return SearchOptions(**options.model_dump(), rerank=rerank)
    return base, reranked


_query_base, _query_reranked = _options(Query)
_form_base, _form_reranked = _options(Form)
#: a search's options in the query string (k, embedder, index, by, where, rerank)
SearchParams = Annotated[SearchOptions, Depends(_query_reranked)]
#: a search's options as multipart form fields, re-ranking included
SearchForm = Annotated[SearchOptions, Depends(_form_reranked)]
#: a search's options as multipart form fields, without re-ranking (hum queries)
PlainSearchForm = Annotated[SearchBase, Depends(_form_base)]


@dataclass(frozen=True)
class Clip:
    """An uploaded file's bytes (``None``: no upload) and the span ``[start, end)`` of it to use."""

    data: bytes | None
    start: float | None
    end: float | None


_Start = Annotated[float | None, Form(ge=0, allow_inf_nan=False, description="seconds into the upload")]
_End = Annotated[float | None, Form(gt=0, allow_inf_nan=False, description="seconds into the upload")]


#: the form fields the routes declare; given empty, one is refused (FastAPI would read "" as the field left out)
FORM_FIELDS = ("k", "embedder", "index", "by", "where", "rerank", "start", "end", "text", "alpha", "track", "at")


async def filled_form(request: Request) -> None:
    """Refuse (422) a declared form field sent empty (its type or enum, not its default, says what it may hold),
    or sent twice when it takes one value (FastAPI would read the last: schemathesis found two files accepted)."""
    seen = set()
    for name, value in (await request.form()).multi_items():
        if name in FORM_FIELDS and isinstance(value, str) and value == "":
            raise HTTPException(422, f"{name}: empty value; leave the field out for its default")
        if name in seen and name in (*FORM_FIELDS, "file") and name != "where":
            raise HTTPException(422, f"{name}: sent more than once; it takes one value")
        seen.add(name)


_Filled = Annotated[None, Depends(filled_form)]


async def upload(file: Annotated[bytes, File(description="an audio file (WAV, FLAC, OGG, MP3); its content decides, "
                                                         "not its declared type")],
                 _: _Filled, start: _Start = None, end: _End = None) -> Clip:
    return Clip(file, start, end)


async def optional_upload(_: _Filled,
                          file: Annotated[bytes, File(description="an audio clip, or give track and at")] = None,
                          start: _Start = None, end: _End = None) -> Clip:
    return Clip(file, start, end)


#: a required upload (``file``) with its ``start`` and ``end`` form fields
Upload = Annotated[Clip, Depends(upload)]
#: an optional upload (``file``) with its ``start`` and ``end`` form fields
OptionalUpload = Annotated[Clip, Depends(optional_upload)]
