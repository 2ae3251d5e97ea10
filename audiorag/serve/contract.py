"""What the OpenAPI schema promises, made from the served library: the names a client may give
(embeddings, indexes, public track columns), the grammar of ``where`` filters, and the error
bodies and statuses of every route. The server checks requests against the same values, so a
request the schema allows is answered, and one it refuses is refused.

>>> import pandas as pd
>>> t = pd.DataFrame({"track_id": [1], "uri": ["/a.wav"], "genre": ["rock"], "year": [2001.0]})
>>> pattern = where_pattern(t)
>>> [bool(re.search(pattern, w)) for w in ("genre=rock", "year>=2001", "year=abc", "uri=/a.wav")]
[True, True, False, False]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from ..descriptors.tonal import MODES
from ..library import Library
from ..library import descriptors as stored
from ..search.factors import WORDS
from ..search.filters import public_columns
from .models import ErrorBody

_OPS = r"(?:==|!=|>=|<=|=|>|<)"
#: a finite number as ``float()`` reads it (bounded digits and exponent: never inf)
_NUMBER = r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})(?:[eE][+-]?[0-9]{1,2})?"


def _any_case(words) -> str:
    """A pattern matching any of ``words`` in any case (character classes: no inline flags for other engines).

    >>> _any_case(["no", "1"])
    '(?:[Nn][Oo]|1)'
    """
    return "(?:" + "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in w) for w in words) + ")"


_TRUTH = _any_case(("true", "false", "yes", "no", "1", "0"))
_KEY = rf"[A-Ga-g][#b]?(?:\s*(?:m|min|minor|maj|{'|'.join(MODES)}))?"
#: what every error answer is, besides each route's own
COMMON_ERRORS = {400: "a malformed request (a Content-Length that is not a number)",
                 413: "the request body is larger than the server takes",
                 422: "a parameter the schema refuses, or values that do not fit together",
                 503: "the server is busy (Retry-After), the library cannot be read, or shards of a sharded "
                      "library did not answer (serve --missing-shards 503: missing_shards names them)",
                 504: "the request took longer than the server's deadline"}
#: statuses a route answers besides :data:`COMMON_ERRORS` (routes of other modules)
_ROUTE_ERRORS = {"/map": {409: "too few moments to draw a map"}}
_ERRORS_DOC = {401: "a token is required and was not given or is wrong", 404: "no such track (or moment)",
               409: "the library cannot answer this (no such kind of embedding, a file changed)",
               410: "the track's file is gone from the server", 415: "the upload is not audio the server decodes",
               416: "a byte range or a time (start, end, at, TRACK@SECONDS) outside the audio"}


def errors(*statuses: int) -> dict:
    """The ``responses=`` of a route answering ``statuses`` besides :data:`COMMON_ERRORS`.

    >>> sorted(errors(404, 416))
    [404, 416]
    """
    return {s: {"model": ErrorBody, "description": _ERRORS_DOC[s]} for s in statuses}


def where_pattern(tracks: pd.DataFrame, descriptors: pd.DataFrame | None = None) -> str:
    """The regular expression a ``where`` item must match: a public column of ``tracks`` (or of the
    segments' ``descriptors``, which shadow track columns of the same name), an operator, and a
    value of the column's kind (a finite number, true/false, a key, one of a descriptor's words, or any text).

    >>> t, d = pd.DataFrame({"track_id": [1], "uri": ["/a.wav"]}), pd.DataFrame({"mood": ["calm"]})
    >>> [bool(re.search(where_pattern(t, d), w)) for w in ("mood=Calm", "mood=elated", "mood>x")]
    [True, False, True]
    """
    kinds = {}
    for frame in (tracks, descriptors):
        for col in public_columns(frame) if frame is not None else ():
            if re.search(r"[<>=!]", col) or not col.strip():
                continue  # a name the parser cannot split off: never filterable
            if col == "key" and frame is descriptors:
                kinds[col] = rf"\s*(?:==|!=|=)\s*{_KEY}\s*"
            elif col in WORDS and frame is descriptors:  # equal to one of its words; ordered comparisons of text
                kinds[col] = rf"\s*(?:(?:==|!=|=)\s*{_any_case(WORDS[col])}\s*|(?:>=|<=|>|<)[\s\S]*)"
            elif pd.api.types.is_bool_dtype(frame[col]):
                kinds[col] = rf"\s*(?:==|!=|=)\s*{_TRUTH}\s*"
            elif pd.api.types.is_numeric_dtype(frame[col]):
                kinds[col] = rf"\s*{_OPS}\s*{_NUMBER}\s*"
            else:
                kinds[col] = rf"\s*{_OPS}[\s\S]*"
    return "^(?:" + "|".join(rf"\s*{re.escape(c)}{value}" for c, value in kinds.items()) + ")$"


@dataclass(frozen=True)
class Vocabulary:
    """The names and grammars a request to one library may use."""

    embedders: tuple[str, ...]
    text: tuple[str, ...]
    tower: tuple[str, ...]
    melody: tuple[str, ...]
    indexes: tuple[str, ...]
    columns: tuple[str, ...]
    track_where: str
    search_where: str


_VOCABULARIES: dict = {}


def vocabulary(lib: Library) -> Vocabulary:
    """The :class:`Vocabulary` of ``lib`` (remembered per generation: a generation never changes)."""
    key = str(lib.data)
    if key not in _VOCABULARIES:
        if len(_VOCABULARIES) > 16:
            _VOCABULARIES.clear()
        embs = lib.embeddings()

        def names(found) -> tuple[str, ...]:
            return tuple(dict.fromkeys([e.key for e in found] + [e.name for e in found
                                                                  if sum(f.name == e.name for f in embs) == 1]))
        info = lib.info()
        descriptors = lib.descriptors().reset_index(drop=True) if stored.present(lib) else None
        _VOCABULARIES[key] = Vocabulary(
            embedders=names(embs), text=names([e for e in embs if e.has_text or e.is_tagger]),
            tower=names([e for e in embs if e.has_text]),
            melody=names([e for e in embs if e.kind == "melody"]),
            indexes=tuple(sorted({i["name"] for e in info["embeddings"] for i in e["indexes"]})),
            columns=tuple(public_columns(lib.tracks)), track_where=where_pattern(lib.tracks),
            search_where=where_pattern(lib.tracks, descriptors))
    return _VOCABULARIES[key]


def route_embedders(vocab: Vocabulary, path: str) -> tuple[str, ...]:
    """The embedding names a route takes (the schema's enum): text and hybrid queries need a text side, hums the
    melody embedding, the others any embedding."""
    return {"/search/text": vocab.text, "/search/hybrid": vocab.tower, "/search/hum": vocab.melody}.get(path) \
        or vocab.embedders


def check_names(path: str, vocab: Vocabulary, *, embedder: str | None, index: str | None) -> None:
    """422 for an ``embedder`` or ``index`` outside the schema's enum of the route at ``path``: checked with the
    form, before an upload is decoded, so a request the schema refuses is refused as such."""
    for field, value, allowed in (("embedder", embedder, route_embedders(vocab, path)),
                                  ("index", index, vocab.indexes)):
        if value is not None and allowed and value not in allowed:
            raise HTTPException(422, f"{field}: {value[:80]!r} is not one of {', '.join(allowed)}")


def check_where(items: list[str], pattern: str) -> None:
    """422 naming the first ``where`` item that does not match ``pattern`` (the schema's)."""
    for item in items:
        if not re.search(pattern, item):
            raise HTTPException(422, f"where: {item[:80]!r} is not COLUMN<op>VALUE on a public track column with a "
                                     "value of its kind (numbers for numeric columns; see the schema's pattern)")


def openapi(app: FastAPI, lib: Library) -> dict:
    """The app's OpenAPI schema, made once: every error body ``{error, detail}`` (422 included), the common
    error statuses on every route, and the library's names as enums and its ``where`` grammar as patterns."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _describe(schema, vocabulary(lib), token=bool(app.state.settings.token))
        app.openapi_schema = schema
    return app.openapi_schema


def _describe(schema: dict, vocab: Vocabulary, *, token: bool) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["ErrorBody"] = ErrorBody.model_json_schema()
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    extra = {401: _ERRORS_DOC[401]} if token else {}
    for path, operations in schema["paths"].items():
        for op in operations.values():
            for status, text in {**COMMON_ERRORS, **extra, **_ROUTE_ERRORS.get(path, {})}.items():
                op["responses"].setdefault(str(status), {"description": text})
            for status, answer in op["responses"].items():
                if status[0] in "45":
                    answer["content"] = {"application/json": {"schema": ref}}
            where = vocab.track_where if path == "/tracks" else vocab.search_where
            names = {"embedder": route_embedders(vocab, path), "index": vocab.indexes, "colour": vocab.columns,
                     "column": vocab.columns}
            fields = [(p["name"], p["schema"]) for p in op.get("parameters", [])]
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                body = content["schema"]
                body = components[body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
                fields += list(body.get("properties", {}).items())
                if media == "multipart/form-data":  # a form has no null: an optional field is left out
                    for field in body.get("properties", {}).values():
                        _not_null(field)
            for name, field in fields:
                if names.get(name):
                    _constrain(field, enum=list(names[name]))
                elif name == "where":
                    _constrain(field, pattern=where)


def _not_null(field: dict) -> None:
    """``anyOf: [X, null]`` → ``X`` (in place, keeping the field's title, description and default)."""
    branches = [b for b in field.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1 and len(field["anyOf"]) == 2:
        del field["anyOf"]
        field.update(branches[0])
        if field.get("default", 0) is None:
            del field["default"]


def _constrain(field: dict, **kw) -> None:
    """Add ``kw`` to the string schema within ``field`` (itself, a nullable ``anyOf``, or an array's items)."""
    for branch in [field, *field.get("anyOf", [])]:
        target = branch.get("items", branch) if branch.get("type") == "array" else branch
        if target.get("type") == "string":
            target.pop("maxLength", None)
            target.update(kw)
